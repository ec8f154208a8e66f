/** The check a release failed; stable slugs that the CLI prints as they are (`check: message`). */
export type ReleaseCheck =
  | "malformed-archive" // not a tar, truncated, a link or special file, an unsafe or unexpected path, a duplicate, too many or too large entries
  | "malformed-layout" // oci-layout, index.json, a manifest or a config is not JSON, not the schema, or has the wrong media type
  | "blob-missing" // a descriptor names a blob the archive does not hold
  | "blob-unreferenced" // the archive holds a blob no descriptor names
  | "blob-digest" // a blob's bytes do not hash to the digest that names it (a tampered layer, manifest or config)
  | "blob-size" // a blob's size differs from its descriptor's
  | "diff-id" // a layer does not decompress to the uncompressed digest the config lists for it
  | "malformed-envelope" // a DSSE envelope is not JSON, not the schema, or carries an unexpected payload type
  | "malformed-statement" // an in-toto statement is not JSON, not the schema, or of an unexpected predicate type
  | "signature-missing" // an attestation or the cosign signature is absent, or holds no signature
  | "unknown-key" // no signature is by a trusted key id
  | "bad-signature" // a signature by a trusted key id does not verify
  | "digest-mismatch" // a statement, the SBOM or the cosign payload names another image than the one verified
  | "sbom-mismatch" // the SBOM file differs from the SBOM that was signed
  | "malformed-sbom"; // the SBOM is not a CycloneDX JSON document

/** A release artifact failed a check; `check` names it, the message says what is wrong. */
export class ReleaseError extends Error {
  readonly check: ReleaseCheck;
  constructor(check: ReleaseCheck, message: string) {
    super(`release: ${message}`);
    this.name = "ReleaseError";
    this.check = check;
  }
}
