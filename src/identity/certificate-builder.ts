import { randomBytes, webcrypto, X509Certificate } from "node:crypto";
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** EC P-256 with ECDSA/SHA-256: what SPIRE issues and what every TLS stack accepts. */
const KEY_ALGORITHM = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING_ALGORITHM = { name: "ECDSA", hash: "SHA-256" } as const;

export const OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
export const OID_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

export interface IssuingAuthority {
  readonly certificate: X509Certificate;
  readonly privateKey: CryptoKey;
}

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"]);
}

/** A random positive 128-bit serial, minimally encoded (leading byte non-zero, high bit clear). */
export function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString("hex");
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN PRIVATE KEY-----\n${lines.join("\n")}\n-----END PRIVATE KEY-----\n`;
}

export async function privateKeyFromPem(pem: string): Promise<CryptoKey> {
  const match = /-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/.exec(pem);
  if (match === null) throw new Error("not a PKCS#8 PEM private key");
  const der = Buffer.from(match[1]!.replace(/\s+/g, ""), "base64");
  return webcrypto.subtle.importKey("pkcs8", der, KEY_ALGORITHM, false, ["sign"]);
}

function toNode(cert: x509.X509Certificate): X509Certificate {
  return new X509Certificate(Buffer.from(cert.rawData));
}

/** Self-signed root for a trust domain: cA=true, keyCertSign+cRLSign, URI SAN spiffe://<td>. */
export async function createCaCertificate(opts: {
  keys: CryptoKeyPair;
  trustDomain: string;
  notBefore: Date;
  notAfter: Date;
  subject?: string;
}): Promise<X509Certificate> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: opts.subject ?? `O=SPIFFE, CN=${opts.trustDomain} dev CA`,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    keys: opts.keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: `spiffe://${opts.trustDomain}` }], false),
      await x509.SubjectKeyIdentifierExtension.create(opts.keys.publicKey),
    ],
  });
  return toNode(cert);
}

/** The extensions of a conforming X.509-SVID leaf (SPIFFE X509-SVID spec §4). */
export function svidExtensions(opts: { uris: readonly string[]; dns?: readonly string[]; ip?: readonly string[] }): x509.Extension[] {
  const names: x509.JsonGeneralName[] = [
    ...opts.uris.map((value) => ({ type: "url" as const, value })),
    ...(opts.dns ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(opts.ip ?? []).map((value) => ({ type: "ip" as const, value })),
  ];
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([OID_SERVER_AUTH, OID_CLIENT_AUTH], false),
    ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names, false)] : []),
  ];
}

/** Signs a certificate for `publicKey` with the authority's key, with exactly the given extensions. */
export async function signCertificate(opts: {
  authority: IssuingAuthority;
  publicKey: CryptoKey;
  subject: string;
  notBefore: Date;
  notAfter: Date;
  extensions: x509.Extension[];
}): Promise<X509Certificate> {
  const issuer = new x509.X509Certificate(new Uint8Array(opts.authority.certificate.raw));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    subject: opts.subject,
    issuer: issuer.subject,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    publicKey: opts.publicKey,
    signingKey: opts.authority.privateKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      ...opts.extensions,
      await x509.SubjectKeyIdentifierExtension.create(opts.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer),
    ],
  });
  return toNode(cert);
}
