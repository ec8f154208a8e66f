import { createHash } from "node:crypto";

// OCI image-spec v1.1 media types, and the two that cosign adds for its signatures and attestations.
export const MEDIA_TYPE = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar",
  layerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  cosignSimpleSigning: "application/vnd.dev.cosign.simplesigning.v1+json",
  dsseEnvelope: "application/vnd.dsse.envelope.v1+json",
} as const;

export const LAYER_MEDIA_TYPES: readonly string[] = [MEDIA_TYPE.layer, MEDIA_TYPE.layerGzip];

/** The `oci-layout` file of an image layout (image-spec layout.md). */
export const OCI_LAYOUT = { imageLayoutVersion: "1.0.0" } as const;
export const OCI_LAYOUT_FILE = "oci-layout";
export const INDEX_FILE = "index.json";
export const BLOBS_DIR = "blobs/sha256";

/** The annotation an image layout's index gives a manifest to name it (a tag, e.g. "0.1.0"). */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

/** "sha256:" and 64 lowercase hex digits: the only digest algorithm this module writes or accepts. */
export type Digest = `sha256:${string}`;

const DIGEST = /^sha256:([0-9a-f]{64})$/;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function sha256Digest(bytes: Uint8Array): Digest {
  return `sha256:${sha256Hex(bytes)}`;
}

/** The hex part of a sha256 digest, or null when `text` is not one. */
export function digestHex(text: string): string | null {
  return DIGEST.exec(text)?.[1] ?? null;
}

export function isDigest(text: unknown): text is Digest {
  return typeof text === "string" && DIGEST.test(text);
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

/**
 * JSON as written into blobs: compact, keys in the order the builders below create them (every builder sorts what
 * it is given), so the same input gives the same bytes and the same digest.
 */
export function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), "utf8");
}

function sortedRecord(record: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function descriptor(mediaType: string, bytes: Uint8Array, annotations?: Readonly<Record<string, string>>): Descriptor {
  const d: Descriptor = { mediaType, digest: sha256Digest(bytes), size: bytes.length };
  if (annotations !== undefined && Object.keys(annotations).length > 0) d.annotations = sortedRecord(annotations);
  return d;
}

/** Maps Node's process.arch to the GOARCH names OCI platforms use. */
export function ociArchitecture(nodeArch: string): string {
  const names: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };
  const name = names[nodeArch];
  if (name === undefined) throw new RangeError(`no OCI architecture is known for Node's "${nodeArch}"`);
  return name;
}

export interface LayerHistory {
  /** sha256 of the uncompressed tar */
  diffId: Digest;
  /** what made the layer, shown by `podman history` */
  createdBy: string;
}

export interface ImageConfigOptions {
  /** RFC 3339; a reproducible build passes SOURCE_DATE_EPOCH's time */
  created: string;
  architecture: string;
  os: string;
  user: string;
  env: readonly string[];
  entrypoint: readonly string[];
  cmd?: readonly string[];
  workingDir: string;
  volumes?: readonly string[];
  exposedPorts?: readonly string[];
  labels?: Readonly<Record<string, string>>;
  stopSignal?: string;
  layers: readonly LayerHistory[];
}

/** The image config (image-spec config.md), its fields in a fixed order. */
export function imageConfig(o: ImageConfigOptions): Buffer {
  const config: Record<string, unknown> = { User: o.user };
  if (o.exposedPorts !== undefined && o.exposedPorts.length > 0) config.ExposedPorts = Object.fromEntries([...o.exposedPorts].sort().map((p) => [p, {}]));
  config.Env = [...o.env];
  config.Entrypoint = [...o.entrypoint];
  if (o.cmd !== undefined) config.Cmd = [...o.cmd];
  if (o.volumes !== undefined && o.volumes.length > 0) config.Volumes = Object.fromEntries([...o.volumes].sort().map((v) => [v, {}]));
  config.WorkingDir = o.workingDir;
  if (o.labels !== undefined && Object.keys(o.labels).length > 0) config.Labels = sortedRecord(o.labels);
  if (o.stopSignal !== undefined) config.StopSignal = o.stopSignal;
  return encodeJson({
    created: o.created,
    architecture: o.architecture,
    os: o.os,
    config,
    rootfs: { type: "layers", diff_ids: o.layers.map((l) => l.diffId) },
    history: o.layers.map((l) => ({ created: o.created, created_by: l.createdBy })),
  });
}

/** An image manifest (image-spec manifest.md). */
export function imageManifest(config: Descriptor, layers: readonly Descriptor[], annotations?: Readonly<Record<string, string>>): Buffer {
  const manifest: Record<string, unknown> = { schemaVersion: 2, mediaType: MEDIA_TYPE.manifest, config, layers };
  if (annotations !== undefined && Object.keys(annotations).length > 0) manifest.annotations = sortedRecord(annotations);
  return encodeJson(manifest);
}

/** The index.json of an image layout naming one manifest. */
export function imageIndex(manifest: Descriptor): Buffer {
  return encodeJson({ schemaVersion: 2, mediaType: MEDIA_TYPE.index, manifests: [manifest] });
}
