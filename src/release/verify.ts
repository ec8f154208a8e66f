import { isDeepStrictEqual } from "node:util";
import type { TrustedKeys } from "../bundle/index.ts";
import { PREDICATE_TYPE_ANNOTATION, verifySignatureLayout } from "./cosign.ts";
import { parseEnvelope, verifyEnvelope } from "./dsse.ts";
import { ReleaseError } from "./errors.ts";
import { checkLayout, type CheckedLayout, type LayoutContents } from "./layout.ts";
import { MEDIA_TYPE, type Descriptor, type Digest } from "./oci.ts";
import { SLSA_PROVENANCE_PREDICATE_TYPE } from "./provenance.ts";
import { describeImage, RELEASE_PREDICATE_TYPE, type ReleasePredicate } from "./release-predicate.ts";
import { CYCLONEDX_PREDICATE_TYPE, readSbom, requireSbomSubject } from "./sbom-check.ts";
import { parseStatement, requireSubject, type Statement } from "./statement.ts";

/** A release as read from disk; a file that is absent is undefined, and verification says which. */
export interface ReleaseInputs {
  image: LayoutContents;
  release?: Uint8Array;
  sbom?: Uint8Array;
  sbomAttestation?: Uint8Array;
  provenance?: Uint8Array;
  signature?: LayoutContents;
  attestations?: LayoutContents;
}

export interface VerifiedRelease {
  manifestDigest: Digest;
  image: ReleasePredicate & { tag: string | null; layers: number; compressedBytes: number };
  release: { signedBy: string[] };
  sbom: { signedBy: string[]; specVersion: string; components: number };
  provenance: { signedBy: string[]; buildType: string; builderId: string };
  cosign: { dockerReference: string; attestations: string[] };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function present<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new ReleaseError("signature-missing", `${what} is missing: the release is not signed (run edgeward release sign)`);
  return value;
}

/** An envelope about the image: signed by a trusted key, an in-toto statement of the type, its subject the image. */
function verifyAttestation(bytes: Uint8Array, what: string, predicateType: string, keys: TrustedKeys, digest: Digest): { statement: Statement<Record<string, unknown>>; signedBy: string[] } {
  const verified = verifyEnvelope(parseEnvelope(bytes, what), keys, what);
  const statement = parseStatement(verified.payload, what, predicateType);
  requireSubject(statement, digest, what);
  return { statement, signedBy: verified.signedBy };
}

function layerBytes(contents: LayoutContents): (d: Descriptor) => Buffer {
  return (d) => contents.blobs.get(d.digest.slice("sha256:".length))?.bytes ?? Buffer.alloc(0);
}

/** cosign's attestation image: every layer a DSSE envelope about the image, signed by a trusted key; returns their types. */
function verifyAttestationImage(contents: LayoutContents, keys: TrustedKeys, digest: Digest): string[] {
  const what = "the cosign attestation image";
  const layout = checkLayout(contents, { layerMediaTypes: [MEDIA_TYPE.dsseEnvelope], diffIds: false });
  const read = layerBytes(contents);
  const types: string[] = [];
  for (const [i, layer] of layout.manifest.layers.entries()) {
    const predicateType = layer.annotations?.[PREDICATE_TYPE_ANNOTATION] ?? "";
    verifyAttestation(read(layer), `${what} layer ${i}`, predicateType, keys, digest);
    types.push(predicateType);
  }
  for (const required of [CYCLONEDX_PREDICATE_TYPE, SLSA_PROVENANCE_PREDICATE_TYPE]) {
    if (!types.includes(required)) throw new ReleaseError("signature-missing", `${what} holds no ${required} attestation`);
  }
  return types;
}

/**
 * Verifies a release offline, as the list of checks a consumer needs, in order: the image archive is a well-formed
 * layout whose every blob matches its descriptor; the release statement, the SBOM attestation and the provenance are
 * signed by a trusted key and are about this exact manifest digest; the SBOM file is the one signed and describes
 * this image; cosign's signature and attestation images verify with the same keys and name the same digest.
 */
export function verifyRelease(inputs: ReleaseInputs, keys: TrustedKeys): VerifiedRelease {
  const image: CheckedLayout = checkLayout(inputs.image);
  const digest = image.manifestDigest;
  const described = describeImage(image);

  const release = verifyAttestation(present(inputs.release, "the release statement"), "the release statement", RELEASE_PREDICATE_TYPE, keys, digest);
  const claimed = release.statement.predicate;
  for (const field of ["name", "version", "os", "architecture"] as const) {
    if (claimed[field] !== described[field]) {
      throw new ReleaseError("digest-mismatch", `the release statement says ${field} ${JSON.stringify(claimed[field])}, the image says ${JSON.stringify(described[field])}`);
    }
  }

  const sbom = readSbom(present(inputs.sbom, "the SBOM"));
  const sbomAttestation = verifyAttestation(present(inputs.sbomAttestation, "the SBOM attestation"), "the SBOM attestation", CYCLONEDX_PREDICATE_TYPE, keys, digest);
  if (!isDeepStrictEqual(sbomAttestation.statement.predicate, sbom.document)) {
    throw new ReleaseError("sbom-mismatch", "the SBOM differs from the SBOM that was signed");
  }
  requireSbomSubject(sbom, digest);

  const provenance = verifyAttestation(present(inputs.provenance, "the provenance"), "the provenance", SLSA_PROVENANCE_PREDICATE_TYPE, keys, digest);
  const definition = provenance.statement.predicate.buildDefinition;
  const run = provenance.statement.predicate.runDetails;
  const builder = isRecord(run) ? run.builder : undefined;

  const signatureContents = present(inputs.signature, "the cosign signature image");
  const signatureLayout = checkLayout(signatureContents, { layerMediaTypes: [MEDIA_TYPE.cosignSimpleSigning], diffIds: false });
  const cosign = verifySignatureLayout(signatureLayout, layerBytes(signatureContents), digest, keys);
  const attestationTypes = verifyAttestationImage(present(inputs.attestations, "the cosign attestation image"), keys, digest);

  return {
    manifestDigest: digest,
    image: {
      ...described,
      tag: image.refName,
      layers: image.manifest.layers.length,
      compressedBytes: image.manifest.layers.reduce((sum, l) => sum + l.size, 0),
    },
    release: { signedBy: release.signedBy },
    sbom: { signedBy: sbomAttestation.signedBy, specVersion: sbom.specVersion, components: sbom.components },
    provenance: {
      signedBy: provenance.signedBy,
      buildType: isRecord(definition) && typeof definition.buildType === "string" ? definition.buildType : "",
      builderId: isRecord(builder) && typeof builder.id === "string" ? builder.id : "",
    },
    cosign: { dockerReference: cosign.dockerReference, attestations: attestationTypes },
  };
}
