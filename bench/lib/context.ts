import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, type Dispatcher } from "undici";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { spawnReady, type ReadyProcess } from "./processes.ts";
import type { BenchContext, RunningTarget } from "./target.ts";

export const TRUST_DOMAIN = "example.org";
export const CLIENT_ID = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/client`;
export const BENCH_DIR = fileURLToPath(new URL("..", import.meta.url));
export const REPO_DIR = fileURLToPath(new URL("../..", import.meta.url));
const SVID_TTL_SECONDS = 12 * 3600;

/** The dev CA, the server SVID (localhost, 127.0.0.1) and the benchmark client's SVID, all under workDir/pki. */
export async function createPki(workDir: string): Promise<BenchContext["pki"]> {
  const dir = join(workDir, "pki");
  const caDir = join(dir, "ca");
  await initDevCa({ dir: caDir, trustDomain: TRUST_DOMAIN });
  const server = await issueSvid({
    dir: caDir, spiffeId: `spiffe://${TRUST_DOMAIN}/ns/bench/sa/gateway`, out: join(dir, "server"),
    dns: ["localhost"], ip: ["127.0.0.1"], ttlSeconds: SVID_TTL_SECONDS,
  });
  const client = await issueSvid({ dir: caDir, spiffeId: CLIENT_ID, out: join(dir, "client"), ttlSeconds: SVID_TTL_SECONDS });
  return { caPem: join(caDir, "ca.pem"), serverCert: server.certPath, serverKey: server.keyPath, clientCert: client.certPath, clientKey: client.keyPath };
}

/** Starts bench/model-server.ts in its own process (the Node binary running the harness). */
export async function startModelServer(): Promise<ReadyProcess & { url: string }> {
  const started = await spawnReady(process.execPath, [join(BENCH_DIR, "model-server.ts"), "--port", "0"], /listening on (http:\/\/\S+)/, { label: "model server" });
  return { ...started, url: started.match[1]! };
}

/** How long an idle keep-alive connection is kept: longer than any pause between rounds. */
const KEEP_ALIVE_MS = 120_000;

/** Keep-alive plain-HTTP client and its one-connection-per-request twin (undici: pipelining 0 disables keep-alive). */
export function plainClients(): { dispatcher: Dispatcher; freshConnections: () => Dispatcher } {
  return {
    dispatcher: new Agent({ keepAliveTimeout: KEEP_ALIVE_MS, keepAliveMaxTimeout: KEEP_ALIVE_MS }),
    freshConnections: () => new Agent({ pipelining: 0 }),
  };
}

/**
 * Keep-alive mTLS client presenting the benchmark client's SVID, and a twin that opens a new connection with a
 * full handshake per request (no TLS session cache, so no resumption).
 */
export function mtlsClients(pki: BenchContext["pki"]): { dispatcher: Dispatcher; freshConnections: () => Dispatcher } {
  const tls = {
    ca: readFileSync(pki.caPem),
    cert: readFileSync(pki.clientCert),
    key: readFileSync(pki.clientKey),
    servername: "localhost",
  };
  return {
    dispatcher: new Agent({ connect: tls, keepAliveTimeout: KEEP_ALIVE_MS, keepAliveMaxTimeout: KEEP_ALIVE_MS }),
    freshConnections: () => new Agent({ connect: { ...tls, maxCachedSessions: 0 }, pipelining: 0 }),
  };
}

/** A target served by one process of ours: its URL from the ready line, its CPU charged to that process. */
export function processTarget(
  name: string,
  proc: ReadyProcess,
  clients: { dispatcher: Dispatcher; freshConnections: () => Dispatcher },
  cleanup?: () => void,
): RunningTarget {
  return {
    name,
    url: proc.match[1]!,
    dispatcher: clients.dispatcher,
    freshConnections: clients.freshConnections,
    pids: [proc.pid],
    async stop() {
      await clients.dispatcher.destroy();
      await proc.stop();
      cleanup?.();
    },
  };
}
