import { createHash } from "node:crypto";
import { Readable, Transform, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants, createGzip } from "node:zlib";
import type { Digest } from "./oci.ts";
import { tarStream, type TarEntry } from "./tar-writer.ts";

/** RFC 1952 "unknown" OS: zlib otherwise writes the platform it was built for, and the bytes would differ across them. */
const GZIP_OS_UNKNOWN = 255;
const GZIP_OS_OFFSET = 9;

export interface LayerDigests {
  /** sha256 of the uncompressed tar: the config's diff_id */
  diffId: Digest;
  /** sha256 of the gzip stream: the manifest's layer digest */
  digest: Digest;
  /** bytes of the gzip stream */
  size: number;
}

function hashing(onDone: (hex: string, size: number) => void, patchGzipHeader = false): Transform {
  const hash = createHash("sha256");
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (patchGzipHeader && size === 0 && chunk.length > GZIP_OS_OFFSET) {
        chunk = Buffer.from(chunk);
        chunk[GZIP_OS_OFFSET] = GZIP_OS_UNKNOWN;
      }
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      onDone(hash.digest("hex"), size);
      callback();
    },
  });
}

/**
 * Writes a reproducible gzip-compressed layer of `entries` to `destination` and returns its digests. The gzip header
 * carries no time, no name and the "unknown" OS, so the same entries give the same bytes with the same zlib.
 */
export async function writeLayer(entries: readonly TarEntry[], mtimeSeconds: number, destination: Writable): Promise<LayerDigests> {
  let diffId = "";
  let digest = "";
  let size = 0;
  await pipeline(
    Readable.from(tarStream(entries, mtimeSeconds)),
    hashing((hex) => {
      diffId = hex;
    }),
    createGzip({ level: constants.Z_DEFAULT_COMPRESSION }),
    hashing((hex, n) => {
      digest = hex;
      size = n;
    }, true),
    destination,
  );
  return { diffId: `sha256:${diffId}`, digest: `sha256:${digest}`, size };
}
