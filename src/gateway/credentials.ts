import { readFile, stat } from "node:fs/promises";
import type { GatewayConfig } from "../config/index.ts";
import { loadTrustBundles, readPrivateKeyFile, type TrustBundleSet } from "../identity/index.ts";

/** What the TLS listener serves and trusts: reloaded as a whole when SVID rotation rewrites the files. */
export interface Credentials {
  cert: string;
  key: string;
  /** Every trust bundle's PEM, advertised to clients as acceptable issuers. */
  ca: string[];
  bundles: TrustBundleSet;
}

export async function loadCredentials(config: GatewayConfig): Promise<Credentials> {
  const [cert, key, ca, bundles] = await Promise.all([
    readFile(config.tls.cert, "utf8"),
    readPrivateKeyFile(config.tls.key),
    Promise.all(Object.values(config.trustBundles).map((p) => readFile(p, "utf8"))),
    loadTrustBundles(config.trustBundles),
  ]);
  return { cert, key, ca, bundles };
}

/** A cheap fingerprint of the credential files (size and mtime of each), to notice rotation without reading them. */
export async function credentialsStamp(config: GatewayConfig): Promise<string> {
  const files = [config.tls.cert, config.tls.key, ...Object.values(config.trustBundles)];
  const stats = await Promise.all(files.map((f) => stat(f).then((s) => `${s.size}:${s.mtimeMs}`, () => "missing")));
  return stats.join("|");
}
