import { constants } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import type { LogAnchor } from "./chain.ts";
import { DecisionLogError } from "./errors.ts";
import { ioProblem, openRegularFile, syncDirectory } from "./files.ts";

/**
 * A pruned log's anchor lives beside it, `<log>.anchor`: `{"seq":N,"hash":"<hex>"}`, the last record pruned.
 * Without it the log must start at seq 1; with it, the log continues the chain from it.
 */
export function anchorPath(logPath: string): string {
  return `${logPath}.anchor`;
}

const MAX_ANCHOR_BYTES = 1024;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The anchor's contents, or why they are not one. Pure. */
export function parseAnchor(text: string): LogAnchor | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return "not JSON";
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not a JSON object";
  const { seq, hash, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) return `unknown field "${extra[0]}"`;
  if (!Number.isSafeInteger(seq) || (seq as number) < 1) return "seq is not a positive integer";
  if (typeof hash !== "string" || !SHA256_HEX.test(hash)) return "hash is not a lowercase sha256 hex digest";
  return { seq: seq as number, hash };
}

/** The log's anchor, or null when it has none. Anything else at the path (unreadable, malformed) throws with check "anchor". */
export async function readAnchor(logPath: string): Promise<LogAnchor | null> {
  const path = anchorPath(logPath);
  let text: string;
  try {
    const fh = await openRegularFile(path, constants.O_NOFOLLOW);
    try {
      const { size } = await fh.stat();
      if (size > MAX_ANCHOR_BYTES) throw new DecisionLogError("anchor", `${path} is ${size} bytes, more than an anchor's ${MAX_ANCHOR_BYTES}`);
      text = await fh.readFile("utf8");
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof DecisionLogError) throw err;
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new DecisionLogError("anchor", `cannot read ${path}: ${ioProblem(err)}`);
  }
  const anchor = parseAnchor(text);
  if (typeof anchor === "string") throw new DecisionLogError("anchor", `${path}: ${anchor}`);
  return anchor;
}

/** Replaces the anchor atomically: a temporary file, fsync'd, renamed over it, and the directory fsync'd. */
export async function writeAnchor(logPath: string, anchor: LogAnchor): Promise<void> {
  const path = anchorPath(logPath);
  const temp = `${path}.tmp`;
  try {
    // O_NOFOLLOW: a symbolic link planted at the temporary path must not redirect the write.
    const fh = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.chmod(0o600);
      await fh.writeFile(`${JSON.stringify({ seq: anchor.seq, hash: anchor.hash })}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(temp, path);
    await syncDirectory(dirname(path));
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw new DecisionLogError("prune", `cannot write ${path}: ${ioProblem(err)}`);
  }
}
