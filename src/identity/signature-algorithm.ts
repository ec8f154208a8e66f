import type { X509Certificate } from "node:crypto";
import { DerError, readChildren, readElement, readObjectIdentifier, TAG_INTEGER, TAG_OBJECT_IDENTIFIER, TAG_SEQUENCE, type DerElement } from "./der.ts";
import { X509SvidError } from "./errors.ts";

/** accepted: Go's crypto/x509 verifies it; insecure: Go refuses it as broken (MD5, SHA-1); unsupported: Go does not implement it. */
type Verdict = "accepted" | "insecure" | "unsupported";

interface Algorithm {
  readonly name: string;
  readonly verdict: Verdict;
}

const RSASSA_PSS = "1.2.840.113549.1.1.10";
const MGF1 = "1.2.840.113549.1.1.8";
const SHA1 = "1.3.14.3.2.26";

/** The signature algorithms Go's crypto/x509 knows, by OID (PSS is decided by its parameters). */
const ALGORITHMS = new Map<string, Algorithm>([
  ["1.2.840.113549.1.1.2", { name: "MD2-RSA", verdict: "insecure" }],
  ["1.2.840.113549.1.1.4", { name: "MD5-RSA", verdict: "insecure" }],
  ["1.2.840.113549.1.1.5", { name: "SHA1-RSA", verdict: "insecure" }],
  ["1.3.14.3.2.29", { name: "SHA1-RSA", verdict: "insecure" }],
  ["1.2.840.10040.4.3", { name: "DSA-SHA1", verdict: "insecure" }],
  ["1.2.840.10045.4.1", { name: "ECDSA-SHA1", verdict: "insecure" }],
  ["1.2.840.113549.1.1.11", { name: "SHA256-RSA", verdict: "accepted" }],
  ["1.2.840.113549.1.1.12", { name: "SHA384-RSA", verdict: "accepted" }],
  ["1.2.840.113549.1.1.13", { name: "SHA512-RSA", verdict: "accepted" }],
  ["1.2.840.10045.4.3.2", { name: "ECDSA-SHA256", verdict: "accepted" }],
  ["1.2.840.10045.4.3.3", { name: "ECDSA-SHA384", verdict: "accepted" }],
  ["1.2.840.10045.4.3.4", { name: "ECDSA-SHA512", verdict: "accepted" }],
  ["1.3.101.112", { name: "Ed25519", verdict: "accepted" }],
]);

/** Digests an RSASSA-PSS signature may name, with their output length (the salt length Go insists on). */
const PSS_HASHES = new Map<string, { name: string; bytes: number; insecure: boolean }>([
  ["1.2.840.113549.2.5", { name: "MD5", bytes: 16, insecure: true }],
  [SHA1, { name: "SHA1", bytes: 20, insecure: true }],
  ["2.16.840.1.101.3.4.2.1", { name: "SHA256", bytes: 32, insecure: false }],
  ["2.16.840.1.101.3.4.2.2", { name: "SHA384", bytes: 48, insecure: false }],
  ["2.16.840.1.101.3.4.2.3", { name: "SHA512", bytes: 64, insecure: false }],
]);

function algorithmIdentifier(element: DerElement): { oid: string; parameters: DerElement | undefined } {
  if (element.tag !== TAG_SEQUENCE) throw new DerError("malformed AlgorithmIdentifier");
  const [id, parameters, extra] = readChildren(element.content);
  if (id === undefined || id.tag !== TAG_OBJECT_IDENTIFIER || extra !== undefined) throw new DerError("malformed AlgorithmIdentifier");
  return { oid: readObjectIdentifier(id.content), parameters };
}

function smallInteger(element: DerElement): number {
  const bytes = element.content;
  if (element.tag !== TAG_INTEGER || bytes.length === 0 || bytes.length > 2 || (bytes[0]! & 0x80) !== 0) {
    throw new DerError("malformed RSASSA-PSS parameters");
  }
  return bytes.reduce((n, b) => n * 256 + b, 0);
}

