import { ReleaseError } from "./errors.ts";
import { INDEX_FILE, isDigest, LAYER_MEDIA_TYPES, MEDIA_TYPE, OCI_LAYOUT_FILE, REF_NAME_ANNOTATION, type Descriptor, type Digest } from "./oci.ts";

/** A blob of an archive as read: what its bytes hash to, not what anything claims. */
export interface BlobInfo {
  size: number;
  /** sha256 hex of the bytes */
  sha256: string;
  /** sha256 hex of the gunzipped bytes when the blob is gzip; null when it is not gzip; an Error when it is corrupt */
  uncompressedSha256: string | null | Error;
  /** the bytes, kept for blobs small enough to be a manifest, a config or a signature payload */
  bytes?: Buffer;
}

/** An image layout archive as read: its small top-level files and its blobs by hex digest. */
export interface LayoutContents {
  files: ReadonlyMap<string, Buffer>;
  blobs: ReadonlyMap<string, BlobInfo>;
}

export interface CheckedLayout {
  manifestDigest: Digest;
  manifestBytes: Buffer;
  manifest: { config: Descriptor; layers: Descriptor[]; annotations: Record<string, string> };
  /** the config's bytes (verified against the manifest) */
  configBytes: Buffer;
  /** the index's org.opencontainers.image.ref.name for the manifest, when it has one */
  refName: string | null;
}

export interface LayoutExpectations {
  /** media types a layer may have; an image's are the OCI tar layers */
  layerMediaTypes: readonly string[];
  /** check each layer's uncompressed digest against the config's rootfs.diff_ids (an image, not a signature) */
  diffIds: boolean;
}

export const IMAGE_EXPECTATIONS: LayoutExpectations = { layerMediaTypes: LAYER_MEDIA_TYPES, diffIds: true };

function layoutError(message: string): ReleaseError {
  return new ReleaseError("malformed-layout", message);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseJson(bytes: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw layoutError(`${what} is not JSON`);
  }
  if (!isRecord(value)) throw layoutError(`${what} is not a JSON object`);
  return value;
}

function stringRecord(value: unknown, what: string): Record<string, string> {
  if (value === undefined) return {};
  if (!isRecord(value) || !Object.values(value).every((v) => typeof v === "string")) throw layoutError(`${what} annotations are not strings`);
  return value as Record<string, string>;
}

function parseDescriptor(value: unknown, what: string): Descriptor {
  if (!isRecord(value)) throw layoutError(`${what} is not a descriptor`);
  if (typeof value.mediaType !== "string") throw layoutError(`${what} has no mediaType`);
  if (!isDigest(value.digest)) throw layoutError(`${what} digest is not a sha256 digest (sha256: and 64 lowercase hex digits)`);
  if (typeof value.size !== "number" || !Number.isSafeInteger(value.size) || value.size < 0) throw layoutError(`${what} size is not a non-negative integer`);
  const annotations = stringRecord(value.annotations, what);
  return { mediaType: value.mediaType, digest: value.digest, size: value.size, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) };
}

function requireMediaType(d: Descriptor, expected: readonly string[], what: string): void {
  if (!expected.includes(d.mediaType)) throw layoutError(`${what} has media type ${JSON.stringify(d.mediaType.slice(0, 100))}, expected ${expected.join(" or ")}`);
}

/** The blob a descriptor names, checked: present, its bytes hash to the digest, its size is the descriptor's. */
function blobFor(contents: LayoutContents, d: Descriptor, what: string): BlobInfo {
  const hex = d.digest.slice("sha256:".length);
  const blob = contents.blobs.get(hex);
  if (blob === undefined) throw new ReleaseError("blob-missing", `${what} ${d.digest} is not in the archive`);
  if (blob.sha256 !== hex) throw new ReleaseError("blob-digest", `${what} ${d.digest} was altered: its bytes hash to sha256:${blob.sha256}`);
  if (blob.size !== d.size) throw new ReleaseError("blob-size", `${what} ${d.digest} is ${blob.size} bytes, its descriptor says ${d.size}`);
  return blob;
}

function smallBlob(contents: LayoutContents, d: Descriptor, what: string): Buffer {
  const blob = blobFor(contents, d, what);
  if (blob.bytes === undefined) throw layoutError(`${what} ${d.digest} is too large to be a ${what}`);
  return blob.bytes;
}

/**
 * Checks an image layout (image-spec layout.md) read from an archive, top down: oci-layout, index.json naming exactly
 * one manifest, the manifest, its config, its layers — each blob present, of the right size, hashing to its digest
 * — then that every layer decompresses to the config's diff_id and that no blob is left unreferenced.
 */
