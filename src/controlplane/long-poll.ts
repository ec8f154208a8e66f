/** How a wait ended: a bundle was published for the group, the time ran out, the client went, or the server closes. */
export type WaitOutcome = "published" | "timeout" | "aborted" | "closed";

interface Waiter {
  resolve: (outcome: WaitOutcome) => void;
}

/**
 * Long-poll waiters per node group, woken when the group gets a bundle. Each group has a version that every publish
 * bumps: a waiter names the version it last saw, so a publish between its read and its wait is never missed.
 * The number of waiters is bounded; past the bound a request is answered at once, as if the server ignored `Prefer`.
 */
export class LongPoll {
  readonly #max: number;
  readonly #waiters = new Map<string, Set<Waiter>>();
  readonly #versions = new Map<string, number>();
  #count = 0;
  #closed = false;

  constructor(maxWaiters: number) {
    this.#max = maxWaiters;
  }

  version(group: string): number {
    return this.#versions.get(group) ?? 0;
  }

  get waiting(): number {
    return this.#count;
  }

  /** Wakes every waiter of `group`. */
  publish(group: string): void {
    this.#versions.set(group, this.version(group) + 1);
    const set = this.#waiters.get(group);
    if (set === undefined) return;
    for (const w of [...set]) w.resolve("published");
  }

  /**
   * Waits until `group` moves past `seen`, `ms` pass, `signal` aborts or the server closes. Null when the bound is
   * reached (the caller answers without waiting).
   */
  wait(group: string, seen: number, ms: number, signal: AbortSignal): Promise<WaitOutcome> | null {
    if (this.#closed) return Promise.resolve("closed");
    if (this.version(group) !== seen) return Promise.resolve("published");
    if (signal.aborted) return Promise.resolve("aborted");
    if (this.#count >= this.#max) return null;
    return new Promise((resolveWait) => {
      const set = this.#waiters.get(group) ?? new Set<Waiter>();
      this.#waiters.set(group, set);
      this.#count += 1;
      const onAbort = () => waiter.resolve("aborted");
      const timer = setTimeout(() => waiter.resolve("timeout"), ms);
      const waiter: Waiter = {
        resolve: (outcome) => {
          // Settles once: removes itself everywhere, so nothing of a finished wait is kept.
          if (!set.delete(waiter)) return;
          this.#count -= 1;
          if (set.size === 0) this.#waiters.delete(group);
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          resolveWait(outcome);
        },
      };
      set.add(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Ends every wait ("closed") and refuses new ones, so a server can stop without holding answers for minutes. */
  close(): void {
    this.#closed = true;
    for (const set of [...this.#waiters.values()]) for (const w of [...set]) w.resolve("closed");
  }
}
