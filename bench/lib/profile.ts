/** How big a run is. `default` is the committed comparison; `quick` a sanity run; `smoke` what the test suite runs. */
export interface Profile {
  name: "default" | "quick" | "smoke";
  rounds: number;
  /**
   * Traffic each target gets once started, before anything is measured: JIT, pools and V8's young generation
   * (which grows with the allocation rate) settle, so the first round is not the slowest for the busiest target.
   */
  initialWarmupMs: number;
  /** Warm-up before a target's first measured block of each scenario. */
  warmupMs: number;
  chat: { concurrency: number; durationMs: number };
  openLoop: { ratePerSecond: number; durationMs: number };
  stream: { chunks: number[]; concurrency: number; durationMs: number };
  slowStreams: { streams: number; chunks: number; chunkDelayMs: number; rampMs: number; sampleMs: number };
  handshake: { concurrency: number; durationMs: number };
}

export const PROFILES: Record<Profile["name"], Profile> = {
  default: {
    name: "default",
    rounds: 3,
    initialWarmupMs: 3000,
    warmupMs: 1000,
    chat: { concurrency: 32, durationMs: 3000 },
    openLoop: { ratePerSecond: 500, durationMs: 3000 },
    stream: { chunks: [20, 200], concurrency: 1, durationMs: 1500 },
    slowStreams: { streams: 1000, chunks: 20, chunkDelayMs: 100, rampMs: 1500, sampleMs: 200 },
    handshake: { concurrency: 4, durationMs: 1500 },
  },
  quick: {
    name: "quick",
    rounds: 1,
    initialWarmupMs: 500,
    warmupMs: 300,
    chat: { concurrency: 32, durationMs: 500 },
    openLoop: { ratePerSecond: 500, durationMs: 500 },
    stream: { chunks: [20, 200], concurrency: 1, durationMs: 400 },
    slowStreams: { streams: 200, chunks: 10, chunkDelayMs: 40, rampMs: 200, sampleMs: 100 },
    handshake: { concurrency: 4, durationMs: 400 },
  },
  smoke: {
    name: "smoke",
    rounds: 1,
    initialWarmupMs: 100,
    warmupMs: 100,
    chat: { concurrency: 4, durationMs: 200 },
    openLoop: { ratePerSecond: 100, durationMs: 200 },
    stream: { chunks: [5], concurrency: 1, durationMs: 150 },
    slowStreams: { streams: 20, chunks: 5, chunkDelayMs: 20, rampMs: 50, sampleMs: 50 },
    handshake: { concurrency: 2, durationMs: 150 },
  },
};
