import { BLOBS_DIR, INDEX_FILE, OCI_LAYOUT, OCI_LAYOUT_FILE, encodeJson } from "./oci.ts";
import { tarBuffer, type TarEntry } from "./tar-writer.ts";

/** A blob to put in a layout archive: its bytes, or its size and a reader for blobs kept on disk. */
export type LayoutBlob = Buffer | { size: number; read: () => AsyncIterable<Uint8Array> };

/**
 * The entries of an image layout archive: oci-layout, index.json and blobs/sha256/<hex>, owned by root, files 0644
 * and directories 0755, so that `podman load`, `skopeo copy oci-archive:…` and `edgeward release verify` read it.
 */
export function layoutEntries(blobs: ReadonlyMap<string, LayoutBlob>, index: Buffer): TarEntry[] {
  const owner = { uid: 0, gid: 0 };
  const layout = encodeJson(OCI_LAYOUT);
  return [
    { type: "directory", path: "blobs", mode: 0o755, ...owner },
    { type: "directory", path: BLOBS_DIR, mode: 0o755, ...owner },
    ...[...blobs].map(([hex, blob]): TarEntry => Buffer.isBuffer(blob)
      ? { type: "file", path: `${BLOBS_DIR}/${hex}`, mode: 0o644, size: blob.length, body: blob, ...owner }
      : { type: "file", path: `${BLOBS_DIR}/${hex}`, mode: 0o644, size: blob.size, body: blob.read, ...owner }),
    { type: "file", path: INDEX_FILE, mode: 0o644, size: index.length, body: index, ...owner },
    { type: "file", path: OCI_LAYOUT_FILE, mode: 0o644, size: layout.length, body: layout, ...owner },
  ];
}

/** A small layout archive (a signature or attestation image) in memory. */
export function layoutArchive(blobs: ReadonlyMap<string, Buffer>, index: Buffer, mtimeSeconds: number): Promise<Buffer> {
  return tarBuffer(layoutEntries(blobs, index), mtimeSeconds);
}
