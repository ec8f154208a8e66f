// The release module: the image's OCI layout, digests, DSSE/in-toto attestations, cosign's signature layout, signing
// and offline verification. ./sbom.ts (the CycloneDX builder) is left out on purpose: only the image build uses it, and
// its library is a development dependency, so nothing an installed `edgeward` loads may import it.
export { ReleaseError, type ReleaseCheck } from "./errors.ts";
export {
  descriptor,
  digestHex,
  encodeJson,
  imageConfig,
  imageIndex,
  imageManifest,
  INDEX_FILE,
  isDigest,
  MEDIA_TYPE,
  OCI_LAYOUT,
  OCI_LAYOUT_FILE,
  ociArchitecture,
  REF_NAME_ANNOTATION,
  sha256Digest,
  sha256Hex,
  type Descriptor,
  type Digest,
  type ImageConfigOptions,
  type LayerHistory,
  type Platform,
} from "./oci.ts";
export { entryPathProblem, orderEntries, tarBuffer, tarStream, type TarEntry } from "./tar-writer.ts";
export { layoutArchive, layoutEntries, type LayoutBlob } from "./layout-writer.ts";
export { writeLayer, type LayerDigests } from "./layer.ts";
export { checkLayout, IMAGE_EXPECTATIONS, type BlobInfo, type CheckedLayout, type LayoutContents, type LayoutExpectations } from "./layout.ts";
export { DEFAULT_READ_LIMITS, readLayoutArchive, readLayoutBytes, readLayoutStream, type ReadLimits } from "./archive-reader.ts";
export { decodeBase64, encodeEnvelope, IN_TOTO_PAYLOAD_TYPE, pae, parseEnvelope, signEnvelope, unsignedEnvelope, verifyEnvelope, type Envelope } from "./dsse.ts";
export { encodeStatement, imageStatement, parseStatement, requireSubject, STATEMENT_TYPE, type ResourceDescriptor, type Statement } from "./statement.ts";
export { IMAGE_BUILD_TYPE, provenancePredicate, SLSA_PROVENANCE_PREDICATE_TYPE, type ProvenanceOptions } from "./provenance.ts";
export { CYCLONEDX_PREDICATE_TYPE, readSbom, requireSbomSubject, type SbomSummary } from "./sbom-check.ts";
export { describeImage, RELEASE_PREDICATE_TYPE, TITLE_LABEL, VERSION_LABEL, type ReleasePredicate } from "./release-predicate.ts";
export { attestationLayout, cosignTag, signatureLayout, simpleSigningPayload, SIGNATURE_ANNOTATION, type ArtifactLayout } from "./cosign.ts";
export { signRelease, type SignedRelease, type SignOptions } from "./sign.ts";
export { verifyRelease, type ReleaseInputs, type VerifiedRelease } from "./verify.ts";
export { IMAGE_SUFFIX, releasePaths, type ReleasePaths } from "./files.ts";
