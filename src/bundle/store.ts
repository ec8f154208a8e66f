import { constants } from "node:fs";
import { mkdir, open, rename, stat, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { MAX_ARCHIVE_BYTES, packArchive, unpackArchive } from "./archive.ts";
import { BundleError } from "./errors.ts";
import type { PersistedState } from "./manager.ts";
import type { BundleFiles } from "./manifest.ts";

/**
 * The node's bundle state directory (0700), two files (0600), each replaced atomically:
 *
 * - `bundle.tar.gz`: the last verified bundle, signature included, repacked with packArchive (mtime 0):
 *   an ordinary bundle archive, so `edgeward bundle verify` checks it as it is. It is
 *   re-verified at boot, never trusted for having been stored.
 * - `state.json`: `{"version":1,"minRevision":N,"activeDigest":"<sha256 hex>"|null,"highWaterMs":N,"tampered":B}`,
 *   the rollback floor and the clock's mark, apart from the bundle so that a deleted or corrupt bundle
 *   cannot lower them.
 *
 * saveBundle writes the bundle before the state: a crash between the two leaves a stored bundle newer
 * than the floor, which still activates; the other order would leave an older one, refused as a rollback.
 * One process owns a directory; saves from it run one at a time.
 */
export const BUNDLE_FILE = "bundle.tar.gz";
export const STATE_FILE = "state.json";
const MAX_STATE_BYTES = 4096;
const STATE_VERSION = 1;

export interface StoreLoad {
  state: PersistedState | null;
  files: BundleFiles | null;
  /** Why the stored bundle (or state) was refused; the caller stays locked until a new bundle arrives. */
  error: BundleError | null;
}

const stateSchema = z.strictObject({
  version: z.literal(STATE_VERSION),
  minRevision: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  activeDigest: z.string().regex(/^[0-9a-f]{64}$/, "must be a lowercase sha256 hex digest").nullable(),
  highWaterMs: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  tampered: z.boolean(),
}).refine((s) => (s.minRevision === 0) === (s.activeDigest === null), "minRevision and activeDigest must be set together");

function storeError(message: string): BundleError {
  return new BundleError("store", message);
}

function ioProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case "EACCES":
    case "EPERM": return "permission denied";
    case "ELOOP": return "is a symbolic link";
    case "EISDIR": return "is a directory";
    case "EEXIST":
    case "ENOTDIR": return "a path component is not a directory";
    default: return code ?? (err instanceof Error ? err.message : String(err));
  }
}

function parseState(path: string, bytes: Uint8Array): PersistedState {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw storeError(`${path} is not UTF-8 JSON (truncated or overwritten?)`);
  }
  const parsed = stateSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw storeError(`${path}: ${issue.path.length === 0 ? "" : `${issue.path.join(".")}: `}${issue.message}`);
  }
  const { minRevision, activeDigest, highWaterMs, tampered } = parsed.data;
  return { minRevision, activeDigest, highWaterMs, tampered };
}

function encodeState(s: PersistedState): Buffer {
  const { minRevision, activeDigest, highWaterMs, tampered } = s;
  return Buffer.from(`${JSON.stringify({ version: STATE_VERSION, minRevision, activeDigest, highWaterMs, tampered }, null, 2)}\n`);
}

