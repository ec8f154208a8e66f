import "reflect-metadata";
import { chmod, open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import {
  createCaCertificate,
  generateKeyPair,
  OID_CLIENT_AUTH,
  OID_SERVER_AUTH,
  privateKeyFromPem,
  privateKeyToPem,
  signCertificate,
  svidExtensions,
  type IssuingAuthority,
} from "../../src/identity/certificate-builder.ts";
import { readPrivateKeyFile } from "../../src/identity/dev-ca.ts";
import { parsePemCertificates } from "../../src/identity/trust-bundle.ts";

/** Each way an X.509-SVID can be wrong that a verifier must catch (go-spiffe's testdata names). */
export type Defect =
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
};

const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;

/** Loads the CA that `initDevCa` wrote into caDir. */
export async function loadAuthority(caDir: string): Promise<IssuingAuthority & { trustDomain: string }> {
  const [certificate] = parsePemCertificates(await readFile(join(caDir, "ca.pem"), "utf8"));
  if (certificate === undefined) throw new Error(`no CA certificate in ${caDir}`);
  const trustDomain = /URI:spiffe:\/\/([^,/]+)/.exec(certificate.subjectAltName ?? "")?.[1];
  if (trustDomain === undefined) throw new Error(`CA in ${caDir} has no spiffe:// URI SAN`);
  const privateKey = await privateKeyFromPem(await readPrivateKeyFile(join(caDir, "ca.key")));
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
    case "expired":
    case "not-yet-valid":
    case "foreign-ca":
      return svidExtensions({ uris: [id] });
  }
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
 * real CA's name and trust domain. EC P-256 with clientAuth, so TLS clients still present it.
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
  const [notBefore, notAfter] =
    defect === "expired"
      ? [new Date(now.getTime() - 2 * HOUR_MS), new Date(now.getTime() - HOUR_MS)]
      : defect === "not-yet-valid"
        ? [new Date(now.getTime() + HOUR_MS), new Date(now.getTime() + 2 * HOUR_MS)]
        : [new Date(now.getTime() - 60_000), new Date(now.getTime() + HOUR_MS)];
  const keys = await generateKeyPair();
  const id = `spiffe://${realCa.trustDomain}/ns/default/sa/${defect}`;
  const leaf = await signCertificate({
    authority,
    publicKey: keys.publicKey,
    subject: "O=SPIFFE",
    notBefore,
    notAfter,
    extensions: extensionsFor(defect, id, realCa.trustDomain),
  });
  const certPath = `${outPrefix}.pem`;
  const keyPath = `${outPrefix}.key`;
  await writeKeyFile(keyPath, await privateKeyToPem(keys.privateKey));
  await writeFile(certPath, leaf.toString() + authority.certificate.toString());
  await chmod(certPath, 0o644);
  return { certPath, keyPath };
}
