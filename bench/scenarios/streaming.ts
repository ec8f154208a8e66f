import { closedLoop, streamBody } from "../lib/loadgen.ts";
import { withCpu, type Scenario } from "../lib/scenario.ts";
import { percentile } from "../lib/stats.ts";

/** Streamed chat completions of `chunks` events sent as fast as the model server can: TTFB and total time. */
export function streaming(chunks: number): Scenario {
  return {
    name: `stream-${chunks}`,
    title: `Streaming chat, ${chunks} chunks`,
    metrics: [
      { key: "ttfbP50", label: "TTFB p50 ms", digits: 2, overDirect: true },
      { key: "ttfbP99", label: "TTFB p99 ms", digits: 2 },
      { key: "totalP50", label: "total p50 ms", digits: 2, overDirect: true },
      { key: "cpuUsPerReq", label: "proxy CPU µs/stream", digits: 0, ratio: true },
      { key: "errors", label: "errors", digits: 0 },
    ],
    async warmup(target, profile) {
      await closedLoop(target, { concurrency: profile.stream.concurrency, durationMs: profile.warmupMs, body: streamBody(chunks), stream: true });
    },
    async run(target, profile) {
      const { value: r, cpuNs } = await withCpu(target, () =>
        closedLoop(target, { concurrency: profile.stream.concurrency, durationMs: profile.stream.durationMs, body: streamBody(chunks), stream: true }));
      return {
        ttfbP50: percentile(r.ttfb, 0.5),
        ttfbP99: percentile(r.ttfb, 0.99),
        totalP50: percentile(r.latencies, 0.5),
        cpuUsPerReq: cpuNs / 1000 / Math.max(1, r.requests),
        errors: r.errors,
        requests: r.requests,
      };
    },
  };
}
