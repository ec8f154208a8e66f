import { GeneralSign } from "jose";
import { packArchive } from "./archive.ts";
import { BundleError } from "./errors.ts";
import type { SigningKey } from "./keys.ts";
import {
  API_VERSION,
  checkManifest,
  encodeManifest,
  formatTimestamp,
  KIND,
  MANIFEST_FILE,
  REVOCATIONS_FILE,
  sha256Hex,
  SIGNATURE_FILE,
  type BundleFiles,
  type BundleManifest,
} from "./manifest.ts";
import { RevocationList } from "./revocations.ts";

export interface BuildOptions {
  /** the policy directory's content: .yaml/.yml policy files and, optionally, revocations.json */
  files: BundleFiles;
  name: string;
  revision: number;
  /** createdAt and notBefore; whole seconds are kept */
  nowMs: number;
  validForSeconds: number;
  graceSeconds: number;
  restrictedSeconds: number;
  keys: readonly SigningKey[];
}

/** manifest.json.sig: one JWS signature per key over the manifest bytes, the payload detached. */
async function sign(manifestBytes: Uint8Array, keys: readonly SigningKey[]): Promise<Uint8Array> {
  const signer = new GeneralSign(manifestBytes);
  for (const { kid, key } of keys) signer.addSignature(key).setProtectedHeader({ alg: "EdDSA", kid });
  const { signatures } = await signer.sign();
  const detached = { signatures: signatures.map((s) => ({ protected: s.protected!, signature: s.signature })) };
  return Buffer.from(`${JSON.stringify(detached, null, 2)}\n`);
}

/**
 * Builds and signs a bundle. Pure: the same options give the same bytes (Ed25519 signatures are deterministic),
 * so a bundle can be rebuilt from git and compared.
 */
export async function buildBundle(opts: BuildOptions): Promise<{ manifest: BundleManifest; files: BundleFiles; archive: Buffer }> {
  for (const reserved of [MANIFEST_FILE, SIGNATURE_FILE]) {
    if (opts.files.has(reserved)) throw new BundleError("malformed-archive", `the input already holds ${reserved}; build from the policy sources, not from a built bundle`);
  }
  const revocations = opts.files.get(REVOCATIONS_FILE);
  if (revocations !== undefined) RevocationList.parse(Buffer.from(revocations).toString("utf8"));
  if (!Number.isSafeInteger(opts.validForSeconds) || opts.validForSeconds < 1) {
    throw new BundleError("malformed-manifest", "the validity period must be a positive whole number of seconds");
  }
  if (opts.keys.length === 0) throw new BundleError("signature-missing", "at least one signing key is needed");

  const createdAtSeconds = Math.floor(opts.nowMs / 1000);
  const manifest = checkManifest({
    apiVersion: API_VERSION,
    kind: KIND,
    name: opts.name,
    revision: opts.revision,
    createdAt: formatTimestamp(createdAtSeconds * 1000),
    notBefore: formatTimestamp(createdAtSeconds * 1000),
    notAfter: formatTimestamp((createdAtSeconds + opts.validForSeconds) * 1000),
    degradation: { graceSeconds: opts.graceSeconds, restrictedSeconds: opts.restrictedSeconds },
    files: Object.fromEntries([...opts.files].map(([path, bytes]) => [path, sha256Hex(bytes)])),
  });
  const manifestBytes = encodeManifest(manifest);
  // One signature per distinct key, in kid order, so the output does not depend on the order keys were given in.
  const keys = [...new Map(opts.keys.map((k) => [k.kid, k])).values()].sort((a, b) => (a.kid < b.kid ? -1 : 1));
  const files = new Map(opts.files);
  files.set(MANIFEST_FILE, manifestBytes);
  files.set(SIGNATURE_FILE, await sign(manifestBytes, keys));
  return { manifest, files, archive: packArchive(files, createdAtSeconds) };
}
