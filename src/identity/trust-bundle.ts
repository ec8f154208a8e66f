import { X509Certificate } from "node:crypto";
import { open } from "node:fs/promises";
import { SpiffeIdError, TrustBundleError } from "./errors.ts";
import { validateTrustDomain } from "./spiffe-id.ts";

export { TrustBundleError };

/** A bundle file larger than this is a mistake (or an attack), not a set of CA certificates. */
export const MAX_BUNDLE_FILE_BYTES = 1024 * 1024;

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;

/** Parses every CERTIFICATE block of a PEM text; any other block, or a broken one, is an error. */
export function parsePemCertificates(pem: string): X509Certificate[] {
  const certificates: X509Certificate[] = [];
  let blocks = 0;
  for (const match of pem.matchAll(PEM_BLOCK)) {
    blocks++;
    const [, label, body = "", endLabel] = match;
    if (label !== endLabel) throw new TrustBundleError("garbled-pem", `PEM block ${blocks} has mismatched BEGIN/END labels`);
    // Naming the label (never the content) keeps a misplaced private key out of error messages.
    if (label !== "CERTIFICATE") throw new TrustBundleError("not-a-certificate", `PEM block ${blocks} is a ${label}, not a CERTIFICATE`);
    const base64 = body.replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw new TrustBundleError("garbled-pem", `PEM block ${blocks} is not valid base64`);
    try {
      certificates.push(new X509Certificate(Buffer.from(base64, "base64")));
    } catch {
      throw new TrustBundleError("garbled-pem", `PEM block ${blocks} is not a valid X.509 certificate`);
    }
  }
  if (pem.split("-----BEGIN ").length - 1 !== blocks) {
    throw new TrustBundleError("garbled-pem", "PEM text has an unterminated block");
  }
  if (certificates.length === 0) throw new TrustBundleError("no-certificate", "no CERTIFICATE block found");
  return certificates;
}

export interface TrustBundleSet {
  get(trustDomain: string): readonly X509Certificate[] | undefined;
  trustDomains(): string[];
}

/** An immutable trust-domain → root-certificates map. */
export function trustBundleSet(entries: Record<string, readonly X509Certificate[]>): TrustBundleSet {
  const map = new Map<string, readonly X509Certificate[]>();
  for (const [trustDomain, certificates] of Object.entries(entries)) {
    try {
      validateTrustDomain(trustDomain);
    } catch (error) {
      if (error instanceof SpiffeIdError) {
        throw new TrustBundleError("invalid-trust-domain", `invalid trust domain "${trustDomain}": ${error.message}`);
      }
      throw error;
    }
    if (certificates.length === 0) throw new TrustBundleError("no-certificate", `trust domain "${trustDomain}" has no certificates`);
    map.set(trustDomain, Object.freeze([...certificates]));
  }
  return {
    get: (trustDomain) => map.get(trustDomain),
    trustDomains: () => [...map.keys()].sort(),
  };
}

async function readBundleFile(path: string): Promise<string> {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    if (size > MAX_BUNDLE_FILE_BYTES) {
      throw new TrustBundleError("too-large", `${path} is larger than ${MAX_BUNDLE_FILE_BYTES} bytes`);
    }
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}

/** Loads one PEM bundle file per trust domain. */
export async function loadTrustBundles(files: Record<string, string>): Promise<TrustBundleSet> {
  const entries: Record<string, X509Certificate[]> = {};
  for (const [trustDomain, path] of Object.entries(files)) {
    let pem: string;
    try {
      pem = await readBundleFile(path);
    } catch (error) {
      if (error instanceof TrustBundleError) throw error;
      const code = (error as NodeJS.ErrnoException).code ?? "read error";
      throw new TrustBundleError("unreadable", `cannot read bundle for "${trustDomain}" from ${path} (${code})`);
    }
    try {
      entries[trustDomain] = parsePemCertificates(pem);
    } catch (error) {
      if (error instanceof TrustBundleError) {
        throw new TrustBundleError(error.check, `${path}: ${error.message.replace(/^trustbundle: /, "")}`);
      }
      throw error;
    }
  }
  return trustBundleSet(entries);
}
