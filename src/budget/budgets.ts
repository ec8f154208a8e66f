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

  /**
   * Takes one request and reserves `tokens` from the key's budget, or refuses (taking nothing) and says when to
   * retry. A request reserves what it could use at most — its prompt and its whole answer — so that concurrent
   * requests can never together be granted more than the budget; `settle` gives back what it did not use.
   */
  admit(key: string, limits: BudgetLimits, nowMs: number, tokens = 0): Admission {
    if (!(Number.isFinite(tokens) && tokens >= 0)) {
      throw new BudgetError("tokens", `token count must be a non-negative finite number, got ${tokens}`);
    }
    const state = this.#state(key, limits, nowMs);
    if (state === null) return { ok: true };
    const refusals: Admission[] = [];
    const rpm = limits.requestsPerMinute;
    if (state.requests !== undefined && rpm !== undefined && state.requests.level < 1 - EPSILON) {
      refusals.push({ ok: false, limit: "requestsPerMinute", retryAfterSeconds: secondsUntil(state.requests, 1, rpm) });
    }
    const tpm = limits.tokensPerMinute;
    // A request needs at least one whole token to make any progress.
    const needed = Math.max(1, tokens);
    if (state.tokens !== undefined && tpm !== undefined && state.tokens.level < needed - EPSILON) {
      refusals.push({ ok: false, limit: "tokensPerMinute", retryAfterSeconds: secondsUntil(state.tokens, Math.min(needed, tpm), tpm) });
    }
    if (refusals.length > 0) {
      // When both are exhausted, the later of the two is when the request can really go through.
      return refusals.reduce((a, b) => (retryAfter(b) > retryAfter(a) ? b : a));
    }
    if (state.requests !== undefined) state.requests.level = Math.max(0, state.requests.level - 1);
    if (state.tokens !== undefined) state.tokens.level -= tokens;
    return { ok: true };
  }

  /**
   * Ends a reservation made by `admit`: the tokens reserved but not used go back (never above the bucket's
   * capacity), and tokens used beyond the reservation are charged (the balance may then go negative).
   */
  settle(key: string, limits: BudgetLimits, nowMs: number, reserved: number, used: number): void {
    for (const [name, n] of [["reserved", reserved], ["used", used]] as const) {
      if (!(Number.isFinite(n) && n >= 0)) throw new BudgetError("tokens", `${name} token count must be a non-negative finite number, got ${n}`);
    }
    const state = this.#state(key, limits, nowMs);
    const tpm = limits.tokensPerMinute;
    if (state?.tokens === undefined || tpm === undefined) return;
    state.tokens.level = Math.min(tpm, state.tokens.level + reserved - used);
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
