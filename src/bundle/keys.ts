import { createHash, createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from "node:crypto";
import { promisify } from "node:util";
import { BundleError } from "./errors.ts";

export interface TrustedKey {
  kid: string;
  key: KeyObject;
}
export type TrustedKeys = ReadonlyMap<string, TrustedKey>;

export interface SigningKey {
  kid: string;
  key: KeyObject;
}

// createPublicKey would also accept a private key or a certificate and quietly derive the public key from it:
// a private key handed out as a "public" one must be refused, not used.
const PUBLIC_PEM = /^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PUBLIC KEY-----\s*$/;
const PRIVATE_PEM = /^-----BEGIN PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PRIVATE KEY-----\s*$/;

/** The key id: the RFC 7638 JWK thumbprint (base64url SHA-256) of the Ed25519 public key. */
export function keyId(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: "jwk" });
  // RFC 7638 §3.2: the required members of an OKP key, in lexicographic order, no whitespace.
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
  return createHash("sha256").update(canonical).digest("base64url");
}

function requireEd25519(key: KeyObject, what: string): void {
  if (key.asymmetricKeyType !== "ed25519") {
    throw new BundleError("malformed-key", `${what} is not an Ed25519 key (${key.asymmetricKeyType ?? "unknown type"}); bundles are signed with Ed25519`);
  }
}

/** An SPKI PEM Ed25519 public key, as `bundle keygen` writes to PREFIX.pub. */
export function parsePublicKey(pem: string): TrustedKey {
  if (!PUBLIC_PEM.test(pem)) throw new BundleError("malformed-key", "not a PEM public key (-----BEGIN PUBLIC KEY-----)");
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new BundleError("malformed-key", "the PEM public key cannot be decoded");
  }
  requireEd25519(key, "the public key");
  return { kid: keyId(key), key };
}

/** The keys a verifier trusts, by kid; the same key given twice counts once. */
export function trustedKeys(pems: readonly string[]): TrustedKeys {
  const keys = new Map<string, TrustedKey>();
  for (const pem of pems) {
    const trusted = parsePublicKey(pem);
    keys.set(trusted.kid, trusted);
  }
  return keys;
}

/** A PKCS#8 PEM Ed25519 private key, as `bundle keygen` writes to PREFIX.key. */
export function parsePrivateKey(pem: string): SigningKey {
  if (!PRIVATE_PEM.test(pem)) throw new BundleError("malformed-key", "not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)");
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new BundleError("malformed-key", "the PEM private key cannot be decoded");
  }
  requireEd25519(key, "the private key");
  return { kid: keyId(createPublicKey(key)), key };
}

const generateEd25519 = promisify(generateKeyPair);

/** A new Ed25519 signing key: PKCS#8 PEM private key, SPKI PEM public key, and its kid. */
export async function generateSigningKey(): Promise<{ kid: string; privatePem: string; publicPem: string }> {
  const { privateKey, publicKey } = await generateEd25519("ed25519");
  return {
    kid: keyId(publicKey),
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    publicPem: publicKey.export({ type: "spki", format: "pem" }) as string,
  };
}
