import { chatBody, closedLoop, latencySummary, openLoop } from "../lib/loadgen.ts";
import { withCpu, type Scenario } from "../lib/scenario.ts";

/** Non-streaming chat at a fixed arrival rate; latency from the scheduled send, compared with `direct`. */
export const chatOpenLoop: Scenario = {
  name: "chat-open-loop",
  title: "Non-streaming chat, open loop at a fixed rate",
  metrics: [
    { key: "p50", label: "p50 ms", digits: 2, overDirect: true },
    { key: "p99", label: "p99 ms", digits: 2, overDirect: true },
    { key: "p999", label: "p99.9 ms", digits: 2 },
    { key: "rate", label: "sent req/s", digits: 0 },
    { key: "cpuUsPerReq", label: "proxy CPU µs/req", digits: 0, ratio: true },
    { key: "errors", label: "errors", digits: 0 },
  ],
  async warmup(target, profile) {
    await closedLoop(target, { concurrency: 8, durationMs: profile.warmupMs, body: chatBody() });
  },
  async run(target, profile) {
    const { value: r, cpuNs } = await withCpu(target, () =>
      openLoop(target, { ratePerSecond: profile.openLoop.ratePerSecond, durationMs: profile.openLoop.durationMs, body: chatBody() }));
    return { ...latencySummary(r), rate: r.achievedRate, cpuUsPerReq: cpuNs / 1000 / Math.max(1, r.requests), errors: r.errors, requests: r.requests };
  },
};
