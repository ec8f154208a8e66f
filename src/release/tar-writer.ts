import { Header, Pax } from "tar";

const BLOCK = 512;

interface EntryBase {
  /** relative POSIX path, no "." or ".." segments; directories without the trailing "/" */
  path: string;
  uid: number;
  gid: number;
}

export interface DirectoryEntry extends EntryBase {
  type: "directory";
  mode: number;
}

export interface FileEntry extends EntryBase {
  type: "file";
  mode: number;
  size: number;
  /** the bytes, or a function reading them (from disk) when they are too many to hold */
  body: Uint8Array | (() => AsyncIterable<Uint8Array>);
}

export interface SymlinkEntry extends EntryBase {
  type: "symlink";
  target: string;
}

export type TarEntry = DirectoryEntry | FileEntry | SymlinkEntry;

/** Why `path` cannot name an entry of an archive this module writes, or null. */
export function entryPathProblem(path: string): string | null {
  if (path === "") return "is empty";
  if (path.startsWith("/")) return "is absolute";
  for (const segment of path.split("/")) {
    if (segment === "") return "has an empty segment";
    if (segment === "." || segment === "..") return `has a "${segment}" segment`;
    if (segment.includes("\0")) return "holds a NUL character";
  }
  return null;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function parentOf(path: string): string | null {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? null : path.slice(0, slash);
}

/**
 * Checks a set of entries and returns them in archive order: sorted by path (a directory before what it holds), each
 * path once, every parent directory present. Throws a RangeError naming the first problem.
 */
export function orderEntries(entries: readonly TarEntry[]): TarEntry[] {
  const byPath = new Map<string, TarEntry>();
  for (const entry of entries) {
    const problem = entryPathProblem(entry.path);
    if (problem !== null) throw new RangeError(`archive path ${JSON.stringify(entry.path)} ${problem}`);
    if (byPath.has(entry.path)) throw new RangeError(`archive path ${JSON.stringify(entry.path)} is given twice`);
    byPath.set(entry.path, entry);
  }
  for (const entry of byPath.values()) {
    const parent = parentOf(entry.path);
    if (parent !== null && byPath.get(parent)?.type !== "directory") {
      throw new RangeError(`archive path ${JSON.stringify(entry.path)} has no directory entry for ${JSON.stringify(parent)}`);
    }
  }
  return [...byPath.values()].sort((a, b) => compare(a.path, b.path));
}

function headerBlocks(entry: TarEntry, mtime: Date): Buffer[] {
  const path = entry.type === "directory" ? `${entry.path}/` : entry.path;
  const common = { path, uid: entry.uid, gid: entry.gid, mtime, uname: "", gname: "", devmaj: 0, devmin: 0 };
  const header = entry.type === "directory"
    ? new Header({ ...common, mode: entry.mode, size: 0, type: "Directory" })
    : entry.type === "file"
      ? new Header({ ...common, mode: entry.mode, size: entry.size, type: "File" })
      : new Header({ ...common, mode: 0o777, size: 0, type: "SymbolicLink", linkpath: entry.target });
  // true when a field does not fit the ustar header (a long path or link target): a pax record carries it.
  const needsPax = header.encode();
  const blocks: Buffer[] = [];
  if (needsPax) blocks.push(new Pax({ path, linkpath: entry.type === "symlink" ? entry.target : undefined, mtime }).encode());
  blocks.push(header.block!);
  return blocks;
}

/**
 * A reproducible tar stream of `entries` (POSIX ustar, pax records only for long names): sorted paths, the given
 * uid/gid and modes, no user or group names, every mtime `mtimeSeconds`. The same entries give the same bytes.
 */
export async function* tarStream(entries: readonly TarEntry[], mtimeSeconds: number): AsyncGenerator<Buffer> {
  if (!Number.isSafeInteger(mtimeSeconds) || mtimeSeconds < 0) throw new RangeError("mtimeSeconds must be a non-negative integer");
  const mtime = new Date(mtimeSeconds * 1000);
  for (const entry of orderEntries(entries)) {
    yield* headerBlocks(entry, mtime);
    if (entry.type !== "file") continue;
    let written = 0;
    const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = entry.body instanceof Uint8Array ? [entry.body] : entry.body();
    for await (const chunk of chunks) {
      written += chunk.length;
      if (written > entry.size) break;
      yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    }
    if (written !== entry.size) throw new Error(`${entry.path}: expected ${entry.size} bytes, read ${written} (did the file change?)`);
    const pad = (BLOCK - (entry.size % BLOCK)) % BLOCK;
    if (pad > 0) yield Buffer.alloc(pad);
  }
  yield Buffer.alloc(2 * BLOCK);
}

/** The whole tar of `entries` in memory: for small archives (a signature layout, tests). */
export async function tarBuffer(entries: readonly TarEntry[], mtimeSeconds: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of tarStream(entries, mtimeSeconds)) parts.push(part);
  return Buffer.concat(parts);
}
