import "reflect-metadata";
import { KeyObject, sign, webcrypto, X509Certificate } from "node:crypto";
import { chmod, open, readFile, writeFile } from "node:fs/promises";
import { isIPv4 } from "node:net";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import {
  createCaCertificate,
  generateKeyPair,
  OID_CLIENT_AUTH,
  OID_SERVER_AUTH,
  privateKeyToPem,
  signCertificate,
  svidExtensions,
  type IssuingAuthority,
} from "../../src/identity/certificate-builder.ts";
import { readPrivateKeyFile } from "../../src/identity/dev-ca.ts";
import { parsePemCertificates } from "../../src/identity/trust-bundle.ts";

/** Defects whose certificates an OpenSSL client presents only with its security level lowered to 0. */
export type WeakCryptoDefect =
  | "sha1-leaf-signature"
  | "md5-leaf-signature"
  | "sha1-intermediate-signature"
  | "rsa-1024-leaf"
  | "rsa-512-leaf"
  | "rsa-1024-intermediate";

/** Each way an X.509-SVID can be wrong that a verifier must catch (go-spiffe's testdata names). */
export type Defect =
  | WeakCryptoDefect
  | "leaf-id-only-root"
  | "uri-name-constraint-violated"
  | "two-uri-sans"
  | "no-uri-san"
  | "non-spiffe-uri"
  | "invalid-spiffe-id"
  | "leaf-ca-true"
  | "leaf-key-cert-sign"
  | "leaf-crl-sign"
  | "no-digital-signature"
  | "expired"
  | "not-yet-valid"
  | "foreign-ca";

export const DEFECTS: readonly Defect[] = [
  "two-uri-sans",
  "no-uri-san",
  "non-spiffe-uri",
  "invalid-spiffe-id",
  "leaf-ca-true",
  "leaf-key-cert-sign",
  "leaf-crl-sign",
  "no-digital-signature",
  "expired",
  "not-yet-valid",
  "foreign-ca",
  "leaf-id-only-root",
  "uri-name-constraint-violated",
];

/**
 * Certificates refused for weak cryptography. A TLS client at OpenSSL's default security level refuses to load
 * them, so a handshake needs `ciphers: "DEFAULT@SECLEVEL=0"`; and a TLS 1.3 client whose key cannot sign RSA-PSS
 * (RSA-512) sends no certificate at all, so "rsa-512-leaf" reaches a server only over TLS 1.2.
 */
export const WEAK_CRYPTO_DEFECTS: readonly WeakCryptoDefect[] = [
  "sha1-leaf-signature",
  "md5-leaf-signature",
  "sha1-intermediate-signature",
  "rsa-1024-leaf",
  "rsa-512-leaf",
  "rsa-1024-intermediate",
];

/** The X509SvidError `check` that verifyX509Svid reports for each defect. */
export const EXPECTED_CHECK: Readonly<Record<Defect, string>> = {
  "two-uri-sans": "uri-san-count",
  "no-uri-san": "uri-san-count",
  "non-spiffe-uri": "non-spiffe-uri",
  "invalid-spiffe-id": "invalid-spiffe-id",
  "leaf-ca-true": "leaf-ca",
  "leaf-key-cert-sign": "leaf-key-cert-sign",
  "leaf-crl-sign": "leaf-crl-sign",
  "no-digital-signature": "leaf-digital-signature",
  expired: "expired",
  "not-yet-valid": "not-yet-valid",
  "foreign-ca": "untrusted-chain",
  "leaf-id-only-root": "leaf-id-no-path",
  "uri-name-constraint-violated": "name-constraints",
  "sha1-leaf-signature": "insecure-signature-algorithm",
  "md5-leaf-signature": "insecure-signature-algorithm",
  "sha1-intermediate-signature": "insecure-signature-algorithm",
  "rsa-1024-leaf": "weak-key",
  "rsa-512-leaf": "weak-key",
  "rsa-1024-intermediate": "weak-key",
};

const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;

