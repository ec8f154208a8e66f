import { Pool, errors as undiciErrors, type Dispatcher } from "undici";
import type { RunnerConfig } from "../config/index.ts";
import { markDown, markUp, RunnerProber, type RunnerHealth } from "./health.ts";

/** A model server reached over OpenAI-compatible HTTP (vLLM, llama.cpp server, Ollama, `edgeward runner`). */
export interface Upstream {
  readonly name: string;
  readonly models: readonly string[];
  readonly pool: Pool;
  /** Path prefix from the runner URL (the URL names the server root, without /v1). */
  readonly basePath: string;
  readonly timeoutMs: number;
  /** Calls that may be open at once: one per pooled connection, plus those allowed to wait for one. */
  readonly capacity: number;
  /** Calls open now (sent, or waiting in the pool's queue). */
  active: number;
  /** Whether it can take requests, as last seen (health.ts). */
  readonly health: RunnerHealth;
  /** Its background health probe (null until the table's probes are started). */
  prober: RunnerProber | null;
}

/** Why a runner call failed, mapped by the gateway to 502 (connect, status, protocol) or 504 (timeout). */
export class UpstreamError extends Error {
  readonly kind: "connect" | "timeout" | "protocol";
  readonly runner: string;
  constructor(runner: string, kind: "connect" | "timeout" | "protocol", message: string) {
    super(`runner ${runner}: ${message}`);
    this.name = "UpstreamError";
    this.kind = kind;
    this.runner = runner;
  }
}

export function createUpstream(config: RunnerConfig): Upstream {
  const common = { connections: config.maxConnections, pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: config.timeoutMs, bodyTimeout: config.timeoutMs };
  const { origin, socketPath, basePath } = runnerAddress(config.url);
  const pool = new Pool(origin, { ...common, ...(socketPath !== undefined ? { socketPath } : {}) });
  return {
    name: config.name, models: config.models, pool, basePath, timeoutMs: config.timeoutMs, capacity: config.maxConnections + config.maxQueued, active: 0,
    health: { up: false, since: Date.now(), reason: "not probed yet", pinned: false }, prober: null,
  };
}

function runnerAddress(url: string): { origin: string; socketPath?: string; basePath: string } {
  if (url.startsWith("unix:")) return { origin: "http://localhost", socketPath: url.slice("unix:".length), basePath: "" };
  const u = new URL(url);
  return { origin: u.origin, basePath: u.pathname.replace(/\/+$/, "") };
}

/**
 * Takes a place for one call to the runner, or returns false when its connections and queue are full: undici's pool
 * queues without bound, and a caller waiting minutes for a connection is better told to come back. Every place
 * taken is given back with `releaseSlot`.
 */
export function takeSlot(upstream: Upstream): boolean {
  if (upstream.active >= upstream.capacity) return false;
  upstream.active++;
  return true;
}

export function releaseSlot(upstream: Upstream): void {
  if (upstream.active > 0) upstream.active--;
}

/** Model name → upstream; the only routing table the gateway has. */
export class RunnerTable {
  readonly upstreams: readonly Upstream[];
  readonly #byModel = new Map<string, Upstream>();

  readonly #configs: readonly RunnerConfig[];

  constructor(configs: readonly RunnerConfig[]) {
    this.#configs = configs;
    this.upstreams = configs.map(createUpstream);
    for (const u of this.upstreams) for (const m of u.models) this.#byModel.set(m, u);
  }

  /** Starts each runner's background health probe; resolves once each has been probed (within its deadline). */
  async startProbes(clock: () => number): Promise<void> {
    this.upstreams.forEach((u, i) => {
      const config = this.#configs[i]!;
      const { origin, socketPath } = runnerAddress(config.url);
      u.prober = new RunnerProber(u, origin, socketPath, config.probeIntervalMs, clock);
    });
    await Promise.all(this.upstreams.map((u) => u.prober!.probe()));
  }

  byName(name: string): Upstream | undefined {
    return this.upstreams.find((u) => u.name === name);
  }

  route(model: string): Upstream | undefined {
    return this.#byModel.get(model);
  }

