/** The files of a release, all beside the image archive and named after it. */
export interface ReleasePaths {
  /** the image: an OCI image layout archive (…oci.tar) */
  image: string;
  /** the CycloneDX SBOM (…cdx.json), written by the build */
  sbom: string;
  /** the SLSA provenance in a DSSE envelope (…provenance.dsse.json), written by the build, signed by `release sign` */
  provenance: string;
  /** the release statement: this image digest is this version (…release.dsse.json) */
  release: string;
  /** the SBOM as a signed in-toto attestation about the image (…cdx.dsse.json) */
  sbomAttestation: string;
  /** cosign's signature image, to push as <repo>:sha256-<hex>.sig (…sig.oci.tar) */
  signature: string;
  /** cosign's attestation image (SBOM and provenance), to push as <repo>:sha256-<hex>.att (…att.oci.tar) */
  attestations: string;
}

export const IMAGE_SUFFIX = ".oci.tar";

/** The release files that go with an image archive; null when the path does not end in .oci.tar. */
export function releasePaths(imagePath: string): ReleasePaths | null {
  if (!imagePath.endsWith(IMAGE_SUFFIX) || imagePath.endsWith(".sig.oci.tar") || imagePath.endsWith(".att.oci.tar")) return null;
  const base = imagePath.slice(0, -IMAGE_SUFFIX.length);
  return {
    image: imagePath,
    sbom: `${base}.cdx.json`,
    provenance: `${base}.provenance.dsse.json`,
    release: `${base}.release.dsse.json`,
    sbomAttestation: `${base}.cdx.dsse.json`,
    signature: `${base}.sig.oci.tar`,
    attestations: `${base}.att.oci.tar`,
  };
}