/** Loads the CA that `initDevCa` wrote into caDir. */
export async function loadAuthority(caDir: string): Promise<IssuingAuthority & { trustDomain: string }> {
  const [certificate] = parsePemCertificates(await readFile(join(caDir, "ca.pem"), "utf8"));
  if (certificate === undefined) throw new Error(`no CA certificate in ${caDir}`);
  const trustDomain = /URI:spiffe:\/\/([^,/]+)/.exec(certificate.subjectAltName ?? "")?.[1];
  if (trustDomain === undefined) throw new Error(`CA in ${caDir} has no spiffe:// URI SAN`);
  // Extractable, unlike the gateway's own import, so that legacy signatures can be made with it through node:crypto.
  const pem = await readPrivateKeyFile(join(caDir, "ca.key"));
  const der = Buffer.from(pem.replace(/-----[A-Z ]+-----|\s+/g, ""), "base64");
  const privateKey = await webcrypto.subtle.importKey("pkcs8", der, { name: "ECDSA", namedCurve: "P-256" }, true, ["sign"]);
  return { certificate, privateKey, trustDomain };
}

function keyUsage(flags: number): x509.Extension {
  return new x509.KeyUsagesExtension(flags, true);
}

const EKU = new x509.ExtendedKeyUsageExtension([OID_SERVER_AUTH, OID_CLIENT_AUTH], false);
const DIGITAL_SIGNATURE = x509.KeyUsageFlags.digitalSignature;

function extensionsFor(defect: Defect, id: string, trustDomain: string): x509.Extension[] {
  const basic = (ca: boolean) => new x509.BasicConstraintsExtension(ca, undefined, true);
  const san = (uris: string[]) =>
    new x509.SubjectAlternativeNameExtension(uris.map((value) => ({ type: "url" as const, value })), false);
  switch (defect) {
    case "two-uri-sans":
      return svidExtensions({ uris: [id, `spiffe://${trustDomain}/ns/default/sa/other`] });
    case "no-uri-san":
      return svidExtensions({ uris: [], dns: ["localhost"] });
    case "non-spiffe-uri":
      return svidExtensions({ uris: [`https://${trustDomain}/ns/default/sa/web`] });
    case "invalid-spiffe-id":
      return svidExtensions({ uris: [`spiffe://${trustDomain.toUpperCase()}/ns/default/sa/web`] });
    case "leaf-ca-true":
      return [basic(true), keyUsage(DIGITAL_SIGNATURE), EKU, san([id])];
    case "leaf-key-cert-sign":
      return [basic(false), keyUsage(DIGITAL_SIGNATURE | x509.KeyUsageFlags.keyCertSign), EKU, san([id])];
    case "leaf-crl-sign":
      return [basic(false), keyUsage(DIGITAL_SIGNATURE | x509.KeyUsageFlags.cRLSign), EKU, san([id])];
    case "no-digital-signature":
      return [basic(false), keyUsage(x509.KeyUsageFlags.keyAgreement), EKU, san([id])];
    case "leaf-id-only-root":
      return svidExtensions({ uris: [`spiffe://${trustDomain}`] });
    default:
      return svidExtensions({ uris: [id] });
  }
}

/** A minimal DER writer for the structures @peculiar/x509 cannot make (name constraints, legacy signatures). */
export function tlv(tag: number, content: Uint8Array): Buffer {
  const n = content.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...length]), content]);
}

function headerLength(element: Buffer, offset = 0): { header: number; length: number } {
  const first = element[offset + 1]!;
  if (first < 0x80) return { header: 2, length: first };
  let length = 0;
  for (let i = 0; i < (first & 0x7f); i++) length = length * 256 + element[offset + 2 + i]!;
  return { header: 2 + (first & 0x7f), length };
}

/** The complete encodings (header included) of the elements inside a constructed value's content. */
function elements(content: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let offset = 0; offset < content.length; ) {
    const { header, length } = headerLength(content, offset);
    out.push(content.subarray(offset, offset + header + length));
    offset += header + length;
  }
  return out;
}

function contentOf(element: Buffer): Buffer {
  return element.subarray(headerLength(element).header);
}

/** Legacy signature algorithms, as AlgorithmIdentifier DER, with the digest node:crypto signs with. */
const LEGACY_SIGNATURES = {
  "ecdsa-with-SHA1": { identifier: "300906072a8648ce3d0401", digest: "sha1" },
  "sha1WithRSAEncryption": { identifier: "300d06092a864886f70d0101050500", digest: "sha1" },
  "md5WithRSAEncryption": { identifier: "300d06092a864886f70d0101040500", digest: "md5" },
} as const;

/**
 * Re-signs `cert` with a legacy algorithm (which WebCrypto cannot produce): both AlgorithmIdentifiers are replaced
 * and the TBSCertificate signed again with the issuer's key.
 */
