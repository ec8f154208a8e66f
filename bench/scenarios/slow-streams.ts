import { concurrentStreams, streamBody, closedLoop } from "../lib/loadgen.ts";
import { readRssBytes } from "../lib/proc-stats.ts";
import { withCpu, type Scenario } from "../lib/scenario.ts";

const MB = 1024 * 1024;

/** Many concurrent streams that trickle (a chunk every few tens of ms): errors and the target's memory over time. */
export const slowStreams: Scenario = {
  name: "slow-streams",
  title: "Concurrent slow streams",
  metrics: [
    { key: "streams", label: "streams", digits: 0 },
    { key: "errors", label: "errors", digits: 0 },
    { key: "rssStartMB", label: "RSS start MB", digits: 1 },
    { key: "rssMaxMB", label: "RSS max MB", digits: 1 },
    { key: "rssEndMB", label: "RSS end MB", digits: 1 },
    { key: "seconds", label: "wall s", digits: 2 },
    { key: "cpuUsPerStream", label: "proxy CPU µs/stream", digits: 0, ratio: true },
  ],
  async warmup(target, profile) {
    await closedLoop(target, { concurrency: 4, durationMs: profile.warmupMs, body: streamBody(profile.slowStreams.chunks), stream: true });
  },
  async run(target, profile) {
    const p = profile.slowStreams;
    const sampleRss = () => (target.pids.length === 0 ? Number.NaN : readRssBytes(target.pids));
    const { value: r, cpuNs } = await withCpu(target, () =>
      concurrentStreams(target, { streams: p.streams, chunks: p.chunks, chunkDelayMs: p.chunkDelayMs, rampMs: p.rampMs, sampleMs: p.sampleMs, sampleRss }));
    const samples = r.rssSamples;
    return {
      streams: r.requests,
      errors: r.errors,
      rssStartMB: samples[0]! / MB,
      rssMaxMB: Math.max(...samples) / MB,
      rssEndMB: samples[samples.length - 1]! / MB,
      seconds: r.seconds,
      cpuUsPerStream: cpuNs / 1000 / Math.max(1, r.requests),
    };
  },
};
