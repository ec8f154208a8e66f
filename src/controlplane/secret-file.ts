import { open } from "node:fs/promises";
import { ConfigError } from "../config/index.ts";

/** A token or a database URL is a line, not a file's worth of data. */
const MAX_SECRET_BYTES = 4096;

/**
 * Reads a secret (the operator token, the PostgreSQL URL) from a regular file that group and others cannot access:
 * a secret others could read is no secret. Surrounding whitespace (a trailing newline) is dropped; `key` names the
 * config key in every error, and the content never appears in one.
 */
export async function readSecretFile(path: string, key: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw new ConfigError(key, `cannot open ${path} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    // fstat the open descriptor so the file checked is the file read.
    const stat = await handle.stat();
    if (!stat.isFile()) throw new ConfigError(key, `${path} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      throw new ConfigError(key, `${path} is accessible by group or others (mode ${(stat.mode & 0o777).toString(8).padStart(4, "0")}); run chmod 600 on it`);
    }
    if (stat.size > MAX_SECRET_BYTES) throw new ConfigError(key, `${path} is larger than ${MAX_SECRET_BYTES} bytes`);
    const text = (await handle.readFile("utf8")).trim();
    if (text === "") throw new ConfigError(key, `${path} is empty`);
    return text;
  } finally {
    await handle.close();
  }
}
