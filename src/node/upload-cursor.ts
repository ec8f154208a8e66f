import { constants } from "node:fs";
import { mkdir, open, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { GENESIS_HASH, type LogAnchor } from "../decision-log/index.ts";

/**
 * The upload cursor: the last decision-log record the control plane acknowledged AND whose hash the node checked
 * against its own. `cursor.json` (0600) in the upload state directory (0700), `{"ackSeq":N,"ackHash":"<hex>"}`,
 * replaced atomically (temporary file, fsync, rename, fsync of the directory). Records up to it may be pruned.
 */
export interface UploadCursor {
  ackSeq: number;
  ackHash: string;
}

export const CURSOR_FILE = "cursor.json";
export const NO_CURSOR: Readonly<UploadCursor> = Object.freeze({ ackSeq: 0, ackHash: GENESIS_HASH });
const MAX_CURSOR_BYTES = 1024;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** A cursor store that cannot be used; the gateway refuses to start with it. */
export class UploadStateError extends Error {
  constructor(message: string) {
    super(`upload state: ${message}`);
    this.name = "UploadStateError";
  }
}

/** The cursor in `text`, or why it is not one. Pure. */
export function parseCursor(text: string): UploadCursor | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return "not JSON (truncated or overwritten?)";
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not a JSON object";
  const { ackSeq, ackHash, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) return `unknown field "${extra[0]}"`;
  if (!Number.isSafeInteger(ackSeq) || (ackSeq as number) < 0) return "ackSeq is not a non-negative integer";
  if (typeof ackHash !== "string" || !SHA256_HEX.test(ackHash)) return "ackHash is not a lowercase sha256 hex digest";
  if (ackSeq === 0 && ackHash !== GENESIS_HASH) return "ackSeq 0 must come with the genesis hash";
  return { ackSeq: ackSeq as number, ackHash };
}

export function cursorAnchor(c: UploadCursor): LogAnchor {
  return { seq: c.ackSeq, hash: c.ackHash };
}

function problem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === "ELOOP") return "is a symbolic link";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return code ?? (err instanceof Error ? err.message : String(err));
}

export class CursorStore {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
  }

  get path(): string {
    return join(this.#dir, CURSOR_FILE);
  }

  /**
   * The stored cursor, or none. A damaged cursor is reported, not thrown: starting from none only means nothing is
   * pruned until the control plane's head is read again. Throws when the directory itself is unusable.
   */
  async load(): Promise<{ cursor: UploadCursor; error: string | null }> {
    await this.#prepareDirectory();
    let text: string;
    try {
      const fh = await open(this.path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        const info = await fh.stat();
        if (!info.isFile()) return { cursor: NO_CURSOR, error: `${this.path} is not a regular file` };
        if (info.size > MAX_CURSOR_BYTES) return { cursor: NO_CURSOR, error: `${this.path} is ${info.size} bytes, more than a cursor's ${MAX_CURSOR_BYTES}` };
        text = await fh.readFile("utf8");
      } finally {
        await fh.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { cursor: NO_CURSOR, error: null };
      return { cursor: NO_CURSOR, error: `cannot read ${this.path}: ${problem(err)}` };
    }
    const cursor = parseCursor(text);
    return typeof cursor === "string" ? { cursor: NO_CURSOR, error: `${this.path}: ${cursor}` } : { cursor, error: null };
  }

  /** Replaces the cursor atomically: it is the old one or the new one after a crash, never torn. */
  async save(cursor: UploadCursor): Promise<void> {
    await this.#prepareDirectory();
    const temp = `${this.path}.tmp`;
    try {
      // O_NOFOLLOW: a symbolic link planted at the temporary path must not redirect the write.
      const fh = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
      try {
        await fh.chmod(0o600); // a file left behind by a crash keeps its old mode otherwise
        await fh.writeFile(`${JSON.stringify({ ackSeq: cursor.ackSeq, ackHash: cursor.ackHash })}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(temp, this.path);
      const dir = await open(this.#dir, constants.O_RDONLY | constants.O_DIRECTORY);
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw new UploadStateError(`cannot write ${this.path}: ${problem(err)}`);
    }
  }

  async #prepareDirectory(): Promise<void> {
    try {
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      const info = await stat(this.#dir);
      if (!info.isDirectory()) throw new UploadStateError(`${this.#dir} is not a directory`);
      if ((info.mode & 0o077) !== 0) {
        throw new UploadStateError(`${this.#dir} is open to other users (mode ${(info.mode & 0o777).toString(8)}); chmod 700 it`);
      }
    } catch (err) {
      if (err instanceof UploadStateError) throw err;
      throw new UploadStateError(`cannot use ${this.#dir} as the upload state directory: ${problem(err)}`);
    }
  }
}