/**
 * RFC 4055 lets PSS name any digest, mask and salt, and its defaults are SHA-1. Like Go, only a SHA-2 digest with
 * MGF1 over the same digest, a salt as long as the digest and the standard trailer is accepted.
 */
function pssAlgorithm(parameters: DerElement | undefined): Algorithm {
  let hash = SHA1;
  let mask = { oid: MGF1, hash: SHA1 as string | undefined };
  let salt = 20;
  let trailer = 1;
  if (parameters !== undefined) {
    if (parameters.tag !== TAG_SEQUENCE) throw new DerError("malformed RSASSA-PSS parameters");
    for (const field of readChildren(parameters.content)) {
      const value = readElement(field.content);
      if (field.tag === 0xa0) hash = algorithmIdentifier(value).oid;
      else if (field.tag === 0xa1) {
        const mgf = algorithmIdentifier(value);
        mask = { oid: mgf.oid, hash: mgf.parameters === undefined ? undefined : algorithmIdentifier(mgf.parameters).oid };
      } else if (field.tag === 0xa2) salt = smallInteger(value);
      else if (field.tag === 0xa3) trailer = smallInteger(value);
      else throw new DerError("malformed RSASSA-PSS parameters");
    }
  }
  const digest = PSS_HASHES.get(hash);
  if (digest === undefined) return { name: `RSASSA-PSS with digest ${hash}`, verdict: "unsupported" };
  const name = `${digest.name}-RSAPSS`;
  if (digest.insecure) return { name, verdict: "insecure" };
  if (mask.oid !== MGF1 || mask.hash !== hash || salt !== digest.bytes || trailer !== 1) {
    return { name: `${name} with non-standard parameters`, verdict: "unsupported" };
  }
  return { name, verdict: "accepted" };
}

/** RFC 5280 §4.1.1.2: the signed TBSCertificate names the algorithm too, and the two must agree. */
function signatureAlgorithm(der: Uint8Array): Algorithm {
  const certificate = readChildren(readElement(der, TAG_SEQUENCE).content);
  const [tbs, outer] = certificate;
  if (certificate.length !== 3 || tbs === undefined || tbs.tag !== TAG_SEQUENCE || outer === undefined) {
    throw new DerError("not a Certificate");
  }
  const fields = readChildren(tbs.content);
  // [0] version is optional; the serial number comes next, then the signature AlgorithmIdentifier.
  const inner = fields[fields[0]?.tag === 0xa0 ? 2 : 1];
  if (inner === undefined || inner.tag !== outer.tag || Buffer.compare(inner.content, outer.content) !== 0) {
    throw new DerError("inner and outer signature algorithm identifiers don't match");
  }
  const { oid, parameters } = algorithmIdentifier(outer);
  if (oid === RSASSA_PSS) return pssAlgorithm(parameters);
  return ALGORITHMS.get(oid) ?? { name: oid, verdict: "unsupported" };
}

/**
 * Refuses a certificate whose issuer signed it with an algorithm Go's crypto/x509 would not verify: MD5 or SHA-1
 * (collisions make such a signature forgeable), or one it does not implement.
 */
export function checkSignatureAlgorithm(cert: X509Certificate, role: string): void {
  let algorithm: Algorithm;
  try {
    algorithm = signatureAlgorithm(new Uint8Array(cert.raw));
  } catch (error) {
    if (!(error instanceof DerError)) throw error;
    throw new X509SvidError("malformed-certificate", `${role} certificate is malformed (${error.message})`);
  }
  if (algorithm.verdict === "insecure") {
    throw new X509SvidError("insecure-signature-algorithm", `${role} certificate is signed with ${algorithm.name}, an insecure algorithm`);
  }
  if (algorithm.verdict === "unsupported") {
    throw new X509SvidError(
      "unsupported-signature-algorithm",
      `${role} certificate is signed with ${algorithm.name}, which is not supported (RSA, RSA-PSS or ECDSA with SHA-256/384/512, or Ed25519)`,
    );
  }
}
