import { createPrivateKey, type KeyObject, type X509Certificate } from "node:crypto";
import { KeyPairError, TrustBundleError } from "./errors.ts";
import { parsePemCertificates } from "./trust-bundle.ts";

export { KeyPairError };

export interface KeyPair {
  /** The certificate first, then any chain the file carries. */
  readonly chain: readonly X509Certificate[];
  readonly key: KeyObject;
}

/**
 * Parses a certificate file and its private key and checks that they belong together. TLS stacks take an empty or
 * half-written certificate and a key of another certificate without complaint and then fail every handshake, so
 * whoever swaps credentials in must check them first. Names the file a problem was found in, never its content.
 */
export function parseKeyPair(certPem: string, keyPem: string, names: { cert: string; key: string }): KeyPair {
  let chain: X509Certificate[];
  try {
    chain = parsePemCertificates(certPem);
  } catch (error) {
    if (!(error instanceof TrustBundleError)) throw error;
    throw new KeyPairError("certificate", `${names.cert}: ${error.message.replace(/^trustbundle: /, "")}`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    throw new KeyPairError("key", `${names.key}: not a PEM private key${keyPem.trim() === "" ? " (the file is empty)" : ""}`);
  }
  if (!chain[0]!.checkPrivateKey(key)) {
    throw new KeyPairError("mismatch", `${names.key} does not match the public key of the certificate in ${names.cert}`);
  }
  return { chain, key };
}
