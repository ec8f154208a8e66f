import type { KeyObject, X509Certificate } from "node:crypto";
import { X509SvidError } from "./errors.ts";

/** NIST SP 800-131A: RSA under 2048 bits no longer gives 112-bit security. */
export const MIN_RSA_KEY_BITS = 2048;

/** The curves Go's crypto/x509 parses, by the names OpenSSL gives them. */
const CURVES = new Map([
  ["secp224r1", "P-224"],
  ["prime256v1", "P-256"],
  ["secp384r1", "P-384"],
  ["secp521r1", "P-521"],
]);

/**
 * Refuses a certificate whose public key is too weak to trust (RSA under 2048 bits) or of a kind Go's crypto/x509
 * does not accept (EC off the NIST curves, DSA, RSA-PSS-only keys, Ed448, ...).
 */
export function checkPublicKey(cert: X509Certificate, role: string): void {
  let key: KeyObject;
  try {
    key = cert.publicKey;
  } catch {
    throw new X509SvidError("unsupported-key", `${role} certificate public key could not be read`);
  }
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case "rsa": {
      const bits = details.modulusLength ?? 0;
      if (bits < MIN_RSA_KEY_BITS) {
        throw new X509SvidError("weak-key", `${role} certificate has a ${bits}-bit RSA key; at least ${MIN_RSA_KEY_BITS} bits are required`);
      }
      return;
    }
    case "ec":
      if (!CURVES.has(details.namedCurve ?? "")) {
        throw new X509SvidError(
          "unsupported-key",
          `${role} certificate has an EC key on curve ${details.namedCurve ?? "(unnamed)"}, which is not supported (P-224, P-256, P-384 or P-521)`,
        );
      }
      return;
    case "ed25519":
      return;
    default:
      throw new X509SvidError("unsupported-key", `${role} certificate has a ${key.asymmetricKeyType ?? "unknown"} key, which is not supported`);
  }
}
