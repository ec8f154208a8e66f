import { ReleaseError } from "./errors.ts";
import type { Digest } from "./oci.ts";

/** The predicate type of an attestation whose predicate is a CycloneDX SBOM (as cosign attest --type cyclonedx). */
export const CYCLONEDX_PREDICATE_TYPE = "https://cyclonedx.org/bom";

export interface SbomSummary {
  /** the parsed document, as signed or compared */
  document: Record<string, unknown>;
  specVersion: string;
  /** the image digest metadata.component's purl names */
  imageDigest: string;
  components: number;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// pkg:oci/<name>@sha256:<hex> (the colon may be percent-encoded) and optional qualifiers.
const OCI_PURL = /^pkg:oci\/[^@?#]+@sha256(?::|%3[Aa])([0-9a-f]{64})(?:[?#]|$)/;

/** Reads what verification needs from a CycloneDX JSON SBOM: which image it describes (by digest), how many components. */
export function readSbom(bytes: Uint8Array): SbomSummary {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new ReleaseError("malformed-sbom", "the SBOM is not JSON");
  }
  if (!isRecord(value) || value.bomFormat !== "CycloneDX" || typeof value.specVersion !== "string") {
    throw new ReleaseError("malformed-sbom", "the SBOM is not a CycloneDX document (bomFormat, specVersion)");
  }
  const component = isRecord(value.metadata) ? value.metadata.component : undefined;
  const purl = isRecord(component) && typeof component.purl === "string" ? component.purl : "";
  const match = OCI_PURL.exec(purl);
  if (match === null) throw new ReleaseError("malformed-sbom", "the SBOM's metadata.component does not name an image by digest (a pkg:oci purl)");
  return {
    document: value,
    specVersion: value.specVersion,
    imageDigest: `sha256:${match[1]}`,
    components: Array.isArray(value.components) ? value.components.length : 0,
  };
}

export function requireSbomSubject(summary: SbomSummary, manifestDigest: Digest): void {
  if (summary.imageDigest !== manifestDigest) throw new ReleaseError("digest-mismatch", `the SBOM describes ${summary.imageDigest}, not the image ${manifestDigest}`);
}
