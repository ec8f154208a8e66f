import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { Readable, Writable } from "node:stream";
import { createGunzip, type Gunzip } from "node:zlib";
import { ENTRY_KINDS } from "../bundle/archive.ts";
import { Parser, type ReadEntry } from "tar";
import { ReleaseError } from "./errors.ts";
import type { BlobInfo, LayoutContents } from "./layout.ts";
import { BLOBS_DIR, INDEX_FILE, OCI_LAYOUT_FILE } from "./oci.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BLOCK = 512;

/** What a reader accepts. An image layout is a handful of entries; a bigger or stranger archive is refused unread. */
export interface ReadLimits {
  /** entries, directories included */
  maxEntries: number;
  /** one blob (a layer) */
  maxBlobBytes: number;
  /** every entry together */
  maxTotalBytes: number;
  /** what the gzip layers inflate to, together: a gzip bomb costs at most this much hashing */
  maxInflatedBytes: number;
  /** oci-layout and index.json; blobs up to this size are kept in memory (manifests, configs, signature payloads) */
  maxSmallBytes: number;
}

export const DEFAULT_READ_LIMITS: ReadLimits = {
  maxEntries: 1000,
  maxBlobBytes: 4 * GiB,
  maxTotalBytes: 8 * GiB,
  maxInflatedBytes: 16 * GiB,
  maxSmallBytes: 4 * MiB,
};

function malformed(message: string): ReleaseError {
  return new ReleaseError("malformed-archive", message);
}

/** A path as it may appear in a message: bounded, control characters escaped. */
function quote(path: string): string {
  return JSON.stringify(path.length > 100 ? `${path.slice(0, 100)}…` : path);
}

const BLOB_PATH = new RegExp(`^${BLOBS_DIR}/([0-9a-f]{64})$`);
const DIRECTORIES = new Set(["blobs", BLOBS_DIR]);
const TOP_FILES = new Set([OCI_LAYOUT_FILE, INDEX_FILE]);


/** Why an archive path cannot be part of an image layout, or null: traversal, absolute paths and strays are named. */
function pathProblem(path: string): string | null {
  if (path.startsWith("/")) return "is absolute";
  if (path.split("/").some((s) => s === "..")) return "climbs out of the archive (..)";
  if (path.includes("\\")) return "holds a backslash";
  return null;
}

function normalize(path: string): string {
  let p = path;
  while (p.startsWith("./")) p = p.slice(2);
  return p.endsWith("/") ? p.slice(0, -1) : p;
}

interface Inflation {
  gunzip: Gunzip;
  hash: Hash;
  error: Error | null;
  /** settles when the gunzip stream ends or fails */
  done: Promise<void>;
}

function inflation(onInflated: (n: number) => void): Inflation {
  const state: Inflation = { gunzip: createGunzip(), hash: createHash("sha256"), error: null, done: Promise.resolve() };
  state.done = new Promise<void>((resolve) => {
    state.gunzip.on("data", (out: Buffer) => {
      state.hash.update(out);
      onInflated(out.length);
    });
    state.gunzip.on("end", resolve);
    state.gunzip.on("error", (error) => {
      state.error = error;
      resolve();
    });
  });
  return state;
}

/** Hashes one entry's bytes as they stream past; keeps them when small; hashes what a gzip blob inflates to. */
function consume(entry: ReadEntry, keep: boolean, onInflated: (n: number) => void): { done: Promise<void>; result: () => BlobInfo } {
  const hash = createHash("sha256");
  const kept: Buffer[] = [];
  const state: { size: number; first: boolean; inflate: Inflation | null } = { size: 0, first: true, inflate: null };
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      state.size += chunk.length;
      if (keep) kept.push(chunk);
      if (state.first) {
        state.first = false;
        if (chunk.length >= 2 && chunk[0] === 0x1f && chunk[1] === 0x8b) state.inflate = inflation(onInflated);
      }
      const inflate = state.inflate;
      if (inflate === null || inflate.error !== null || inflate.gunzip.write(chunk)) return callback();
      // Backpressure from the inflater; a corrupt stream never drains, so its end releases the wait too.
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        callback();
      };
      inflate.gunzip.once("drain", release);
      void inflate.done.then(release);
    },
    final(callback) {
      const inflate = state.inflate;
      if (inflate === null) return callback();
      if (inflate.error === null) inflate.gunzip.end();
      void inflate.done.then(() => callback());
    },
  });
  const done = new Promise<void>((resolve, reject) => {
    sink.on("finish", resolve);
    sink.on("error", reject);
  });
  entry.pipe(sink);
  return {
    done,
    result: () => {
      const inflate = state.inflate;
      return {
        size: state.size,
        sha256: hash.digest("hex"),
        uncompressedSha256: inflate === null ? null : inflate.error ?? inflate.hash.digest("hex"),
        ...(keep ? { bytes: Buffer.concat(kept) } : {}),
      };
    },
  };
}

/**
 * Reads an OCI image layout from a tar stream without writing anything to disk: only the layout's own paths
 * (oci-layout, index.json, blobs/sha256/<hex>) as regular files or directories, each once, within `limits`.
 * Every blob is hashed as it streams past (gzip blobs also inflated and hashed); small ones are kept.
 */