export function checkLayout(contents: LayoutContents, expect: LayoutExpectations = IMAGE_EXPECTATIONS): CheckedLayout {
  const layoutBytes = contents.files.get(OCI_LAYOUT_FILE);
  if (layoutBytes === undefined) throw layoutError(`${OCI_LAYOUT_FILE} is missing: not an OCI image layout`);
  const layout = parseJson(layoutBytes, OCI_LAYOUT_FILE);
  if (layout.imageLayoutVersion !== "1.0.0") throw layoutError(`${OCI_LAYOUT_FILE}: imageLayoutVersion is not "1.0.0"`);

  const indexBytes = contents.files.get(INDEX_FILE);
  if (indexBytes === undefined) throw layoutError(`${INDEX_FILE} is missing`);
  const index = parseJson(indexBytes, INDEX_FILE);
  if (index.schemaVersion !== 2) throw layoutError(`${INDEX_FILE}: schemaVersion is not 2`);
  if (index.mediaType !== undefined && index.mediaType !== MEDIA_TYPE.index) throw layoutError(`${INDEX_FILE}: mediaType is not ${MEDIA_TYPE.index}`);
  if (!Array.isArray(index.manifests) || index.manifests.length !== 1) {
    throw layoutError(`${INDEX_FILE} must name exactly one manifest (it names ${Array.isArray(index.manifests) ? index.manifests.length : "none"})`);
  }
  const manifestDescriptor = parseDescriptor(index.manifests[0], `${INDEX_FILE} manifest`);
  requireMediaType(manifestDescriptor, [MEDIA_TYPE.manifest], `${INDEX_FILE} manifest`);

  const manifestBytes = smallBlob(contents, manifestDescriptor, "manifest");
  const manifest = parseJson(manifestBytes, "manifest");
  if (manifest.schemaVersion !== 2) throw layoutError("manifest: schemaVersion is not 2");
  if (manifest.mediaType !== MEDIA_TYPE.manifest) throw layoutError(`manifest: mediaType is not ${MEDIA_TYPE.manifest}`);
  const configDescriptor = parseDescriptor(manifest.config, "manifest config");
  requireMediaType(configDescriptor, [MEDIA_TYPE.config], "manifest config");
  if (!Array.isArray(manifest.layers)) throw layoutError("manifest: layers is not an array");
  const layers = manifest.layers.map((l: unknown, i: number) => parseDescriptor(l, `manifest layer ${i}`));
  layers.forEach((l, i) => requireMediaType(l, expect.layerMediaTypes, `manifest layer ${i}`));
  const annotations = stringRecord(manifest.annotations, "manifest");

  const configBytes = smallBlob(contents, configDescriptor, "config");
  const config = parseJson(configBytes, "config");
  const layerBlobs = layers.map((l, i) => blobFor(contents, l, `layer ${i}`));

  if (expect.diffIds) {
    if (typeof config.architecture !== "string" || config.architecture === "" || typeof config.os !== "string" || config.os === "") {
      throw layoutError("config: architecture and os must be non-empty strings");
    }
    const rootfs = config.rootfs;
    if (!isRecord(rootfs) || rootfs.type !== "layers" || !Array.isArray(rootfs.diff_ids)) throw layoutError("config: rootfs is not {type: layers, diff_ids: [...]}");
    const diffIds = rootfs.diff_ids;
    if (diffIds.length !== layers.length) throw new ReleaseError("diff-id", `config lists ${diffIds.length} diff_ids for ${layers.length} layers`);
    layerBlobs.forEach((blob, i) => {
      const expected = diffIds[i];
      if (!isDigest(expected)) throw layoutError(`config: diff_ids[${i}] is not a sha256 digest`);
      const gzip = layers[i]!.mediaType === MEDIA_TYPE.layerGzip;
      if (gzip && blob.uncompressedSha256 instanceof Error) throw new ReleaseError("diff-id", `layer ${i} is not valid gzip (${blob.uncompressedSha256.message})`);
      if (gzip && blob.uncompressedSha256 === null) throw new ReleaseError("diff-id", `layer ${i} is not gzip-compressed, as its media type says`);
      const actual = gzip ? blob.uncompressedSha256 : blob.sha256;
      if (`sha256:${actual}` !== expected) throw new ReleaseError("diff-id", `layer ${i} decompresses to sha256:${String(actual)}, the config lists ${expected}`);
    });
  }

  const referenced = new Set([manifestDescriptor, configDescriptor, ...layers].map((d) => d.digest.slice("sha256:".length)));
  for (const hex of contents.blobs.keys()) {
    if (!referenced.has(hex)) throw new ReleaseError("blob-unreferenced", `blob sha256:${hex} is in the archive but no descriptor names it`);
  }

  const refName = manifestDescriptor.annotations?.[REF_NAME_ANNOTATION] ?? null;
  return {
    manifestDigest: manifestDescriptor.digest,
    manifestBytes,
    manifest: { config: configDescriptor, layers, annotations },
    configBytes,
    refName,
  };
}
