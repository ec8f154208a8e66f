/**
 * The one load generator every target is measured with: undici over the target's own dispatcher (keep-alive,
 * with the client certificate for mTLS targets). All times are milliseconds from performance.now().
 */
import { setTimeout as sleep } from "node:timers/promises";
import { request, type Dispatcher } from "undici";
import { ascending, percentile } from "./stats.ts";
import type { RunningTarget } from "./target.ts";

export const BENCH_MODEL = "bench-small";
const CHAT_PATH = "/v1/chat/completions";
const REQUEST_TIMEOUT_MS = 30_000;
const DONE_TAIL = "data: [DONE]";

/**
 * The model a slow stream asks for: the delay is in the name, because a peer gateway may drop body fields it
 * does not know (Portkey does) but always forwards the model. The model server reads either.
 */
export function slowModel(chunkDelayMs: number): string {
  return `${BENCH_MODEL}-slow-${chunkDelayMs}ms`;
}

export function chatBody(): string {
  return JSON.stringify({ model: BENCH_MODEL, messages: [{ role: "user", content: "When does the shop open?" }], max_tokens: 16 });
}

export function streamBody(chunks: number, chunkDelayMs = 0): string {
  return JSON.stringify({
    model: chunkDelayMs > 0 ? slowModel(chunkDelayMs) : BENCH_MODEL,
    messages: [{ role: "user", content: "Tell me a story." }],
    max_tokens: chunks,
    stream: true,
    stream_options: { include_usage: true },
    ...(chunkDelayMs > 0 ? { bench_chunk_delay_ms: chunkDelayMs } : {}),
  });
}

export interface Outcome {
  ok: boolean;
  /** From the send (or the scheduled send) to the first body byte. */
  ttfbMs: number;
  /** From the send (or the scheduled send) to the end of the body. */
  totalMs: number;
}

/** One POST; a non-200 status, a transport error or a stream that does not end with [DONE] is not ok. */
export async function send(target: RunningTarget, dispatcher: Dispatcher, body: string, stream: boolean, startedAt = performance.now()): Promise<Outcome> {
  let ttfbMs = Number.NaN;
  try {
    const res = await request(`${target.url}${CHAT_PATH}`, {
      dispatcher,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      headersTimeout: REQUEST_TIMEOUT_MS,
      bodyTimeout: REQUEST_TIMEOUT_MS,
    });
    let tail = "";
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (Number.isNaN(ttfbMs)) ttfbMs = performance.now() - startedAt;
      if (stream) tail = (tail + chunk.toString("latin1")).slice(-64);
    }
    const totalMs = performance.now() - startedAt;
    const ok = res.statusCode === 200 && (!stream || tail.trimEnd().endsWith(DONE_TAIL));
    return { ok, ttfbMs: Number.isNaN(ttfbMs) ? totalMs : ttfbMs, totalMs };
  } catch {
    const totalMs = performance.now() - startedAt;
    return { ok: false, ttfbMs: Number.isNaN(ttfbMs) ? totalMs : ttfbMs, totalMs };
  }
}

export interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  /** Ascending latencies (ms) of the successful requests: total time. */
  latencies: number[];
  /** Ascending time to first byte (ms) of the successful requests. */
  ttfb: number[];
}

function collect(outcomes: Outcome[], seconds: number): LoadResult {
  const good = outcomes.filter((o) => o.ok);
  return {
    requests: outcomes.length,
    errors: outcomes.length - good.length,
    seconds,
    latencies: ascending(good.map((o) => o.totalMs)),
    ttfb: ascending(good.map((o) => o.ttfbMs)),
  };
}

/** Closed loop: `concurrency` workers send back to back for `durationMs` (each finishes its last request). */
export async function closedLoop(target: RunningTarget, opts: { dispatcher?: Dispatcher; concurrency: number; durationMs: number; body: string; stream?: boolean }): Promise<LoadResult> {
  const dispatcher = opts.dispatcher ?? target.dispatcher;
  const outcomes: Outcome[] = [];
  const started = performance.now();
  const deadline = started + opts.durationMs;
  await Promise.all(Array.from({ length: opts.concurrency }, async () => {
    while (performance.now() < deadline) outcomes.push(await send(target, dispatcher, opts.body, opts.stream ?? false));
  }));
  return collect(outcomes, (performance.now() - started) / 1000);
}

/**
 * Open loop at a fixed rate: request i is due at start + i/rate and its latency counts from then, not from
 * when it was actually sent, so a target that falls behind is charged for the queue (no coordinated omission).
 */
export async function openLoop(target: RunningTarget, opts: { ratePerSecond: number; durationMs: number; body: string }): Promise<LoadResult & { achievedRate: number }> {
  const total = Math.max(1, Math.round((opts.ratePerSecond * opts.durationMs) / 1000));
  const interval = 1000 / opts.ratePerSecond;
  const pending: Promise<Outcome>[] = [];
  const started = performance.now();
  let i = 0;
  while (i < total) {
    const now = performance.now();
    while (i < total && started + i * interval <= now) {
      pending.push(send(target, target.dispatcher, opts.body, false, started + i * interval));
      i++;
    }
    if (i < total) await sleep(Math.max(0, started + i * interval - performance.now()));
  }
  const outcomes = await Promise.all(pending);
  const seconds = (performance.now() - started) / 1000;
  return { ...collect(outcomes, seconds), achievedRate: total / seconds };
}

/** `streams` concurrent slow streams, started over `rampMs`; samples `sampleRss` every `sampleMs` while they run. */
export async function concurrentStreams(
  target: RunningTarget,
  opts: { streams: number; chunks: number; chunkDelayMs: number; rampMs: number; sampleMs: number; sampleRss: () => number },
): Promise<LoadResult & { rssSamples: number[] }> {
  const body = streamBody(opts.chunks, opts.chunkDelayMs);
  const rssSamples = [opts.sampleRss()];
  const sampler = setInterval(() => rssSamples.push(opts.sampleRss()), opts.sampleMs);
  const started = performance.now();
  try {
    const outcomes = await Promise.all(Array.from({ length: opts.streams }, async (_, k) => {
      await sleep((k * opts.rampMs) / opts.streams);
      return send(target, target.dispatcher, body, true);
    }));
    return { ...collect(outcomes, (performance.now() - started) / 1000), rssSamples };
  } finally {
    clearInterval(sampler);
    rssSamples.push(opts.sampleRss());
  }
}

export function latencySummary(r: LoadResult): { p50: number; p99: number; p999: number } {
  return { p50: percentile(r.latencies, 0.5), p99: percentile(r.latencies, 0.99), p999: percentile(r.latencies, 0.999) };
}
