import type { EventEmitter } from "node:events";

/**
 * Bounded waits for tests: each fails with a message naming what it waited for instead of hanging until the test
 * runner's timeout. The bounds are generous on purpose: they say "this will never happen", not "this is too slow".
 */

/** Polls `probe` every `intervalMs` until it returns a truthy value; throws naming `what` (and the last value seen) after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => T | Promise<T>, timeoutMs = 20_000, intervalMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Settles as `promise` does, or rejects naming `what` after `timeoutMs`. */
export function within<T>(what: string, promise: Promise<T>, timeoutMs = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** The arguments of the next `event` from `emitter` (an 'error' event rejects); rejects naming `what` after `timeoutMs`. */
export function nextEvent(emitter: EventEmitter, event: string, what: string, timeoutMs = 20_000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const onEvent = (...args: unknown[]) => {
      done();
      resolve(args);
    };
    const onError = (err: unknown) => {
      done();
      reject(err);
    };
    const done = () => {
      clearTimeout(timer);
      emitter.off(event, onEvent);
      if (event !== "error") emitter.off("error", onError);
    };
    emitter.once(event, onEvent);
    if (event !== "error") emitter.once("error", onError);
  });
}