export function resign(cert: X509Certificate, algorithm: keyof typeof LEGACY_SIGNATURES, issuerKey: webcrypto.CryptoKey): X509Certificate {
  const { identifier, digest } = LEGACY_SIGNATURES[algorithm];
  const algorithmId = Buffer.from(identifier, "hex");
  const [tbs] = elements(contentOf(cert.raw));
  const fields = elements(contentOf(tbs!));
  fields[fields[0]![0] === 0xa0 ? 2 : 1] = algorithmId;
  const signed = tlv(0x30, Buffer.concat(fields));
  const signature = sign(digest, signed, KeyObject.from(issuerKey));
  return new X509Certificate(tlv(0x30, Buffer.concat([signed, algorithmId, tlv(0x03, Buffer.concat([Buffer.from([0]), signature]))])));
}

/** One GeneralName for a name-constraints subtree: a URI or DNS domain, an email constraint, an IP range, or a directoryName. */
export type ConstraintName = { uri: string } | { dns: string } | { email: string } | { ip: string } | { directoryName: true };

function ipBytes(address: string): number[] {
  if (isIPv4(address)) return address.split(".").map(Number);
  const [head = "", tail] = address.split("::");
  const groups = (part: string) => (part === "" ? [] : part.split(":").map((g) => parseInt(g, 16)));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

function generalName(name: ConstraintName): Buffer {
  if ("uri" in name) return tlv(0x86, Buffer.from(name.uri, "latin1"));
  if ("dns" in name) return tlv(0x82, Buffer.from(name.dns, "latin1"));
  if ("email" in name) return tlv(0x81, Buffer.from(name.email, "latin1"));
  if ("ip" in name) {
    const [address = "", prefix = ""] = name.ip.split("/");
    const network = ipBytes(address);
    let bits = Number(prefix);
    const mask = network.map(() => {
      const take = Math.max(0, Math.min(8, bits));
      bits -= take;
      return (0xff << (8 - take)) & 0xff;
    });
    return tlv(0x87, Buffer.from([...network, ...mask]));
  }
  return tlv(0xa4, tlv(0x30, Buffer.alloc(0)));
}

/** A nameConstraints extension (RFC 5280 §4.2.1.10) with the given permitted and excluded subtrees. */
export function nameConstraintsExtension(
  subtrees: { permitted?: readonly ConstraintName[]; excluded?: readonly ConstraintName[] },
  critical = true,
): x509.Extension {
  const list = (tag: number, names: readonly ConstraintName[] | undefined) =>
    names === undefined ? Buffer.alloc(0) : tlv(tag, Buffer.concat(names.map((n) => tlv(0x30, generalName(n)))));
  const value = tlv(0x30, Buffer.concat([list(0xa0, subtrees.permitted), list(0xa1, subtrees.excluded)]));
  return new x509.Extension("2.5.29.30", critical, value);
}

/** The extensions of a signing certificate for `trustDomain`, plus any given. */
export function signingExtensions(trustDomain: string, extra: x509.Extension[] = []): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    new x509.SubjectAlternativeNameExtension([{ type: "url", value: `spiffe://${trustDomain}` }], false),
    ...extra,
  ];
}

async function rsaKeys(modulusLength: number): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(
    { name: "RSASSA-PKCS1-v1_5", modulusLength, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
    true,
    ["sign", "verify"],
  );
}

/** Signs with whatever key the authority holds: ECDSA or RSA PKCS#1 v1.5, SHA-256 either way. */
export async function signWith(opts: {
  authority: IssuingAuthority;
  publicKey: webcrypto.CryptoKey;
  subject: string;
  notBefore: Date;
  notAfter: Date;
  extensions: x509.Extension[];
}): Promise<X509Certificate> {
  if (opts.authority.privateKey.algorithm.name === "ECDSA") return signCertificate(opts);
  const issuer = new x509.X509Certificate(new Uint8Array(opts.authority.certificate.raw));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "01" + Buffer.from(webcrypto.getRandomValues(new Uint8Array(15))).toString("hex"),
    subject: opts.subject,
    issuer: issuer.subject,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    publicKey: opts.publicKey,
    signingKey: opts.authority.privateKey,
    signingAlgorithm: { name: "RSASSA-PKCS1-v1_5" },
    extensions: [
      ...opts.extensions,
      await x509.SubjectKeyIdentifierExtension.create(opts.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer),
    ],
  });
  return new X509Certificate(Buffer.from(cert.rawData));
}

