import { chatBody, closedLoop, latencySummary } from "../lib/loadgen.ts";
import { withCpu, type Scenario } from "../lib/scenario.ts";

/** A new connection (and, for mTLS targets, a full handshake without session resumption) for every request. */
export const handshake: Scenario = {
  name: "handshake",
  title: "New connection per request (TLS handshake rate)",
  metrics: [
    { key: "connPerSec", label: "conn/s", digits: 0, ratio: true },
    { key: "cpuUsPerConn", label: "proxy CPU µs/conn", digits: 0, ratio: true },
    { key: "p50", label: "p50 ms", digits: 2 },
    { key: "p99", label: "p99 ms", digits: 2 },
    { key: "errors", label: "errors", digits: 0 },
  ],
  async warmup(target, profile) {
    const fresh = target.freshConnections();
    try {
      await closedLoop(target, { dispatcher: fresh, concurrency: profile.handshake.concurrency, durationMs: profile.warmupMs / 2, body: chatBody() });
    } finally {
      await fresh.destroy();
    }
  },
  async run(target, profile) {
    const fresh = target.freshConnections();
    try {
      const { value: r, cpuNs } = await withCpu(target, () =>
        closedLoop(target, { dispatcher: fresh, concurrency: profile.handshake.concurrency, durationMs: profile.handshake.durationMs, body: chatBody() }));
      const { p50, p99 } = latencySummary(r);
      return { connPerSec: (r.requests - r.errors) / r.seconds, cpuUsPerConn: cpuNs / 1000 / Math.max(1, r.requests), p50, p99, errors: r.errors, requests: r.requests };
    } finally {
      await fresh.destroy();
    }
  },
};
