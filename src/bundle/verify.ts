import { flattenedVerify } from "jose";
import { BundleError } from "./errors.ts";
import type { TrustedKeys } from "./keys.ts";
import {
  isPolicyFile,
  MANIFEST_FILE,
  parseManifest,
  parseTimestamp,
  REVOCATIONS_FILE,
  sha256Hex,
  SIGNATURE_FILE,
  type BundleFiles,
  type BundleManifest,
} from "./manifest.ts";
import { RevocationList } from "./revocations.ts";

export interface VerifiedBundle {
  manifest: BundleManifest;
  /** sha256 hex of the manifest.json bytes: what the signatures cover, so it names the whole bundle */
  digest: string;
  notBeforeMs: number;
  notAfterMs: number;
  createdAtMs: number;
  /** the trusted key ids whose signatures verified, sorted */
  signedBy: readonly string[];
  /** the .yaml/.yml files in path order, as text (not parsed here: the caller compiles them) */
  policyFiles: readonly { path: string; text: string }[];
  revocations: RevocationList;
  /** every file, signatures included, for persisting */
  files: BundleFiles;
}

export interface VerifyOptions {
  keys: TrustedKeys;
  nowMs: number;
  /**
   * The bundle in force. A lower revision is a rollback; the same revision must be the same manifest. A null digest
   * (the active manifest is not known) makes the same revision count as reused.
   */
  active?: { revision: number; digest: string | null } | null;
  /** Refuse a bundle past its notAfter (the CLI's --require-fresh); a gateway degrades by the ladder instead. */
  requireFresh?: boolean;
}

