import { constants, type Dirent, type Stats } from "node:fs";
import { open, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { FileSet, MAX_ARCHIVE_BYTES, quotePath, unpackArchive } from "./archive.ts";
import { BundleError } from "./errors.ts";
import type { BundleFiles } from "./manifest.ts";

function malformed(message: string): BundleError {
  return new BundleError("malformed-archive", message);
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? "error";
}

function describe(entry: Dirent): string {
  if (entry.isSymbolicLink()) return "a symbolic link";
  if (entry.isFIFO()) return "a FIFO";
  if (entry.isSocket()) return "a socket";
  if (entry.isCharacterDevice()) return "a character device";
  if (entry.isBlockDevice()) return "a block device";
  return "not a regular file";
}

async function readRegularFile(path: string, rel: string, set: FileSet, source: string): Promise<Uint8Array> {
  let handle;
  try {
    // O_NOFOLLOW and fstat: the file checked is the file read, even if the tree changes meanwhile.
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    throw malformed(`cannot read ${source} file ${quotePath(rel)} (${errorCode(error)})`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw malformed(`${source} entry ${quotePath(rel)} is not a regular file`);
    set.expect(rel, info.size);
    const bytes = await handle.readFile();
    if (bytes.length !== info.size) throw malformed(`${source} file ${quotePath(rel)} changed while it was read`);
    return bytes;
  } finally {
    await handle.close();
  }
}

/** Every regular file under `root`, by relative POSIX path; symbolic links and special files are refused. */
async function readTree(root: string, source: string): Promise<BundleFiles> {
  const set = new FileSet(source);
  const visit = async (dir: string, prefix: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      throw malformed(`cannot list ${source} ${quotePath(prefix === "" ? dir : prefix)} (${errorCode(error)})`);
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      const rel = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
      set.entry(rel);
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await visit(path, rel);
      else if (entry.isFile()) set.add(rel, await readRegularFile(path, rel, set, source));
      else throw malformed(`${source} entry ${quotePath(rel)} is ${describe(entry)}; only regular files are allowed`);
    }
  };
  await visit(root, "");
  return set.files();
}

async function statPath(path: string): Promise<Stats> {
  try {
    return await stat(path);
  } catch (error) {
    throw malformed(`cannot read ${path} (${errorCode(error)})`);
  }
}

/** A bundle from disk: a .tar.gz file (unpacked in memory) or a directory holding the same files. */
export async function readBundleFiles(path: string): Promise<BundleFiles> {
  const info = await statPath(path);
  if (info.isDirectory()) return readTree(path, "bundle directory");
  if (!info.isFile()) throw malformed(`${path} is neither a .tar.gz file nor a directory`);
  if (info.size > MAX_ARCHIVE_BYTES) throw malformed(`${path} is larger than ${MAX_ARCHIVE_BYTES / (1024 * 1024)} MiB`);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw malformed(`cannot read ${path} (${errorCode(error)})`);
  }
  return unpackArchive(bytes);
}

/** The input of a build: every regular file under `dir`, with the same rules as a bundle's content. */
export async function readPolicyDirectory(dir: string): Promise<BundleFiles> {
  const info = await statPath(dir);
  if (!info.isDirectory()) throw malformed(`${dir} is not a directory`);
  return readTree(dir, "policy directory");
}
