/** The check a bundle failed; stable slugs that callers, logs and the CLI print as they are. */
export type BundleCheck =
  | "malformed-archive" // not a gzip tar or a directory, a non-regular entry, a duplicate, an unsafe path, too many or too large
  | "malformed-manifest" // manifest.json missing, not JSON, or not the schema
  | "signature-missing" // no manifest.json.sig, or it holds no signature
  | "unknown-key" // no signature is by a trusted key id
  | "bad-signature" // a signature by a trusted key id does not verify
  | "file-added"
  | "file-removed"
  | "file-changed"
  | "rollback" // revision lower than the active one
  | "revision-reused" // the active revision, but a different manifest
  | "not-yet-valid" // now < notBefore
  | "expired" // only when the caller asks for freshness; a gateway degrades by the ladder instead
  | "malformed-revocations" // revocations.json fails its schema
  | "malformed-key" // a key is not an Ed25519 PEM key of the expected kind
  | "key-file" // a key file cannot be written (it exists) or read (missing, too open, not a file)
  | "store"; // the on-disk copy of the active bundle or its state cannot be read or written

/** A bundle (or a key) failed a check; `check` names it, the message says what to do. */
export class BundleError extends Error {
  readonly check: BundleCheck;
  constructor(check: BundleCheck, message: string) {
    super(`bundle: ${message}`);
    this.name = "BundleError";
    this.check = check;
  }
}
