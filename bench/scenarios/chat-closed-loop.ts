import { chatBody, closedLoop, latencySummary } from "../lib/loadgen.ts";
import { withCpu, type Scenario } from "../lib/scenario.ts";

/** Small non-streaming chat completions, a fixed number of keep-alive connections sending back to back. */
export const chatClosedLoop: Scenario = {
  name: "chat-closed-loop",
  title: "Non-streaming chat, closed loop",
  metrics: [
    { key: "cpuUsPerReq", label: "proxy CPU µs/req", digits: 0, ratio: true },
    { key: "rps", label: "req/s", digits: 0, ratio: true },
    { key: "p50", label: "p50 ms", digits: 2 },
    { key: "p99", label: "p99 ms", digits: 2 },
    { key: "p999", label: "p99.9 ms", digits: 2 },
    { key: "errors", label: "errors", digits: 0 },
  ],
  async warmup(target, profile) {
    await closedLoop(target, { concurrency: profile.chat.concurrency, durationMs: profile.warmupMs, body: chatBody() });
  },
  async run(target, profile) {
    const { value: r, cpuNs } = await withCpu(target, () =>
      closedLoop(target, { concurrency: profile.chat.concurrency, durationMs: profile.chat.durationMs, body: chatBody() }));
    return { ...latencySummary(r), rps: (r.requests - r.errors) / r.seconds, cpuUsPerReq: cpuNs / 1000 / Math.max(1, r.requests), errors: r.errors, requests: r.requests };
  },
};