export function readLayoutStream(source: Readable, limits: ReadLimits = DEFAULT_READ_LIMITS): Promise<LayoutContents> {
  return new Promise<LayoutContents>((resolve, reject) => {
    const files = new Map<string, Buffer>();
    const blobs = new Map<string, BlobInfo>();
    const seen = new Set<string>();
    const pending: Promise<void>[] = [];
    let entries = 0;
    let total = 0;
    let inflated = 0;
    let sawEnd = false;
    let failed = false;
    let firstChunk = true;
    let streamBytes = 0;

    const parser = new Parser({ strict: true, brotli: false, zstd: false });
    const fail = (error: ReleaseError): void => {
      if (failed) return;
      failed = true;
      source.unpipe(parser);
      source.destroy();
      parser.abort(error);
      reject(error);
    };

    parser.on("entry", (entry: ReadEntry) => {
      if (failed) return entry.resume();
      entries += 1;
      if (entries > limits.maxEntries) return fail(malformed(`the archive has more than ${limits.maxEntries} entries`));
      const raw = entry.path;
      const problem = pathProblem(raw);
      if (problem !== null) return fail(malformed(`archive entry ${quote(raw)} ${problem}`));
      const path = normalize(raw);
      if (entry.type !== "File" && entry.type !== "OldFile" && entry.type !== "Directory") {
        return fail(malformed(`archive entry ${quote(raw)} is ${ENTRY_KINDS[entry.type] ?? `a ${entry.type} entry`}; only regular files and directories are allowed`));
      }
      if (entry.type === "Directory") {
        if (path !== "" && !DIRECTORIES.has(path)) return fail(malformed(`archive entry ${quote(raw)} is not part of an OCI image layout`));
        entry.resume();
        return;
      }
      const blob = BLOB_PATH.exec(path);
      if (blob === null && !TOP_FILES.has(path)) return fail(malformed(`archive entry ${quote(raw)} is not part of an OCI image layout`));
      if (seen.has(path)) return fail(malformed(`the archive holds ${quote(path)} twice`));
      seen.add(path);
      const max = blob === null ? limits.maxSmallBytes : limits.maxBlobBytes;
      if (entry.size > max) return fail(malformed(`archive entry ${quote(path)} is ${entry.size} bytes, more than the ${max} allowed`));
      total += entry.size;
      if (total > limits.maxTotalBytes) return fail(malformed(`the archive holds more than ${limits.maxTotalBytes} bytes`));
      const keep = entry.size <= limits.maxSmallBytes;
      const consumer = consume(entry, keep, (n) => {
        inflated += n;
        if (inflated > limits.maxInflatedBytes) fail(malformed(`the archive's gzip layers inflate to more than ${limits.maxInflatedBytes} bytes`));
      });
      pending.push(consumer.done.then(() => {
        const info = consumer.result();
        if (blob === null) files.set(path, info.bytes ?? Buffer.alloc(0));
        else blobs.set(blob[1]!, info);
      }));
    });
    parser.on("ignoredEntry", (entry: ReadEntry) => fail(malformed(`archive entry ${quote(entry.path)} has an unsupported type (${entry.header.typeKey ?? "?"})`)));
    parser.on("error", (error: Error) => {
      if (error instanceof ReleaseError) return fail(error);
      fail(malformed(`not a valid tar archive (${error.message.replace(/^TAR_[A-Z_]+: /, "")})`));
    });
    parser.on("eof", () => {
      sawEnd = true;
    });
    parser.on("end", () => {
      if (failed) return;
      if (streamBytes % BLOCK !== 0) return fail(malformed("the archive is not a whole number of 512-byte blocks (truncated?)"));
      if (!sawEnd) return fail(malformed("the archive ends without its end-of-archive blocks (truncated?)"));
      Promise.all(pending).then(() => {
        if (!failed) resolve({ files, blobs });
      }, (error: unknown) => fail(malformed(`cannot read the archive (${(error as Error).message})`)));
    });
    source.on("data", (chunk: Buffer) => {
      if (firstChunk) {
        firstChunk = false;
        if (chunk.length >= 2 && chunk[0] === 0x1f && chunk[1] === 0x8b) fail(malformed("the archive is gzip-compressed; an image archive (.oci.tar) is a plain tar"));
      }
      streamBytes += chunk.length;
    });
    source.on("error", (error: NodeJS.ErrnoException) => fail(malformed(`cannot read the archive (${error.code ?? error.message})`)));
    source.pipe(parser);
  });
}

/** Reads an image layout archive file; see readLayoutStream. */
export async function readLayoutArchive(path: string, limits: ReadLimits = DEFAULT_READ_LIMITS): Promise<LayoutContents> {
  let size: number;
  try {
    const handle = await open(path, "r");
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw malformed(`${path} is not a regular file`);
      size = info.size;
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof ReleaseError) throw error;
    throw malformed(`cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  if (size > limits.maxTotalBytes + limits.maxEntries * 3 * BLOCK) throw malformed(`${path} is larger than the ${limits.maxTotalBytes} bytes allowed`);
  return readLayoutStream(createReadStream(path, { highWaterMark: 1024 * 1024 }), limits);
}

/** Reads an image layout archive held in memory (a signature layout, a test's archive). */
export function readLayoutBytes(bytes: Uint8Array, limits: ReadLimits = DEFAULT_READ_LIMITS): Promise<LayoutContents> {
  return readLayoutStream(Readable.from([Buffer.from(bytes)]), limits);
}
