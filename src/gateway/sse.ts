/**
 * Splits a Server-Sent Events byte stream into whole events, however the bytes were chunked, so the relay can
 * forward event by event and stop cleanly between two events. Pure and incremental.
 */
export interface SseEvent {
  /** The event exactly as received, including its terminating blank line. */
  raw: string;
  /** The joined `data:` lines (null when the event has none). */
  data: string | null;
}

const BOUNDARY = /\r\n\r\n|\n\n|\r\r/g;

export class SseSplitter {
  #buffer = "";
  readonly #decoder = new TextDecoder();
  readonly #maxEventBytes: number;

  constructor(maxEventBytes = 1024 * 1024) {
    this.#maxEventBytes = maxEventBytes;
  }

  /** Feeds bytes; returns the events completed by them. Throws when one event grows past the bound. */
  push(chunk: Uint8Array): SseEvent[] {
    this.#buffer += this.#decoder.decode(chunk, { stream: true });
    const events: SseEvent[] = [];
    let start = 0;
    BOUNDARY.lastIndex = 0;
    for (let m = BOUNDARY.exec(this.#buffer); m !== null; m = BOUNDARY.exec(this.#buffer)) {
      const end = m.index + m[0].length;
      events.push(parseEvent(this.#buffer.slice(start, end), this.#buffer.slice(start, m.index)));
      start = end;
    }
    this.#buffer = this.#buffer.slice(start);
    if (this.#buffer.length > this.#maxEventBytes) throw new Error("sse: event larger than the limit");
    return events;
  }

  /** Whatever is left when the stream ends (an unterminated event), or null. */
  flush(): SseEvent | null {
    this.#buffer += this.#decoder.decode();
    const rest = this.#buffer;
    this.#buffer = "";
    return rest.trim() === "" ? null : parseEvent(rest, rest);
  }
}

function parseEvent(raw: string, body: string): SseEvent {
  let data: string | null = null;
  for (const line of body.split(/\r\n|\n|\r/)) {
    if (!line.startsWith("data:")) continue;
    const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
    data = data === null ? value : `${data}\n${value}`;
  }
  return { raw, data };
}
