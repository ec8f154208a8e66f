import { createPrivateKey, randomBytes, type webcrypto, type X509Certificate } from "node:crypto";
import { link, lstat, mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { isIP } from "node:net";
import { basename, dirname, join } from "node:path";

/**
 * The certificate builder (@peculiar/x509 and its dependency tree, tens of MB) is loaded only when a certificate is
 * made: the gateway imports this module's key-file reader but never issues certificates.
 */
const builder = () => import("./certificate-builder.ts");
import { readCertificateExtensions } from "./certificate-extensions.ts";
import { DevCaError, SpiffeIdError, X509SvidError } from "./errors.ts";
import { parseSpiffeId, validateTrustDomain } from "./spiffe-id.ts";
import { parsePemCertificates, TrustBundleError } from "./trust-bundle.ts";

export { DevCaError };

const DEFAULT_CA_VALIDITY_DAYS = 365;
const DEFAULT_SVID_TTL_SECONDS = 3600;
/** Issued certificates start a little in the past so a peer whose clock lags still accepts them (SPIRE does the same). */
const BACKDATE_SECONDS = 10;
const CA_CERT_FILE = "ca.pem";
const CA_KEY_FILE = "ca.key";
/** Private keys are small; anything bigger is not the file we meant to read. */
const MAX_KEY_FILE_BYTES = 64 * 1024;
const DNS_NAME = /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** "90s", "15m", "1h", "7d" → seconds. Positive whole numbers with one unit only. */
export function parseDuration(text: string): number {
  const match = /^([1-9][0-9]{0,9})([smhd])$/.exec(text);
  if (match === null) {
    throw new DevCaError("duration", `invalid duration "${text.slice(0, 32)}": use a positive whole number and s, m, h or d (e.g. 15m)`);
  }
  return Number(match[1]) * UNITS[match[2]!]!;
}

/**
 * Reads a private key file, refusing one that group or others could read or write:
 * a key that has been exposed is not a secret any more.
 */
export async function readPrivateKeyFile(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw new DevCaError("key-file-unreadable", `cannot open private key file ${path} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    // fstat the open descriptor so the checked file is the file read.
    const stat = await handle.stat();
    if (!stat.isFile()) throw new DevCaError("key-file-type", `private key file ${path} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      throw new DevCaError(
        "key-file-permissions",
        `private key file ${path} is accessible by group or others (mode ${(stat.mode & 0o777).toString(8).padStart(4, "0")}); run chmod 600 on it`,
      );
    }
    if (stat.size > MAX_KEY_FILE_BYTES) throw new DevCaError("key-file-size", `private key file ${path} is too large`);
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}

/**
 * Replaces `path` all at once: the content goes to a fresh file beside it (created with `mode`, so a key is never
 * readable by others, not even for an instant), is flushed to disk, and is then renamed over `path`. A gateway
 * reloading its credentials therefore sees the old file or the new one, never an empty or half-written one.
 * Without `overwrite`, an existing `path` is left alone and the write fails with EEXIST.
 */
async function writeFileAtomically(path: string, content: string, mode: number, overwrite: boolean): Promise<void> {
  const dir = dirname(path);
  const temporary = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temporary, "wx", mode);
  try {
    try {
      // The mode given to open() is filtered by the umask.
      await handle.chmod(mode);
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    // link() refuses an existing target where rename() would replace it.
    if (overwrite) await rename(temporary, path);
    else await link(temporary, path);
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
  // The rename itself is durable only once the directory is.
  const directory = await open(dir, "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

function writePrivateKeyFile(path: string, pem: string, overwrite: boolean): Promise<void> {
  return writeFileAtomically(path, pem, 0o600, overwrite);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ENOENT";
  }
}

function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

/** Creates a self-signed development CA for one trust domain: DIR/ca.pem and DIR/ca.key (0600). */
export async function initDevCa(opts: {
  dir: string;
  trustDomain: string;
  now?: Date;
  validityDays?: number;
  force?: boolean;
}): Promise<{ certPath: string; keyPath: string }> {
  try {
    validateTrustDomain(opts.trustDomain);
  } catch (error) {
    if (error instanceof SpiffeIdError) throw new DevCaError("trust-domain", `invalid trust domain: ${error.message}`);
    throw error;
  }
  const validityDays = opts.validityDays ?? DEFAULT_CA_VALIDITY_DAYS;
  if (!Number.isInteger(validityDays) || validityDays < 1 || validityDays > 3650) {
    throw new DevCaError("validity", "CA validity must be a whole number of days between 1 and 3650");
  }
  const certPath = join(opts.dir, CA_CERT_FILE);
  const keyPath = join(opts.dir, CA_KEY_FILE);
  if (!opts.force && ((await exists(certPath)) || (await exists(keyPath)))) {
    throw new DevCaError("ca-exists", `a CA already exists in ${opts.dir}; pass --force to replace it`);
  }
  const now = wholeSeconds(opts.now ?? new Date());
  const { createCaCertificate, generateKeyPair, privateKeyToPem } = await builder();
  const keys = await generateKeyPair();
  const certificate = await createCaCertificate({
    keys,
    trustDomain: opts.trustDomain,
    notBefore: new Date(now.getTime() - BACKDATE_SECONDS * 1000),
    notAfter: new Date(now.getTime() + validityDays * 86400 * 1000),
  });
  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  await writePrivateKeyFile(keyPath, await privateKeyToPem(keys.privateKey), opts.force === true);
  await writeFileAtomically(certPath, certificate.toString(), 0o644, true);
  return { certPath, keyPath };
}

async function loadDevCa(dir: string): Promise<{ certificate: X509Certificate; privateKey: webcrypto.CryptoKey; trustDomain: string }> {
  const certPath = join(dir, CA_CERT_FILE);
  let pem: string;
  try {
    pem = await readFile(certPath, "utf8");
  } catch (error) {
    throw new DevCaError("ca-missing", `cannot read CA certificate ${certPath} (${(error as NodeJS.ErrnoException).code ?? "error"}); run "ca init" first`);
  }
  let certificate: X509Certificate | undefined;
  try {
    [certificate] = parsePemCertificates(pem);
  } catch (error) {
    if (error instanceof TrustBundleError) throw new DevCaError("ca-certificate", `${certPath}: ${error.message}`);
    throw error;
  }
  const keyPath = join(dir, CA_KEY_FILE);
  const keyPem = await readPrivateKeyFile(keyPath);
  let privateKey: webcrypto.CryptoKey;
  let matches: boolean;
  try {
    privateKey = await (await builder()).privateKeyFromPem(keyPem);
    matches = certificate !== undefined && certificate.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    throw new DevCaError("ca-key", `CA key ${keyPath} is not a PKCS#8 EC P-256 private key`);
  }
  if (certificate === undefined || !matches) throw new DevCaError("ca-key", `CA key ${keyPath} does not match ${certPath}`);
  let uris: readonly string[];
  try {
    uris = readCertificateExtensions(certificate, "CA").uris;
  } catch (error) {
    if (error instanceof X509SvidError) throw new DevCaError("ca-certificate", error.message);
    throw error;
  }
  const trustDomain = uris.length === 1 ? /^spiffe:\/\/([^/]+)$/.exec(uris[0]!)?.[1] : undefined;
  if (trustDomain === undefined) throw new DevCaError("ca-certificate", `${certPath} has no spiffe://<trust-domain> URI SAN`);
  return { certificate, privateKey, trustDomain };
}


/** Issues an X.509-SVID signed by the CA in `dir`: PREFIX.pem (leaf, then the CA) and PREFIX.key (0600). */
export async function issueSvid(opts: {
  dir: string;
  spiffeId: string;
  out: string;
  ttlSeconds?: number;
  dns?: string[];
  ip?: string[];
  now?: Date;
}): Promise<{ certPath: string; keyPath: string }> {
  let id;
  try {
    id = parseSpiffeId(opts.spiffeId);
  } catch (error) {
    if (error instanceof SpiffeIdError) throw new DevCaError("spiffe-id", `invalid SPIFFE ID: ${error.message}`);
    throw error;
  }
  const ttlSeconds = opts.ttlSeconds ?? DEFAULT_SVID_TTL_SECONDS;
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new DevCaError("ttl", "TTL must be a positive whole number of seconds");
  for (const name of opts.dns ?? []) {
    if (name.length > 253 || !DNS_NAME.test(name)) throw new DevCaError("dns", `invalid DNS name "${name.slice(0, 64)}"`);
  }
  for (const address of opts.ip ?? []) {
    if (isIP(address) === 0) throw new DevCaError("ip", `invalid IP address "${address.slice(0, 64)}"`);
  }
  const ca = await loadDevCa(opts.dir);
  if (id.trustDomain !== ca.trustDomain) {
    throw new DevCaError(
      "trust-domain-mismatch",
      `SPIFFE ID ${id.uri} is not in the CA's trust domain "${ca.trustDomain}"`,
    );
  }
  const now = wholeSeconds(opts.now ?? new Date());
  const notAfter = new Date(now.getTime() + ttlSeconds * 1000);
  if (notAfter.getTime() > ca.certificate.validToDate.getTime()) {
    throw new DevCaError("ttl", `the SVID would outlive the CA, which expires at ${ca.certificate.validToDate.toISOString()}`);
  }
  if (now.getTime() < ca.certificate.validFromDate.getTime()) {
    throw new DevCaError("ca-not-yet-valid", `the CA is not valid before ${ca.certificate.validFromDate.toISOString()}`);
  }
  const { generateKeyPair, privateKeyToPem, signCertificate, svidExtensions } = await builder();
  const keys = await generateKeyPair();
  const leaf = await signCertificate({
    authority: { certificate: ca.certificate, privateKey: ca.privateKey },
    publicKey: keys.publicKey,
    subject: "O=SPIFFE",
    notBefore: new Date(now.getTime() - BACKDATE_SECONDS * 1000),
    notAfter,
    extensions: svidExtensions({ uris: [id.uri], dns: opts.dns ?? [], ip: opts.ip ?? [] }),
  });
  const certPath = `${opts.out}.pem`;
  const keyPath = `${opts.out}.key`;
  // `--out certs/gateway` into a folder that does not exist yet: made (0700, it holds a key), as `ca init --dir` does.
  await mkdir(dirname(opts.out), { recursive: true, mode: 0o700 });
  await writePrivateKeyFile(keyPath, await privateKeyToPem(keys.privateKey), true);
  await writeFileAtomically(certPath, leaf.toString() + ca.certificate.toString(), 0o644, true);
  return { certPath, keyPath };
}
