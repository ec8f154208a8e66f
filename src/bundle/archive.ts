import { constants, gunzipSync, gzipSync } from "node:zlib";
import { Header, Parser, Pax, type ReadEntry } from "tar";
import { BundleError } from "./errors.ts";
import { bundlePathProblem, type BundleFiles } from "./manifest.ts";

const MiB = 1024 * 1024;

// What a reader accepts. A bundle is a few policy files; anything near these limits is an attack or a mistake.
/** the .tar.gz itself */
export const MAX_ARCHIVE_BYTES = 32 * MiB;
/** the tar stream once inflated (or a directory's files together): inflation stops here, so a gzip bomb costs at most this */
export const MAX_TAR_BYTES = 32 * MiB;
/** entries, directories included */
export const MAX_ENTRIES = 1000;
export const MAX_FILE_BYTES = 8 * MiB;

const BLOCK = 512;
/** RFC 1952 "unknown" OS: zlib otherwise writes the platform it was built for, and the bytes would differ across them. */
const GZIP_OS_UNKNOWN = 255;
const GZIP_OS_OFFSET = 9;

function malformed(message: string): BundleError {
  return new BundleError("malformed-archive", message);
}

/** A path as it may appear in a message: bounded, control characters escaped. */
export function quotePath(path: string): string {
  return JSON.stringify(path.length > 80 ? `${path.slice(0, 80)}…` : path);
}

/**
 * Gathers a bundle's files from any source (tar entries, a directory walk, a build), enforcing the rules they all
 * share: safe paths, no duplicates (even by case), no path both a file and a directory, the entry and size limits.
 */
export class FileSet {
  readonly #source: string;
  readonly #files = new Map<string, Uint8Array>();
  /** lowercased path -> path: two paths that differ only in case are one file on a case-insensitive file system */
  readonly #folded = new Map<string, string>();
  /** lowercased directories that files sit in: a file cannot also be a directory once the bundle is on disk */
  readonly #directories = new Set<string>();
  #entries = 0;
  #bytes = 0;

  constructor(source: string) {
    this.#source = source;
  }