/** The intermediate CA a defect needs between the real CA and the leaf, if any. */
async function defectIntermediate(realCa: IssuingAuthority & { trustDomain: string }, defect: Defect, now: Date): Promise<IssuingAuthority | undefined> {
  const keys =
    defect === "md5-leaf-signature" ? await rsaKeys(2048)
    : defect === "rsa-1024-intermediate" ? await rsaKeys(1024)
    : defect === "uri-name-constraint-violated" || defect === "sha1-intermediate-signature" ? await generateKeyPair()
    : undefined;
  if (keys === undefined) return undefined;
  const extra = defect === "uri-name-constraint-violated" ? [nameConstraintsExtension({ permitted: [{ uri: "other.example" }] })] : [];
  let certificate = await signWith({
    authority: realCa,
    publicKey: keys.publicKey,
    subject: `O=SPIFFE, CN=${defect} intermediate`,
    notBefore: new Date(now.getTime() - DAY_MS),
    notAfter: new Date(now.getTime() + DAY_MS),
    extensions: signingExtensions(realCa.trustDomain, extra),
  });
  if (defect === "sha1-intermediate-signature") certificate = resign(certificate, "ecdsa-with-SHA1", realCa.privateKey);
  return { certificate, privateKey: keys.privateKey };
}

async function writeKeyFile(path: string, pem: string): Promise<void> {
  const handle = await open(path, "w", 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(pem);
  } finally {
    await handle.close();
  }
}

/**
 * Writes OUTPREFIX.pem (leaf, then its issuer) and OUTPREFIX.key for an SVID with exactly one
 * defect, signed by the CA in caDir — except "foreign-ca", signed by a fresh CA that copies the
 * real CA's name and trust domain, and the defects that need an intermediate between the CA and
 * the leaf (constrained, RSA or SHA-1-signed), whose file carries that intermediate. Leaves have
 * clientAuth, and EC P-256 keys unless the defect is the key, so TLS clients still present them.
 */
export async function writeDefectiveSvid(
  caDir: string,
  defect: Defect,
  outPrefix: string,
  now: Date = new Date(),
): Promise<{ certPath: string; keyPath: string }> {
  const realCa = await loadAuthority(caDir);
  let authority: IssuingAuthority = realCa;
  if (defect === "foreign-ca") {
    const keys = await generateKeyPair();
    const certificate = await createCaCertificate({
      keys,
      trustDomain: realCa.trustDomain,
      subject: new x509.X509Certificate(new Uint8Array(realCa.certificate.raw)).subject,
      notBefore: new Date(now.getTime() - DAY_MS),
      notAfter: new Date(now.getTime() + 365 * DAY_MS),
    });
    authority = { certificate, privateKey: keys.privateKey };
  }
  authority = (await defectIntermediate(realCa, defect, now)) ?? authority;
  const [notBefore, notAfter] =
    defect === "expired"
      ? [new Date(now.getTime() - 2 * HOUR_MS), new Date(now.getTime() - HOUR_MS)]
      : defect === "not-yet-valid"
        ? [new Date(now.getTime() + HOUR_MS), new Date(now.getTime() + 2 * HOUR_MS)]
        : [new Date(now.getTime() - 60_000), new Date(now.getTime() + HOUR_MS)];
  const keys = defect === "rsa-1024-leaf" ? await rsaKeys(1024) : defect === "rsa-512-leaf" ? await rsaKeys(512) : await generateKeyPair();
  const id = `spiffe://${realCa.trustDomain}/ns/default/sa/${defect}`;
  let leaf = await signWith({
    authority,
    publicKey: keys.publicKey,
    subject: "O=SPIFFE",
    notBefore,
    notAfter,
    extensions: extensionsFor(defect, id, realCa.trustDomain),
  });
  if (defect === "sha1-leaf-signature") leaf = resign(leaf, "ecdsa-with-SHA1", authority.privateKey);
  if (defect === "md5-leaf-signature") leaf = resign(leaf, "md5WithRSAEncryption", authority.privateKey);
  const certPath = `${outPrefix}.pem`;
  const keyPath = `${outPrefix}.key`;
  await writeKeyFile(keyPath, await privateKeyToPem(keys.privateKey));
  await writeFile(certPath, leaf.toString() + authority.certificate.toString());
  await chmod(certPath, 0o644);
  return { certPath, keyPath };
}