/** The file's bytes, or null when there is none. Symbolic links, non-regular and oversized files are refused. */
async function readStoredFile(path: string, maxBytes: number): Promise<Buffer | null> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw storeError(`cannot read ${path}: ${ioProblem(err)}`);
  }
  try {
    const info = await fh.stat();
    if (!info.isFile()) throw storeError(`${path} is not a regular file`);
    if (info.size > maxBytes) throw storeError(`${path} is ${info.size} bytes, more than the ${maxBytes} allowed`);
    return await fh.readFile();
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throw storeError(`cannot read ${path}: ${ioProblem(err)}`);
  } finally {
    await fh.close();
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class BundleStore {
  readonly #dir: string;
  #saves: Promise<unknown> = Promise.resolve();

  constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Reads what a previous run stored. Damage is reported in `error`, never thrown: a corrupt or missing
   * bundle keeps the state (and so the rollback floor); a missing or corrupt state.json next to a bundle,
   * or one that names no activated bundle, refuses the bundle too, since without the floor it could be an
   * old revision. Throws only when the directory itself is unusable (not a directory, open to other users).
   */
  async load(): Promise<StoreLoad> {
    await this.#prepareDirectory();
    const statePath = join(this.#dir, STATE_FILE);
    const bundlePath = join(this.#dir, BUNDLE_FILE);
    let state: PersistedState | null;
    try {
      const stateBytes = await readStoredFile(statePath, MAX_STATE_BYTES);
      state = stateBytes === null ? null : parseState(statePath, stateBytes);
    } catch (err) {
      if (!(err instanceof BundleError)) throw err;
      return { state: null, files: null, error: err };
    }
    let bundleBytes: Buffer | null;
    try {
      bundleBytes = await readStoredFile(bundlePath, MAX_ARCHIVE_BYTES);
    } catch (err) {
      if (!(err instanceof BundleError)) throw err;
      return { state, files: null, error: err };
    }
    if (state === null) {
      const error = bundleBytes === null ? null
        : storeError(`${statePath} is missing, so the stored bundle cannot be checked for rollback; waiting for a new bundle`);
      return { state: null, files: null, error };
    }
    if (bundleBytes === null) {
      const error = state.activeDigest === null ? null
        : storeError(`${bundlePath} is missing; revision ${state.minRevision} stays the floor, waiting for a new bundle`);
      return { state, files: null, error };
    }
    if (state.activeDigest === null) {
      // saveBundle always stores a state naming a bundle; a floor of 0 beside a bundle is a state rewritten
      // after the original was lost, and must not let the bundle it could not vouch for back in.
      return { state, files: null, error: storeError(`${statePath} names no activated bundle, so the stored bundle cannot be checked for rollback; waiting for a new bundle`) };
    }
    try {
      return { state, files: unpackArchive(bundleBytes), error: null };
    } catch (err) {
      if (!(err instanceof BundleError)) throw err;
      return { state, files: null, error: new BundleError(err.check, `${bundlePath}: ${err.message.replace(/^bundle: /, "")}`) };
    }
  }

  /** Stores a verified bundle, then the state that names it. */
  saveBundle(files: BundleFiles, state: PersistedState): Promise<void> {
    return this.#serialized(async () => {
      await this.#replace(BUNDLE_FILE, packArchive(files, 0));
      await this.#replace(STATE_FILE, encodeState(state));
    });
  }

  /** Stores the state alone (a raised clock mark, tampering seen). */
  saveState(state: PersistedState): Promise<void> {
    return this.#serialized(() => this.#replace(STATE_FILE, encodeState(state)));
  }

  #serialized(job: () => Promise<void>): Promise<void> {
    const done = this.#saves.then(async () => {
      await this.#prepareDirectory();
      await job();
    });
    this.#saves = done.catch(() => undefined);
    return done;
  }

  async #prepareDirectory(): Promise<void> {
    try {
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      const info = await stat(this.#dir);
      if (!info.isDirectory()) throw storeError(`${this.#dir} is not a directory`);
      if ((info.mode & 0o077) !== 0) {
        throw storeError(`${this.#dir} is open to other users (mode ${(info.mode & 0o777).toString(8)}); chmod 700 it`);
      }
    } catch (err) {
      if (err instanceof BundleError) throw err;
      throw storeError(`cannot use ${this.#dir} as the bundle state directory: ${ioProblem(err)}`);
    }
  }

  /** Write a temporary file, fsync it, rename it over `name`, fsync the directory: `name` is old or new, never torn. */
  async #replace(name: string, data: Uint8Array): Promise<void> {
    const path = join(this.#dir, name);
    const temp = `${path}.tmp`;
    try {
      // O_NOFOLLOW: a symbolic link planted at the temporary path must not redirect the write.
      const fh = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
      try {
        await fh.chmod(0o600); // a file left behind by a crash keeps its old mode otherwise
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(temp, path);
      await syncDirectory(this.#dir);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw storeError(`cannot write ${path}: ${ioProblem(err)}`);
    }
  }
}
