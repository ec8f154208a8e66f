/**
 * Finds OpenAI `stop` sequences in streamed text. Text that could be the start of
 * a stop sequence is held back until it is known not to be, so nothing past a
 * stop is ever emitted, however the text is split into chunks.
 *
 * Generation ends as soon as a stop sequence is complete, so the stop that wins is the
 * one that ends first (the longer one when two end together) — the same answer for
 * any split of the text.
 */
export class StopScanner {
  private readonly stops: readonly string[];
  private held = "";
  private done = false;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  get stopped(): boolean {
    return this.done;
  }

  /** Takes the next piece of generated text; returns what may be shown now. */
  push(text: string): string {
    if (this.done) return "";
    const buffer = this.held + text;
    const cut = firstCompletedStop(buffer, this.stops);
    if (cut !== -1) {
      this.done = true;
      this.held = "";
      return buffer.slice(0, cut);
    }
    const keep = this.partialMatchLength(buffer);
    this.held = buffer.slice(buffer.length - keep);
    return buffer.slice(0, buffer.length - keep);
  }

  /** At the end of generation: whatever was held back was not a stop after all. */
  flush(): string {
    const rest = this.done ? "" : this.held;
    this.held = "";
    return rest;
  }

  /** The longest suffix of `buffer` that is a proper prefix of some stop sequence. */
  private partialMatchLength(buffer: string): number {
    let best = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, buffer.length); n > best; n--) {
        if (buffer.endsWith(stop.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}

/** Where the stop sequence that ends first begins, or -1 when none is complete. */
export function firstCompletedStop(text: string, stops: readonly string[]): number {
  let cut = -1;
  let end = Infinity;
  for (const stop of stops) {
    if (stop === "") continue;
    const i = text.indexOf(stop);
    if (i === -1) continue;
    const e = i + stop.length;
    if (e < end || (e === end && i < cut)) {
      cut = i;
      end = e;
    }
  }
  return cut;
}
