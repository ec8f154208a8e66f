export interface BudgetLimits {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
}

export type BudgetLimitName = "requestsPerMinute" | "tokensPerMinute";

export type Admission =
  | { ok: true }
  | { ok: false; limit: BudgetLimitName; /** integer >= 1 */ retryAfterSeconds: number };

export class BudgetError extends Error {
  readonly check: string;

  constructor(check: string, message: string) {
    super(`budget: ${message}`);
    this.name = "BudgetError";
    this.check = check;
  }
}

/** A token bucket: `level` as of `atMs`; capacity and refill rate come from the limits of each call. */
interface Bucket {
  level: number;
  atMs: number;
}

interface KeyState {
  requests?: Bucket;
  tokens?: Bucket;
}

const MS_PER_MINUTE = 60_000;
/** Continuous refill accumulates float error; a bucket this close to a whole request counts as holding it. */
const EPSILON = 1e-9;
const DEFAULT_MAX_KEYS = 100_000;

/** Budget key for a principal, or for a principal's use of one model. */
export function budgetKey(principal: string, model?: string | null): string {
  return model === undefined || model === null ? principal : `${principal}|${model}`;
}

function checkLimit(name: BudgetLimitName, value: number | undefined): void {
  if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
    throw new BudgetError("limits", `${name} must be a positive finite number, got ${value}`);
  }
}

/** Brings the bucket up to `nowMs` (a clock that steps back refills nothing) and clamps it to `capacity`. */
function refill(bucket: Bucket, capacity: number, nowMs: number): void {
  const elapsed = Math.max(0, nowMs - bucket.atMs);
  bucket.level = Math.min(capacity, bucket.level + (elapsed * capacity) / MS_PER_MINUTE);
  bucket.atMs = Math.max(bucket.atMs, nowMs);
}

/** Whole seconds until the bucket holds `needed`; at least 1 so a client never retries immediately. */
function secondsUntil(bucket: Bucket, needed: number, capacity: number): number {
  const ms = ((needed - bucket.level) * MS_PER_MINUTE) / capacity;
  return Math.max(1, Math.ceil(ms / 1000 - EPSILON));
}

/**
 * Per-key request and token buckets, refilled continuously at the per-minute amount / 60 per
 * second and capped at the per-minute amount. Pure: the caller passes the time. Keys beyond
 * `maxKeys` evict the least recently used one, which then starts again with full buckets.
 */
export class Budgets {
  readonly #maxKeys: number;
  /** Insertion order is recency order: every touch moves the key to the end. */
  readonly #keys = new Map<string, KeyState>();

  constructor(options: { maxKeys?: number } = {}) {
    const maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) {
      throw new BudgetError("options", `maxKeys must be a positive integer, got ${maxKeys}`);
    }
    this.#maxKeys = maxKeys;
  }

  /** Number of keys currently tracked. */
  get size(): number {
    return this.#keys.size;
  }

  /** Takes one request from the key's budget, or refuses (taking nothing) and says when to retry. */
  admit(key: string, limits: BudgetLimits, nowMs: number): Admission {
    const state = this.#state(key, limits, nowMs);
    if (state === null) return { ok: true };
    const refusals: Admission[] = [];
    const rpm = limits.requestsPerMinute;
    if (state.requests !== undefined && rpm !== undefined && state.requests.level < 1 - EPSILON) {
      refusals.push({ ok: false, limit: "requestsPerMinute", retryAfterSeconds: secondsUntil(state.requests, 1, rpm) });
    }
    const tpm = limits.tokensPerMinute;
    if (state.tokens !== undefined && tpm !== undefined && state.tokens.level < 1 - EPSILON) {
      // A request needs at least one whole token to make any progress.
      refusals.push({ ok: false, limit: "tokensPerMinute", retryAfterSeconds: secondsUntil(state.tokens, 1, tpm) });
    }
    if (refusals.length > 0) {
      // When both are exhausted, the later of the two is when the request can really go through.
      return refusals.reduce((a, b) => (retryAfter(b) > retryAfter(a) ? b : a));
    }
    if (state.requests !== undefined) state.requests.level = Math.max(0, state.requests.level - 1);
    return { ok: true };
  }

  /** Charges tokens that were used; the balance may go negative, and the debt is paid off by refill. */
  consumeTokens(key: string, tokens: number, limits: BudgetLimits, nowMs: number): { remaining: number; exhausted: boolean } {
    if (!(Number.isFinite(tokens) && tokens >= 0)) {
      throw new BudgetError("tokens", `token count must be a non-negative finite number, got ${tokens}`);
    }
    const state = this.#state(key, limits, nowMs);
    if (state?.tokens === undefined) return { remaining: Infinity, exhausted: false };
    state.tokens.level -= tokens;
    // Exhausted once less than one whole token is left: the next token could not be paid for.
    return { remaining: state.tokens.level, exhausted: state.tokens.level < 1 - EPSILON };
  }

  /** Tokens left for the key now; Infinity when it has no token limit. */
  remainingTokens(key: string, limits: BudgetLimits, nowMs: number): number {
    const state = this.#state(key, limits, nowMs);
    return state?.tokens === undefined ? Infinity : state.tokens.level;
  }

  /** The key's buckets, refilled to `nowMs` under the current limits; null when it has no limits. */
  #state(key: string, limits: BudgetLimits, nowMs: number): KeyState | null {
    if (!Number.isFinite(nowMs)) throw new BudgetError("time", `nowMs must be a finite number, got ${nowMs}`);
    const rpm = limits.requestsPerMinute;
    const tpm = limits.tokensPerMinute;
    checkLimit("requestsPerMinute", rpm);
    checkLimit("tokensPerMinute", tpm);
    if (rpm === undefined && tpm === undefined) return null;

    let state = this.#keys.get(key);
    if (state === undefined) {
      if (this.#keys.size >= this.#maxKeys) {
        const oldest = this.#keys.keys().next();
        if (!oldest.done) this.#keys.delete(oldest.value);
      }
      state = {};
    } else {
      this.#keys.delete(key);
    }
    this.#keys.set(key, state);

    state.requests = bucketFor(state.requests, rpm, nowMs);
    state.tokens = bucketFor(state.tokens, tpm, nowMs);
    return state;
  }
}

/** A limit that appears starts full, one that goes away drops its bucket, one that changes clamps to its new capacity. */
function bucketFor(bucket: Bucket | undefined, capacity: number | undefined, nowMs: number): Bucket | undefined {
  if (capacity === undefined) return undefined;
  if (bucket === undefined) return { level: capacity, atMs: nowMs };
  refill(bucket, capacity, nowMs);
  return bucket;
}

function retryAfter(a: Admission): number {
  return a.ok ? 0 : a.retryAfterSeconds;
}