/** One entry of manifest.json.sig, as it claims to be: nothing here has been verified. */
export interface SignatureEntry {
  kid: string | null;
  alg: string | null;
  protected: string;
  signature: string;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

function missing(message: string): BundleError {
  return new BundleError("signature-missing", message);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The signatures of manifest.json.sig, a JWS General JSON Serialization with a detached payload (RFC 7515 §7.2.1,
 * Appendix F), with what each protected header claims. A file that holds no well-formed signature is refused.
 */
export function readSignatures(bytes: Uint8Array | undefined): SignatureEntry[] {
  if (bytes === undefined) throw missing(`${SIGNATURE_FILE} is missing: the bundle is not signed`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw missing(`${SIGNATURE_FILE} is not JSON`);
  }
  if (!isRecord(value) || !Array.isArray(value.signatures)) throw missing(`${SIGNATURE_FILE} is not a JWS JSON serialization (no "signatures" array)`);
  if (value.signatures.length === 0) throw missing(`${SIGNATURE_FILE} holds no signature`);
  return value.signatures.map((entry: unknown, i: number) => {
    if (!isRecord(entry) || typeof entry.protected !== "string" || typeof entry.signature !== "string" || !BASE64URL.test(entry.protected)) {
      throw missing(`${SIGNATURE_FILE}: signature ${i} is not a JWS signature object`);
    }
    let header: unknown;
    try {
      header = JSON.parse(Buffer.from(entry.protected, "base64url").toString("utf8"));
    } catch {
      throw missing(`${SIGNATURE_FILE}: signature ${i} has an unreadable protected header`);
    }
    if (!isRecord(header)) throw missing(`${SIGNATURE_FILE}: signature ${i} has an unreadable protected header`);
    return {
      kid: typeof header.kid === "string" ? header.kid : null,
      alg: typeof header.alg === "string" ? header.alg : null,
      protected: entry.protected,
      signature: entry.signature,
    };
  });
}

/** Every signature by a trusted key must verify, and there must be one: a rotation adds keys, it never excuses a bad one. */
async function verifySignatures(manifestBytes: Uint8Array, sigBytes: Uint8Array | undefined, keys: TrustedKeys): Promise<string[]> {
  const signatures = readSignatures(sigBytes);
  const trusted = signatures.filter((s) => s.kid !== null && keys.has(s.kid));
  if (trusted.length === 0) {
    const kids = signatures.map((s) => s.kid ?? "(no kid)").join(", ");
    throw new BundleError("unknown-key", `no signature is by a trusted key (signed by ${kids}; ${keys.size} key${keys.size === 1 ? "" : "s"} trusted)`);
  }
  // The detached payload is put back: the signature covers exactly the manifest.json bytes.
  const payload = Buffer.from(manifestBytes).toString("base64url");
  for (const s of trusted) {
    try {
      await flattenedVerify({ protected: s.protected, signature: s.signature, payload }, keys.get(s.kid!)!.key, { algorithms: ["EdDSA"] });
    } catch (error) {
      const reason = (error as { code?: string }).code ?? "error";
      throw new BundleError("bad-signature", `the signature by trusted key ${s.kid} does not verify (${reason}): ${MANIFEST_FILE} was altered, or the signature was not made by that key`);
    }
  }
  return trusted.map((s) => s.kid!).sort();
}

function checkFiles(files: BundleFiles, manifest: BundleManifest): void {
  for (const path of files.keys()) {
    if (path !== MANIFEST_FILE && path !== SIGNATURE_FILE && !Object.hasOwn(manifest.files, path)) {
      throw new BundleError("file-added", `${path} is in the bundle but not in the manifest`);
    }
  }
  for (const [path, digest] of Object.entries(manifest.files)) {
    const bytes = files.get(path);
    if (bytes === undefined) throw new BundleError("file-removed", `${path} is in the manifest but not in the bundle`);
    if (sha256Hex(bytes) !== digest) throw new BundleError("file-changed", `${path} does not match its digest in the manifest`);
  }
}

/**
 * Verifies a bundle, failing closed, in this order: manifest present, signed, by a trusted key, every trusted
 * signature valid (only then is the manifest parsed), manifest well-formed, files exactly as listed, not a rollback
 * nor a reused revision, already valid, fresh if asked, revocations well-formed.
 */
export async function verifyBundle(files: BundleFiles, opts: VerifyOptions): Promise<VerifiedBundle> {
  const manifestBytes = files.get(MANIFEST_FILE);
  if (manifestBytes === undefined) throw new BundleError("malformed-manifest", `${MANIFEST_FILE} is missing`);
  const signedBy = await verifySignatures(manifestBytes, files.get(SIGNATURE_FILE), opts.keys);
  const manifest = parseManifest(manifestBytes);
  const digest = sha256Hex(manifestBytes);
  checkFiles(files, manifest);

  const active = opts.active ?? null;
  if (active !== null && manifest.revision < active.revision) {
    throw new BundleError("rollback", `revision ${manifest.revision} is older than the active revision ${active.revision}`);
  }
  if (active !== null && manifest.revision === active.revision && digest !== active.digest) {
    throw new BundleError("revision-reused", `revision ${manifest.revision} is the active revision but a different manifest; publish a higher revision`);
  }

  const notBeforeMs = parseTimestamp(manifest.notBefore)!;
  const notAfterMs = parseTimestamp(manifest.notAfter)!;
  if (opts.nowMs < notBeforeMs) throw new BundleError("not-yet-valid", `the bundle is not valid before ${manifest.notBefore}`);
  // Half-open window, as the ladder reads it: at notAfter the bundle is no longer fresh.
  if (opts.requireFresh === true && opts.nowMs >= notAfterMs) throw new BundleError("expired", `the bundle expired at ${manifest.notAfter}`);

  const revocationBytes = files.get(REVOCATIONS_FILE);
  const revocations = revocationBytes === undefined ? RevocationList.EMPTY : RevocationList.parse(Buffer.from(revocationBytes).toString("utf8"));

  const decoder = new TextDecoder();
  const policyFiles = Object.keys(manifest.files)
    .filter(isPolicyFile)
    .sort()
    .map((path) => ({ path, text: decoder.decode(files.get(path)!) }));
  return {
    manifest,
    digest,
    notBeforeMs,
    notAfterMs,
    createdAtMs: parseTimestamp(manifest.createdAt)!,
    signedBy,
    policyFiles,
    revocations,
    files,
  };
}