  models(): string[] {
    return [...this.#byModel.keys()];
  }

  async close(): Promise<void> {
    await Promise.all(this.upstreams.map(async (u) => {
      await u.prober?.close();
      await u.pool.close();
    }));
  }
}

export interface UpstreamCall {
  path: string;
  body: string | Buffer;
  headers: Record<string, string>;
  signal: AbortSignal;
}

/** Sends one JSON POST to the runner; resolves with the response (status, headers, streaming body). */
export async function callUpstream(upstream: Upstream, call: UpstreamCall): Promise<Dispatcher.ResponseData> {
  try {
    const res = await upstream.pool.request({
      method: "POST",
      path: upstream.basePath + call.path,
      headers: { ...call.headers, "content-type": "application/json" },
      body: call.body,
      signal: call.signal,
    });
    if (!upstream.health.up && res.statusCode < 500) markUp(upstream, Date.now());
    return res;
  } catch (err) {
    throw failed(upstream, err);
  }
}

/** The error to throw for a failed call; one that could not reach the runner marks it down at once. */
function failed(upstream: Upstream, err: unknown): Error {
  const e = toUpstreamError(upstream.name, err);
  if (e instanceof UpstreamError && e.kind === "connect") markDown(upstream, e.message.replace(`runner ${upstream.name}: `, ""), Date.now());
  return e;
}

/** A runner's whole answer, read into memory (non-streaming calls). */
export interface BufferedAnswer {
  statusCode: number;
  contentType: string | undefined;
  body: Buffer;
}

/** The most a non-streaming answer may hold; a runner sending more is cut off with a 502. */
export const MAX_BUFFERED_ANSWER_BYTES = 64 * 1024 * 1024;

/**
 * Sends one JSON POST and reads the whole answer through undici's handler interface: no response stream, no async
 * iterator, one promise per call. Errors reject with what `toUpstreamError` maps.
 */
export function callUpstreamBuffered(upstream: Upstream, call: UpstreamCall): Promise<BufferedAnswer> {
  return new Promise((resolve, reject) => {
    let statusCode = 0;
    let contentType: string | undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      call.signal.removeEventListener("abort", onAbort);
      reject(failed(upstream, err));
    };
    let controller: Dispatcher.DispatchController | null = null;
    const onAbort = () => controller?.abort(new undiciErrors.RequestAbortedError());
    if (call.signal.aborted) return fail(new undiciErrors.RequestAbortedError());
    call.signal.addEventListener("abort", onAbort, { once: true });
    upstream.pool.dispatch({
      method: "POST",
      path: upstream.basePath + call.path,
      headers: { ...call.headers, "content-type": "application/json" },
      body: call.body,
    }, {
      onRequestStart(c) {
        controller = c;
        if (call.signal.aborted) c.abort(new undiciErrors.RequestAbortedError());
      },
      onResponseStart(_c, status, headers) {
        if (!upstream.health.up && status < 500) markUp(upstream, Date.now());
        statusCode = status;
        const type = headers["content-type"];
        contentType = Array.isArray(type) ? type[0] : type;
      },
      onResponseData(c, chunk) {
        size += chunk.length;
        if (size > MAX_BUFFERED_ANSWER_BYTES) return c.abort(new UpstreamError(upstream.name, "protocol", "answer is too large"));
        chunks.push(chunk);
      },
      onResponseEnd() {
        if (settled) return;
        settled = true;
        call.signal.removeEventListener("abort", onAbort);
        resolve({ statusCode, contentType, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
      },
      onResponseError(_c, err) {
        fail(err);
      },
    });
  });
}

export function toUpstreamError(runner: string, err: unknown): Error {
  if (err instanceof UpstreamError) return err;
  if (err instanceof undiciErrors.RequestAbortedError || (err as Error)?.name === "AbortError") return err as Error;
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || err instanceof undiciErrors.ConnectTimeoutError) {
    return new UpstreamError(runner, "timeout", "timed out");
  }
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === "ECONNREFUSED" || code === "ENOENT" || code === "ECONNRESET" || code === "EACCES" || code === "UND_ERR_SOCKET" || code === "EPIPE") {
    return new UpstreamError(runner, "connect", `unreachable (${code})`);
  }
  return new UpstreamError(runner, "protocol", "request failed");
}
