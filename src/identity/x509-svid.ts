import type { X509Certificate } from "node:crypto";
import { readCertificateExtensions, type CertificateExtensions } from "./certificate-extensions.ts";
import { SpiffeIdError, X509SvidError } from "./errors.ts";
import { nameConstraintViolation } from "./name-constraints.ts";
import { checkPublicKey } from "./public-key.ts";
import { checkSignatureAlgorithm } from "./signature-algorithm.ts";
import { parseSpiffeId, type SpiffeId } from "./spiffe-id.ts";
import type { TrustBundleSet } from "./trust-bundle.ts";

export { X509SvidError };

export interface VerifiedSvid {
  id: SpiffeId;
  leaf: X509Certificate;
  /** Upper-case hex, as node:crypto reports it. */
  serialNumber: string;
  notAfter: Date;
}

/** Longer chains than this are refused outright: no SPIFFE deployment nests CAs this deep. */
export const MAX_CHAIN_LENGTH = 8;
/** Bounds path building against hostile, mutually cross-signed intermediates (Go's crypto/x509 caps it at 100 too). */
const MAX_SIGNATURE_CHECKS = 100;

function leafSpiffeId(extensions: CertificateExtensions): SpiffeId {
  const [uri, ...others] = extensions.uris;
  if (uri === undefined) throw new X509SvidError("uri-san-count", "leaf certificate contains no URI SAN");
  if (others.length > 0) throw new X509SvidError("uri-san-count", "leaf certificate contains more than one URI SAN");
  if (!/^spiffe:\/\//i.test(uri)) throw new X509SvidError("non-spiffe-uri", "leaf certificate URI SAN is not a spiffe:// URI");
  try {
    return parseSpiffeId(uri);
  } catch (error) {
    if (error instanceof SpiffeIdError) {
      throw new X509SvidError("invalid-spiffe-id", `could not get leaf SPIFFE ID: ${error.message}`);
    }
    throw error;
  }
}

function checkValidity(cert: X509Certificate, role: string, now: Date): void {
  if (now.getTime() < cert.validFromDate.getTime()) {
    throw new X509SvidError("not-yet-valid", `${role} certificate is not valid before ${cert.validFromDate.toISOString()}`);
  }
  if (now.getTime() > cert.validToDate.getTime()) {
    throw new X509SvidError("expired", `${role} certificate expired at ${cert.validToDate.toISOString()}`);
  }
}

function checkNoUnhandledCritical(extensions: CertificateExtensions, role: string): void {
  const [oid] = extensions.unhandledCritical;
  if (oid !== undefined) {
    throw new X509SvidError("unhandled-critical-extension", `${role} certificate has an unhandled critical extension ${oid}`);
  }
}

/** RFC 5280 §4.2.1.3/§4.2.1.9: an issuer must assert cA and, when keyUsage is present, keyCertSign. */
function mayIssue(extensions: CertificateExtensions): boolean {
  return extensions.basicConstraints?.ca === true && (extensions.keyUsage === undefined || extensions.keyUsage.keyCertSign);
}

/** Is `issuer` the signer of `subject`? Names must link and the signature must verify. */
function issued(subject: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
  } catch {
    // A hostile key or signature algorithm must read as "not issued", not crash the verifier.
    return false;
  }
}

interface Candidate {
  readonly cert: X509Certificate;
  readonly extensions: CertificateExtensions;
  readonly isRoot: boolean;
}

/**
 * Verifies an X.509-SVID chain as go-spiffe's x509svid.Verify does: the leaf's identity and
 * constraints first, then a path through the presented intermediates to a root of the leaf's
 * own trust domain, every certificate on it valid at `now`. Where Go's crypto/x509 (which go-spiffe
 * builds on) would refuse a path, so does this: insecure signature algorithms, weak keys, name constraints.
 */
