import type { FileHandle } from "node:fs/promises";

/** One line of a log file (without its newline) and its byte range; `end` is just past the newline (or EOF). */
export interface LogLine {
  /** null when the line is longer than the limit: its bytes were skipped, not buffered. */
  bytes: Buffer | null;
  start: number;
  end: number;
  terminated: boolean;
}

const CHUNK_BYTES = 64 * 1024;
const NEWLINE = 0x0a;

/**
 * Streams the lines of a file, from byte `start` (a line's first byte), without holding more than one line in
 * memory: a line longer than `maxLineBytes` is skipped over (reported with `bytes: null`) rather than buffered.
 */
export async function* readLogLines(fh: FileHandle, maxLineBytes: number, start = 0): AsyncGenerator<LogLine> {
  let parts: Buffer[] = [];
  let lineBytes = 0;
  let lineStart = start;
  let position = start;

  const finish = (end: number, terminated: boolean): LogLine => {
    const start = lineStart;
    const collected = parts;
    parts = [];
    lineStart = end;
    const length = lineBytes;
    lineBytes = 0;
    const bytes = length > maxLineBytes ? null : Buffer.concat(collected, length);
    return { bytes, start, end, terminated };
  };

  for (;;) {
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    const { bytesRead } = await fh.read(chunk, 0, CHUNK_BYTES, position);
    if (bytesRead === 0) break;
    let offset = 0;
    while (offset < bytesRead) {
      const nl = chunk.indexOf(NEWLINE, offset);
      const stop = nl === -1 || nl >= bytesRead ? bytesRead : nl;
      if (lineBytes + (stop - offset) <= maxLineBytes) parts.push(chunk.subarray(offset, stop));
      lineBytes += stop - offset;
      if (stop === bytesRead) break;
      yield finish(position + stop + 1, true);
      offset = stop + 1;
    }
    position += bytesRead;
  }
  if (lineBytes > 0) yield finish(position, false);
}
