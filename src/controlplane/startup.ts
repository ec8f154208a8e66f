import { readFile } from "node:fs/promises";
import { BundleError, readPublicKey, readSigningKey, type SigningKey, type TrustedKey, type TrustedKeys } from "../bundle/index.ts";
import { ConfigError } from "../config/index.ts";
import { DevCaError, loadTrustBundles, readPrivateKeyFile, type TrustBundleSet } from "../identity/index.ts";
import { OperatorToken } from "./access.ts";
import type { ControlPlaneConfig } from "./config.ts";
import { readSecretFile } from "./secret-file.ts";
import { openPostgresStorage, openSqliteStorage, type Storage } from "./storage/index.ts";

/** Operator tokens shorter than this are guessable. */
export const MIN_TOKEN_LENGTH = 16;

/** Every file the config names, read and checked before anything listens. */
export interface StartupFiles {
  cert: string;
  key: string;
  /** Every trust bundle's PEM, advertised to clients as acceptable issuers. */
  ca: string[];
  trust: TrustBundleSet;
  keys: TrustedKeys;
  releaseKey: SigningKey | null;
  token: OperatorToken | null;
}

/** A key or certificate file's error, as the config key that named the file. */
function renamed(key: string, error: unknown, prefix: RegExp): never {
  if (error instanceof BundleError || error instanceof DevCaError) throw new ConfigError(key, error.message.replace(prefix, ""));
  throw error;
}

export async function loadStartupFiles(config: ControlPlaneConfig): Promise<StartupFiles> {
  const [cert, key, ca, trust] = await Promise.all([
    readFile(config.tls.cert, "utf8").catch((e: NodeJS.ErrnoException) => {
      throw new ConfigError("tls.cert", `cannot read ${config.tls.cert} (${e.code ?? "error"})`);
    }),
    readPrivateKeyFile(config.tls.key).catch((e: unknown) => renamed("tls.key", e, /^devca: /)),
    Promise.all(Object.values(config.trustBundles).map((p) => readFile(p, "utf8"))),
    loadTrustBundles(config.trustBundles),
  ]);
  const keys = new Map<string, TrustedKey>();
  for (const [i, path] of config.bundles.keys.entries()) {
    const trusted = await readPublicKey(path).catch((e: unknown) => renamed(`bundles.keys[${i}]`, e, /^bundle: /));
    keys.set(trusted.kid, trusted);
  }
  let releaseKey: SigningKey | null = null;
  if (config.bundles.releaseKey !== null) {
    releaseKey = await readSigningKey(config.bundles.releaseKey).catch((e: unknown) => renamed("bundles.releaseKey", e, /^bundle: /));
    // A revision the fleet would refuse is worse than none: the release key must be one the nodes trust.
    if (!keys.has(releaseKey.kid)) {
      throw new ConfigError("bundles.releaseKey", `key ${releaseKey.kid} is not one of bundles.keys; nodes would refuse what it signs`);
    }
  }
  let token: OperatorToken | null = null;
  if (config.operators.tokenFile !== null) {
    const text = await readSecretFile(config.operators.tokenFile, "operators.tokenFile");
    if (text.length < MIN_TOKEN_LENGTH || /\s/.test(text)) {
      throw new ConfigError("operators.tokenFile", `the token must be at least ${MIN_TOKEN_LENGTH} characters without whitespace (e.g. openssl rand -hex 32)`);
    }
    token = new OperatorToken(text);
  }
  return { cert, key, ca, trust, keys, releaseKey, token };
}

export async function openConfiguredStorage(config: ControlPlaneConfig): Promise<Storage> {
  const s = config.storage;
  if (s.kind === "sqlite") return openSqliteStorage(s.path);
  return openPostgresStorage(s.url ?? (await readSecretFile(s.urlFile!, "storage.postgres.urlFile")));
}