  /** Counts one entry (a file or a directory) and checks its path. */
  entry(path: string): void {
    this.#entries += 1;
    if (this.#entries > MAX_ENTRIES) throw malformed(`${this.#source} has more than ${MAX_ENTRIES} entries`);
    const problem = bundlePathProblem(path);
    if (problem !== null) throw malformed(`${this.#source} path ${quotePath(path)} ${problem}`);
  }

  /** Announces a file and its size before its bytes are read, so an oversized file is never buffered. */
  expect(path: string, size: number): void {
    const folded = path.toLowerCase();
    const other = this.#folded.get(folded);
    if (other !== undefined) {
      throw malformed(other === path ? `${this.#source} holds ${quotePath(path)} twice` : `${this.#source} holds ${quotePath(other)} and ${quotePath(path)}, which differ only in case`);
    }
    if (this.#directories.has(folded)) throw malformed(`${this.#source} holds ${quotePath(path)} both as a file and as a directory`);
    for (let slash = folded.indexOf("/"); slash !== -1; slash = folded.indexOf("/", slash + 1)) {
      const file = this.#folded.get(folded.slice(0, slash));
      if (file !== undefined) throw malformed(`${this.#source} holds ${quotePath(file)} both as a file and as a directory`);
      this.#directories.add(folded.slice(0, slash));
    }
    if (size > MAX_FILE_BYTES) throw malformed(`${quotePath(path)} is larger than ${MAX_FILE_BYTES / MiB} MiB`);
    this.#bytes += size;
    if (this.#bytes > MAX_TAR_BYTES) throw malformed(`${this.#source} holds more than ${MAX_TAR_BYTES / MiB} MiB`);
    this.#folded.set(folded, path);
  }

  add(path: string, bytes: Uint8Array): void {
    this.#files.set(path, bytes);
  }

  files(): BundleFiles {
    return this.#files;
  }
}

/**
 * A reproducible .tar.gz of `files`: paths sorted, mode 0644, uid/gid 0, no user or group names, every mtime
 * `mtimeSeconds`, the gzip header without a timestamp. The same files give the same bytes.
 */
export function packArchive(files: BundleFiles, mtimeSeconds: number): Buffer {
  if (!Number.isSafeInteger(mtimeSeconds) || mtimeSeconds < 0) throw new RangeError("mtimeSeconds must be a non-negative integer");
  if (files.size === 0) throw malformed("a bundle holds at least one file");
  const checked = new FileSet("bundle");
  for (const [path, bytes] of files) {
    checked.entry(path);
    checked.expect(path, bytes.length);
  }
  const mtime = new Date(mtimeSeconds * 1000);
  const blocks: Uint8Array[] = [];
  for (const path of [...files.keys()].sort()) {
    const bytes = files.get(path)!;
    const header = new Header({ path, mode: 0o644, uid: 0, gid: 0, size: bytes.length, mtime, type: "File" });
    // true when a field does not fit the ustar header (a long path, a time past 2242): a pax record carries them.
    if (header.encode()) blocks.push(new Pax({ path, mtime }).encode());
    blocks.push(header.block!, bytes, new Uint8Array((BLOCK - (bytes.length % BLOCK)) % BLOCK));
  }
  blocks.push(new Uint8Array(2 * BLOCK));
  const gzip = gzipSync(Buffer.concat(blocks), { level: constants.Z_BEST_COMPRESSION });
  gzip[GZIP_OS_OFFSET] = GZIP_OS_UNKNOWN;
  return gzip;
}

/** How a refused tar entry type is named in errors (release/archive-reader.ts names them alike). */
export const ENTRY_KINDS: Readonly<Record<string, string>> = {
  SymbolicLink: "a symbolic link",
  Link: "a hard link",
  CharacterDevice: "a character device",
  BlockDevice: "a block device",
  FIFO: "a FIFO",
  ContiguousFile: "a contiguous file",
};

function readTar(tar: Buffer): BundleFiles {
  if (tar.length % BLOCK !== 0) throw malformed("the tar stream is not a whole number of 512-byte blocks (truncated?)");
  // The parser would inflate a second gzip layer by itself, outside the size limit.
  if (tar[0] === 0x1f && tar[1] === 0x8b) throw malformed("the archive is compressed twice");
  const set = new FileSet("archive");
  let sawEnd = false;
  const parser = new Parser({ strict: true, brotli: false, zstd: false });
  parser.on("entry", (entry: ReadEntry) => {
    const path = entry.type === "Directory" ? entry.path.replace(/\/$/, "") : entry.path;
    set.entry(path);
    if (entry.type === "Directory") {
      entry.resume();
      return;
    }
    if (entry.type !== "File" && entry.type !== "OldFile") {
      throw malformed(`archive entry ${quotePath(path)} is ${ENTRY_KINDS[entry.type] ?? `a ${entry.type} entry`}; only regular files are allowed`);
    }
    set.expect(path, entry.size);
    const chunks: Buffer[] = [];
    entry.on("data", (chunk: Buffer) => chunks.push(chunk));
    entry.on("end", () => set.add(path, Buffer.concat(chunks)));
  });
  parser.on("ignoredEntry", (entry: ReadEntry) => {
    throw malformed(`archive entry ${quotePath(entry.path)} has an unsupported type (${entry.header.typeKey})`);
  });
  parser.on("error", (error: Error) => {
    throw malformed(`not a valid tar archive (${error.message})`);
  });
  parser.on("eof", () => {
    sawEnd = true;
  });
  try {
    parser.end(tar);
  } catch (error) {
    if (error instanceof BundleError) throw error;
    throw malformed(`not a valid tar archive (${(error as Error).message})`);
  }
  if (!sawEnd) throw malformed("the tar stream ends without its end-of-archive blocks (truncated?)");
  return set.files();
}

/**
 * The files of a .tar.gz bundle, read in memory only (nothing is extracted to disk). Only regular files with safe,
 * distinct paths are accepted, within the MAX_* limits; directory entries are skipped.
 */
export function unpackArchive(bytes: Uint8Array): BundleFiles {
  if (bytes.length > MAX_ARCHIVE_BYTES) throw malformed(`the archive is larger than ${MAX_ARCHIVE_BYTES / MiB} MiB`);
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) throw malformed("not a gzip-compressed tar archive");
  let tar: Buffer;
  try {
    tar = gunzipSync(bytes, { maxOutputLength: MAX_TAR_BYTES });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
      throw malformed(`the archive inflates to more than ${MAX_TAR_BYTES / MiB} MiB`);
    }
    throw malformed(`corrupt gzip data (${(error as Error).message})`);
  }
  return readTar(tar);
}
