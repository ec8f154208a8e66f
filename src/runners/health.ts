import { Client, errors as undiciErrors } from "undici";
import type { Upstream } from "./upstream.ts";

/**
 * Whether a runner can take requests, as the gateway last saw it: probed in the background (GET /v1/models, which
 * vLLM, llama.cpp's server, Ollama and `edgeward runner` all answer), marked down at once when a call cannot connect
 * or a supervised runner exits, and up again at its next answer. `/readyz` and `edgeward_runner_up` read it; the
 * request path only ever sets it.
 */
export interface RunnerHealth {
  up: boolean;
  /** When `up` last changed (ms since the epoch). */
  since: number;
  /** Why it is down (null while up). */
  reason: string | null;
  /** Set by the runner's supervisor, which knows best why it is down (it exited): probes keep its reason. */
  pinned: boolean;
}

/** The probe's answer deadline: a runner that cannot list its models within it is not fit for traffic either. */
const PROBE_TIMEOUT_MS = 2000;
/** After a request found the runner unreachable, the next probe runs this soon, so that it is seen back promptly. */
const RECHECK_MS = 250;

/** Marks the runner down; `pinned` (its supervisor) keeps the reason until it is up again. */
export function markDown(upstream: Upstream, reason: string, nowMs: number, options: { pinned?: boolean } = {}): void {
  const h = upstream.health;
  if (h.up) h.since = nowMs;
  h.up = false;
  h.reason = reason;
  h.pinned = options.pinned === true;
  if (!h.pinned) upstream.prober?.soon();
}

export function markUp(upstream: Upstream, nowMs: number): void {
  const h = upstream.health;
  if (h.up) return;
  h.up = true;
  h.since = nowMs;
  h.reason = null;
  h.pinned = false;
}

/**
 * Probes one runner every `intervalMs` over a connection of its own: the request pool may be full of long
 * generations, and a probe queued behind them would call a busy runner down.
 */
export class RunnerProber {
  readonly #upstream: Upstream;
  readonly #client: Client;
  readonly #path: string;
  readonly #intervalMs: number;
  readonly #clock: () => number;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #closed = false;

  constructor(upstream: Upstream, origin: string, socketPath: string | undefined, intervalMs: number, clock: () => number) {
    this.#upstream = upstream;
    this.#client = new Client(origin, {
      ...(socketPath !== undefined ? { socketPath } : {}),
      headersTimeout: PROBE_TIMEOUT_MS, bodyTimeout: PROBE_TIMEOUT_MS, connectTimeout: PROBE_TIMEOUT_MS, keepAliveTimeout: 60_000,
    });
    this.#path = `${upstream.basePath}/v1/models`;
    this.#intervalMs = intervalMs;
    this.#clock = clock;
  }

  /** Probes now (a probe already running counts), then every interval. */
  probe(): Promise<void> {
    this.#running ??= this.#probeOnce().finally(() => {
      this.#running = null;
      this.#schedule(this.#intervalMs);
    });
    return this.#running;
  }

  /** Brings the next probe forward. */
  soon(): void {
    if (this.#running === null) this.#schedule(RECHECK_MS);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    await this.#running?.catch(() => undefined);
    await this.#client.close().catch(() => undefined);
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.probe(), ms);
    this.#timer.unref();
  }

  async #probeOnce(): Promise<void> {
    if (this.#closed) return;
    let reason: string | null;
    try {
      const res = await this.#client.request({ method: "GET", path: this.#path, headers: { "user-agent": "edgeward-probe" } });
      await res.body.dump({ limit: 1 << 20 });
      reason = res.statusCode >= 500 ? `GET /v1/models answered ${res.statusCode}` : null;
    } catch (err) {
      reason = probeFailure(err);
    }
    if (this.#closed) return;
    const h = this.#upstream.health;
    if (reason === null) markUp(this.#upstream, this.#clock());
    else if (!h.pinned && (h.up || h.reason !== reason)) markDown(this.#upstream, reason, this.#clock());
  }
}

function probeFailure(err: unknown): string {
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || err instanceof undiciErrors.ConnectTimeoutError) {
    return `GET /v1/models did not answer within ${PROBE_TIMEOUT_MS} ms`;
  }
  const code = (err as NodeJS.ErrnoException)?.code;
  return `unreachable${code ? ` (${code})` : ""}`;
}
