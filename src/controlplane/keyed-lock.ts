/**
 * Runs tasks one at a time per key (a node's uploads, a group's publishes) and concurrently across keys, so two
 * requests of one node never race for its log head within this process. Storage still refuses a lost race between
 * processes sharing a database.
 */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const result = previous.then(task, task);
    const tail = result.catch(() => undefined);
    this.#tails.set(key, tail);
    // The entry goes once nothing waits behind this task, so idle keys cost nothing.
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }
}
