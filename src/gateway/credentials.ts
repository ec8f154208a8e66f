import { readFile, stat } from "node:fs/promises";
import type { GatewayConfig } from "../config/index.ts";
import { loadTrustBundles, parseKeyPair, readPrivateKeyFile, type TrustBundleSet } from "../identity/index.ts";

/** What the TLS listener serves and trusts: reloaded as a whole when SVID rotation rewrites the files. */
export interface Credentials {
  cert: string;
  key: string;
  /** Every trust bundle's certificates as PEM, advertised to clients as acceptable issuers. */
  ca: string[];
  bundles: TrustBundleSet;
}

/**
 * Reads and checks the gateway's certificate, key and trust bundles. Throws (KeyPairError, TrustBundleError,
 * DevCaError) on anything a TLS context would take but could not serve with: an empty or half-written certificate,
 * a key that is not the certificate's — as between the two writes of a rotation.
 */
export async function loadCredentials(config: GatewayConfig): Promise<Credentials> {
  const [cert, key, bundles] = await Promise.all([
    readFile(config.tls.cert, "utf8"),
    readPrivateKeyFile(config.tls.key),
    loadTrustBundles(config.trustBundles),
  ]);
  parseKeyPair(cert, key, { cert: config.tls.cert, key: config.tls.key });
  // From the parsed bundles rather than a second read, so the advertised issuers are the ones verified against.
  const ca = bundles.trustDomains().flatMap((td) => (bundles.get(td) ?? []).map((c) => c.toString()));
  return { cert, key, ca, bundles };
}

/** A cheap fingerprint of the credential files (size and mtime of each), to notice rotation without reading them. */
export async function credentialsStamp(config: GatewayConfig): Promise<string> {
  const files = [config.tls.cert, config.tls.key, ...Object.values(config.trustBundles)];
  const stats = await Promise.all(files.map((f) => stat(f).then((s) => `${s.size}:${s.mtimeMs}`, () => "missing")));
  return stats.join("|");
}
