import type { SigningKey } from "../bundle/index.ts";
import { attestationLayout, signatureLayout, type ArtifactLayout } from "./cosign.ts";
import { encodeEnvelope, parseEnvelope, signEnvelope, unsignedEnvelope, decodeBase64, type Envelope } from "./dsse.ts";
import type { CheckedLayout } from "./layout.ts";
import { SLSA_PROVENANCE_PREDICATE_TYPE } from "./provenance.ts";
import { describeImage, RELEASE_PREDICATE_TYPE } from "./release-predicate.ts";
import { CYCLONEDX_PREDICATE_TYPE, readSbom, requireSbomSubject } from "./sbom-check.ts";
import { encodeStatement, imageStatement, parseStatement, requireSubject } from "./statement.ts";

export interface SignOptions {
  /** the image, its layout checked (checkLayout): what is signed is its manifest digest */
  image: CheckedLayout;
  /** the CycloneDX SBOM the build wrote; it must describe this image */
  sbom: Uint8Array;
  /** the provenance envelope the build wrote; its statement must be about this image */
  provenance: Uint8Array;
  /** envelopes a previous `release sign` wrote: another key's signatures over the same statement are kept */
  previous?: { release?: Uint8Array; sbomAttestation?: Uint8Array };
  key: SigningKey;
  /** the repository the image is pushed to, as the cosign payload's docker-reference */
  dockerReference: string;
}

export interface SignedRelease {
  release: Buffer;
  sbomAttestation: Buffer;
  provenance: Buffer;
  /** cosign's signature image, for <repo>:sha256-<hex>.sig */
  signature: ArtifactLayout;
  /** cosign's attestation image (the SBOM and provenance envelopes), for <repo>:sha256-<hex>.att */
  attestations: ArtifactLayout;
}

/** Signs the statement, adding to an envelope over the very same statement (a co-signer), else starting afresh. */
function signStatement(payload: Buffer, previous: Uint8Array | undefined, what: string, key: SigningKey): Envelope {
  let envelope = unsignedEnvelope(payload);
  if (previous !== undefined) {
    try {
      const old = parseEnvelope(previous, what);
      if (decodeBase64(old.payload)!.equals(payload)) envelope = old;
    } catch {
      // an unreadable old envelope is replaced
    }
  }
  return signEnvelope(envelope, key);
}

/**
 * Signs a release with one Ed25519 key: a release statement, the SBOM as an attestation and the build's provenance,
 * each an in-toto statement whose subject is the image manifest digest in a DSSE envelope; and the cosign signature
 * and attestation images for a registry. Refuses an SBOM or provenance about another image.
 */
export function signRelease(o: SignOptions): SignedRelease {
  const digest = o.image.manifestDigest;
  const described = describeImage(o.image);

  const sbom = readSbom(o.sbom);
  requireSbomSubject(sbom, digest);

  const provenanceEnvelope = parseEnvelope(o.provenance, "the provenance");
  const provenanceStatement = parseStatement(decodeBase64(provenanceEnvelope.payload)!, "the provenance", SLSA_PROVENANCE_PREDICATE_TYPE);
  requireSubject(provenanceStatement, digest, "the provenance");

  const releasePayload = encodeStatement(imageStatement(described.name, digest, RELEASE_PREDICATE_TYPE, described));
  const sbomPayload = encodeStatement(imageStatement(described.name, digest, CYCLONEDX_PREDICATE_TYPE, sbom.document));

  const release = encodeEnvelope(signStatement(releasePayload, o.previous?.release, "the release statement", o.key));
  const sbomAttestation = encodeEnvelope(signStatement(sbomPayload, o.previous?.sbomAttestation, "the SBOM attestation", o.key));
  const provenance = encodeEnvelope(signEnvelope(provenanceEnvelope, o.key));

  return {
    release,
    sbomAttestation,
    provenance,
    signature: signatureLayout(digest, o.dockerReference, o.key),
    attestations: attestationLayout(digest, [
      { predicateType: CYCLONEDX_PREDICATE_TYPE, envelope: sbomAttestation },
      { predicateType: SLSA_PROVENANCE_PREDICATE_TYPE, envelope: provenance },
    ]),
  };
}
