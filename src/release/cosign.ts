import { sign, verify } from "node:crypto";
import type { SigningKey, TrustedKeys } from "../bundle/index.ts";
import { decodeBase64 } from "./dsse.ts";
import { ReleaseError } from "./errors.ts";
import type { CheckedLayout } from "./layout.ts";
import { descriptor, digestHex, encodeJson, imageIndex, imageManifest, MEDIA_TYPE, REF_NAME_ANNOTATION, type Descriptor, type Digest } from "./oci.ts";

// cosign's signature storage (github.com/sigstore/cosign, specs/SIGNATURE_SPEC.md): an OCI image whose layers are the
// signed payloads, each signature in its layer's annotation, pushed to the tag "sha256-<hex>.sig" of the signed image.

export const SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
/** cosign's attestation layers carry the statement's predicate type in this annotation. */
export const PREDICATE_TYPE_ANNOTATION = "predicateType";
export const SIMPLE_SIGNING_TYPE = "cosign container image signature";

/** The tag cosign looks up for an image's signatures ("sha256-<hex>.sig") or attestations (".att"). */
export function cosignTag(manifestDigest: Digest, suffix: "sig" | "att"): string {
  return `sha256-${digestHex(manifestDigest)}.${suffix}`;
}

/**
 * The "simple signing" payload (containers/image docs/containers-signature.5.md) as cosign writes it: the image by
 * manifest digest and the repository it is meant for, no optional claims. The digest is what verifiers compare.
 */
export function simpleSigningPayload(dockerReference: string, manifestDigest: Digest): Buffer {
  return encodeJson({
    critical: {
      identity: { "docker-reference": dockerReference },
      image: { "docker-manifest-digest": manifestDigest },
      type: SIMPLE_SIGNING_TYPE,
    },
    optional: null,
  });
}

/** cosign's config for a signature image: no platform, one diff_id per (uncompressed) payload layer. */
function signatureConfig(layers: readonly Descriptor[]): Buffer {
  return encodeJson({
    architecture: "",
    created: "0001-01-01T00:00:00Z",
    history: layers.map(() => ({ created: "0001-01-01T00:00:00Z" })),
    os: "",
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
    config: {},
  });
}

export interface ArtifactLayout {
  /** blob bytes by hex digest: the manifest, the config and the layers */
  blobs: Map<string, Buffer>;
  index: Buffer;
  manifestDigest: Digest;
}

function artifactLayout(layers: readonly { mediaType: string; bytes: Buffer; annotations: Record<string, string> }[], refName: string): ArtifactLayout {
  const blobs = new Map<string, Buffer>();
  const descriptors = layers.map((l) => {
    blobs.set(digestHex(descriptor(l.mediaType, l.bytes).digest)!, l.bytes);
    return descriptor(l.mediaType, l.bytes, l.annotations);
  });
  const config = signatureConfig(descriptors);
  const configDescriptor = descriptor(MEDIA_TYPE.config, config);
  blobs.set(digestHex(configDescriptor.digest)!, config);
  const manifest = imageManifest(configDescriptor, descriptors);
  const manifestDescriptor = descriptor(MEDIA_TYPE.manifest, manifest, { [REF_NAME_ANNOTATION]: refName });
  blobs.set(digestHex(manifestDescriptor.digest)!, manifest);
  return { blobs, index: imageIndex(manifestDescriptor), manifestDigest: manifestDescriptor.digest };
}

/**
 * The signature image for `manifestDigest`, signed with Ed25519 (pure, RFC 8032) over the payload bytes: what
 * `cosign verify --key`, policy-controller, Kyverno and Ratify check with the public key.
 */
export function signatureLayout(manifestDigest: Digest, dockerReference: string, key: SigningKey): ArtifactLayout {
  const payload = simpleSigningPayload(dockerReference, manifestDigest);
  const signature = sign(null, payload, key.key).toString("base64");
  return artifactLayout(
    [{ mediaType: MEDIA_TYPE.cosignSimpleSigning, bytes: payload, annotations: { [SIGNATURE_ANNOTATION]: signature } }],
    cosignTag(manifestDigest, "sig"),
  );
}

/** cosign's attestation image: one layer per DSSE envelope, the signatures inside the envelopes. */
export function attestationLayout(manifestDigest: Digest, envelopes: readonly { predicateType: string; envelope: Buffer }[]): ArtifactLayout {
  return artifactLayout(
    envelopes.map((e) => ({
      mediaType: MEDIA_TYPE.dsseEnvelope,
      bytes: e.envelope,
      annotations: { [SIGNATURE_ANNOTATION]: "", [PREDICATE_TYPE_ANNOTATION]: e.predicateType },
    })),
    cosignTag(manifestDigest, "att"),
  );
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Checks a signature image read back (its layout already checked): some simple-signing layer is signed by a trusted
 * key and names `manifestDigest`. Returns the docker-reference it was signed for.
 */
export function verifySignatureLayout(layout: CheckedLayout, layerBytes: (d: Descriptor) => Buffer, manifestDigest: Digest, keys: TrustedKeys): { dockerReference: string } {
  const what = "the cosign signature";
  const layers = layout.manifest.layers.filter((l) => l.mediaType === MEDIA_TYPE.cosignSimpleSigning);
  if (layers.length === 0) throw new ReleaseError("signature-missing", `${what} holds no ${MEDIA_TYPE.cosignSimpleSigning} layer`);
  let verified: { dockerReference: string } | null = null;
  let mismatch: string | null = null;
  for (const layer of layers) {
    const encoded = layer.annotations?.[SIGNATURE_ANNOTATION];
    const signature = encoded === undefined ? null : decodeBase64(encoded);
    if (signature === null || signature.length === 0) continue;
    const payload = layerBytes(layer);
    const signer = [...keys.values()].find((k) => verify(null, payload, k.key, signature));
    if (signer === undefined) continue;
    let value: unknown;
    try {
      value = JSON.parse(payload.toString("utf8"));
    } catch {
      throw new ReleaseError("malformed-layout", `${what}: a signed payload is not JSON`);
    }
    const critical = isRecord(value) ? value.critical : undefined;
    const image = isRecord(critical) ? critical.image : undefined;
    const identity = isRecord(critical) ? critical.identity : undefined;
    if (!isRecord(critical) || critical.type !== SIMPLE_SIGNING_TYPE || !isRecord(image)) {
      throw new ReleaseError("malformed-layout", `${what}: a signed payload is not a cosign simple-signing payload`);
    }
    // containers/image reads the key with this capitalisation too; cosign writes it in lower case.
    const digest = image["docker-manifest-digest"] ?? image["Docker-manifest-digest"];
    if (digest !== manifestDigest) {
      mismatch = String(digest);
      continue;
    }
    verified = { dockerReference: isRecord(identity) && typeof identity["docker-reference"] === "string" ? identity["docker-reference"] : "" };
  }
  if (verified !== null) return verified;
  if (mismatch !== null) throw new ReleaseError("digest-mismatch", `${what} is for ${mismatch.slice(0, 80)}, not the image ${manifestDigest}`);
  const annotated = layers.some((l) => (l.annotations?.[SIGNATURE_ANNOTATION] ?? "") !== "");
  throw annotated
    ? new ReleaseError("unknown-key", `${what}: no signature verifies with a trusted key (${keys.size} key${keys.size === 1 ? "" : "s"} trusted)`)
    : new ReleaseError("signature-missing", `${what} carries no ${SIGNATURE_ANNOTATION} annotation`);
}
