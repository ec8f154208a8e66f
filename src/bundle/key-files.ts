import { lstat, open, readFile, stat } from "node:fs/promises";
import { DevCaError, readPrivateKeyFile } from "../identity/index.ts";
import { BundleError } from "./errors.ts";
import { generateSigningKey, parsePrivateKey, parsePublicKey, type SigningKey, type TrustedKey } from "./keys.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ENOENT";
  }
}

/** Creates `path` (never replaces one) with `mode`, whatever the umask. */
async function createFile(path: string, text: string, mode: number): Promise<void> {
  let handle;
  try {
    handle = await open(path, "wx", mode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new BundleError("key-file", code === "EEXIST" ? `${path} already exists; keys are never overwritten` : `cannot create ${path} (${code})`);
  }
  try {
    await handle.chmod(mode);
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
}

/**
 * Generates a signing key and writes PREFIX.key (PKCS#8 PEM, 0600) and PREFIX.pub (SPKI PEM, 0644).
 * Refuses to replace either file: overwriting a signing key would orphan every bundle it signed.
 */
export async function writeSigningKey(prefix: string): Promise<{ kid: string; keyPath: string; pubPath: string }> {
  const keyPath = `${prefix}.key`;
  const pubPath = `${prefix}.pub`;
  for (const path of [keyPath, pubPath]) {
    if (await exists(path)) throw new BundleError("key-file", `${path} already exists; keys are never overwritten`);
  }
  const { kid, privatePem, publicPem } = await generateSigningKey();
  await createFile(keyPath, privatePem, 0o600);
  await createFile(pubPath, publicPem, 0o644);
  return { kid, keyPath, pubPath };
}

/** Reads a private signing key, refusing a file that group or others can access. */
export async function readSigningKey(path: string): Promise<SigningKey> {
  let pem: string;
  try {
    pem = await readPrivateKeyFile(path);
  } catch (error) {
    if (error instanceof DevCaError) throw new BundleError("key-file", error.message.replace(/^devca: /, ""));
    throw error;
  }
  try {
    return parsePrivateKey(pem);
  } catch (error) {
    if (error instanceof BundleError) throw new BundleError(error.check, `${path}: ${error.message.replace(/^bundle: /, "")}`);
    throw error;
  }
}

/** Public keys are small; anything bigger is not the file we meant to read. */
const MAX_PUBLIC_KEY_BYTES = 64 * 1024;

/** Reads a public key (SPKI PEM, as PREFIX.pub) that a verifier is to trust. */
export async function readPublicKey(path: string): Promise<TrustedKey> {
  let pem: string;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new BundleError("key-file", `public key file ${path} is not a regular file`);
    if (info.size > MAX_PUBLIC_KEY_BYTES) throw new BundleError("key-file", `public key file ${path} is too large`);
    pem = await readFile(path, "utf8");
  } catch (error) {
    if (error instanceof BundleError) throw error;
    throw new BundleError("key-file", `cannot read public key file ${path} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    return parsePublicKey(pem);
  } catch (error) {
    if (error instanceof BundleError) throw new BundleError(error.check, `${path}: ${error.message.replace(/^bundle: /, "")}`);
    throw error;
  }
}