export function verifyX509Svid(chain: readonly X509Certificate[], bundles: TrustBundleSet, now: Date): VerifiedSvid {
  const leaf = chain[0];
  if (leaf === undefined) throw new X509SvidError("no-certificate", "empty certificates chain");
  if (chain.length > MAX_CHAIN_LENGTH) {
    throw new X509SvidError("chain-too-long", `certificate chain has more than ${MAX_CHAIN_LENGTH} certificates`);
  }
  const leafExtensions = readCertificateExtensions(leaf, "leaf");
  const id = leafSpiffeId(leafExtensions);
  // X509-SVID §5.2: the validator MUST ensure a non-root path; the bare trust domain names a signing authority.
  if (id.path === "") {
    throw new X509SvidError("leaf-id-no-path", `leaf certificate SPIFFE ID "${id.uri}" has no path; an X509-SVID must name a workload`);
  }

  if (leafExtensions.basicConstraints?.ca === true) {
    throw new X509SvidError("leaf-ca", "leaf certificate with CA flag set to true");
  }
  const usage = leafExtensions.keyUsage;
  if (usage?.keyCertSign) throw new X509SvidError("leaf-key-cert-sign", "leaf certificate with KeyCertSign key usage");
  if (usage?.cRLSign) throw new X509SvidError("leaf-crl-sign", "leaf certificate with KeyCrlSign key usage");
  if (!usage?.digitalSignature) {
    throw new X509SvidError("leaf-digital-signature", "leaf certificate must have 'digitalSignature' set as key usage");
  }
  checkNoUnhandledCritical(leafExtensions, "leaf");
  checkPublicKey(leaf, "leaf");
  checkSignatureAlgorithm(leaf, "leaf");

  const roots = bundles.get(id.trustDomain);
  if (roots === undefined || roots.length === 0) {
    throw new X509SvidError("unknown-trust-domain", `no X.509 bundle found for trust domain "${id.trustDomain}"`);
  }
  checkValidity(leaf, "leaf", now);

  const candidates: Candidate[] = [];
  for (const [index, cert] of chain.slice(1).entries()) {
    candidates.push({ cert, extensions: readCertificateExtensions(cert, `intermediate #${index + 1}`), isRoot: false });
  }
  for (const cert of roots) {
    try {
      candidates.push({ cert, extensions: readCertificateExtensions(cert, "root"), isRoot: true });
    } catch {
      // An unparsable root in the bundle can anchor nothing; the others may still.
    }
  }
  // Roots first so a presented copy of a root never lengthens the path.
  candidates.sort((a, b) => Number(b.isRoot) - Number(a.isRoot));

  // Like Go's hintErr: when no path is found, the first specific reason a certificate that did sign was refused
  // names the failure better than "untrusted chain".
  let hint: X509SvidError | undefined;
  const refuse = (check: () => void): boolean => {
    try {
      check();
      return false;
    } catch (error) {
      if (!(error instanceof X509SvidError)) throw error;
      hint ??= error;
      return true;
    }
  };
  let signatureChecks = 0;
  const onPath = new Set<X509Certificate>([leaf]);
  // The subjectAltNames of every certificate under the candidate: name constraints apply to all of them.
  const namesBelow: CertificateExtensions[] = [leafExtensions];

  // Depth-first search for a path; `below` counts the CA certificates already under `subject`
  // (for pathLenConstraint).
  const reachesRoot = (subject: X509Certificate, below: number): boolean => {
    for (const candidate of candidates) {
      if (onPath.has(candidate.cert) || !mayIssue(candidate.extensions)) continue;
      if (++signatureChecks > MAX_SIGNATURE_CHECKS) return false;
      if (!issued(subject, candidate.cert)) continue;
      const pathLength = candidate.extensions.basicConstraints?.pathLength;
      if (pathLength !== undefined && below > pathLength) continue;
      if (candidate.extensions.unhandledCritical.length > 0) continue;
      const role = candidate.isRoot ? "root" : "intermediate";
      if (refuse(() => checkValidity(candidate.cert, role, now))) continue;
      if (refuse(() => checkPublicKey(candidate.cert, role))) continue;
      const constraints = candidate.extensions.nameConstraints;
      const violation = constraints === undefined ? undefined : nameConstraintViolation(constraints, namesBelow);
      if (violation !== undefined) {
        hint ??= new X509SvidError("name-constraints", `${role} certificate is not authorized to sign for this name: ${violation}`);
        continue;
      }
      if (candidate.isRoot) return true;
      // A root's own signature is never relied on; an intermediate's is, once it is the next subject.
      if (refuse(() => checkSignatureAlgorithm(candidate.cert, role))) continue;
      onPath.add(candidate.cert);
      namesBelow.push(candidate.extensions);
      if (onPath.size <= MAX_CHAIN_LENGTH && reachesRoot(candidate.cert, below + 1)) return true;
      namesBelow.pop();
      onPath.delete(candidate.cert);
    }
    return false;
  };

  if (!reachesRoot(leaf, 0)) {
    throw hint ??
      new X509SvidError(
        "untrusted-chain",
        `could not verify leaf certificate: no chain to a trusted root of "${id.trustDomain}"`,
      );
  }
  return { id, leaf, serialNumber: leaf.serialNumber, notAfter: leaf.validToDate };
}
