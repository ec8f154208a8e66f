import { createHash } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { DecisionLog } from "../audit/index.ts";
import { Budgets } from "../budget/index.ts";
import type { GatewayConfig } from "../config/index.ts";
import { mergePolicySets, parsePolicies, readPolicyFile, type PolicySet } from "../policy/index.ts";
import { RunnerTable } from "../runners/index.ts";
import { createGatewayMetrics, createLogger, registerBundleGauges, type Logger } from "../telemetry/index.ts";
import { RevocationList, type VerifiedBundle } from "../bundle/index.ts";
import { BundleSync } from "./bundle-sync.ts";
import { credentialsStamp, loadCredentials } from "./credentials.ts";
import { handleRequest } from "./pipeline.ts";
import type { ActivePolicy, GatewayState } from "./state.ts";

export interface GatewayOptions {
  logger?: Logger;
  clock?: () => number;
}

/** The edge gateway: the mTLS listener running the pipeline, and the admin listener (metrics, health). */
export class Gateway {
  readonly state: GatewayState;
  readonly #server: HttpsServer;
  readonly #admin: HttpServer;
  #closing: Promise<void> | null = null;
  #stamp: string;
  #rotationTimer: NodeJS.Timeout | null = null;
  /** Signed bundles: the persisted bundle, the local file and the control plane (null with policy files). */
  bundleSync: BundleSync | null = null;

  readonly #tlsClient: { cert: string; key: string };

  private constructor(state: GatewayState, server: HttpsServer, admin: HttpServer, stamp: string, tlsClient: { cert: string; key: string }) {
    this.state = state;
    this.#tlsClient = tlsClient;
    this.#server = server;
    this.#admin = admin;
    this.#stamp = stamp;
  }

  /** Loads everything the config names (refusing to start on any error) and starts both listeners. */
  static async start(config: GatewayConfig, options: GatewayOptions = {}): Promise<Gateway> {
    const logger = options.logger ?? createLogger(config.logLevel);
    const clock = options.clock ?? Date.now;
    const [credentials, stamp, policy] = await Promise.all([
      loadCredentials(config),
      credentialsStamp(config),
      config.bundle === null ? loadPolicy(config.policy) : Promise.resolve(NO_POLICY),
    ]);
    const { cert, key, ca, bundles } = credentials;
    // The gateway's own SVID, presented to the control plane; replaced when the files rotate.
    const tlsClient = { cert, key };
    const log = await DecisionLog.open(config.decisionLog, {
      onRepair: ({ droppedBytes }) => logger.warn({ droppedBytes }, "decision log: a torn last record was repaired"),
    });
    const metrics = createGatewayMetrics();
    const state: GatewayState = { config, bundles, policy, ladder: null, log, budgets: new Budgets(), runners: new RunnerTable(config.runners), metrics, logger, clock };
    let sync: BundleSync | null = null;
    if (config.bundle !== null) {
      try {
        sync = await BundleSync.start({
          config: config.bundle, clock, logger, metrics,
          activate: (bundle) => {
            state.policy = compileBundle(bundle);
          },
          clientCredentials: () => tlsClient,
        });
      } catch (err) {
        await log.close();
        await state.runners.close();
        throw err;
      }
      state.ladder = sync;
      const ladder = sync;
      registerBundleGauges(metrics, {
        stage: () => ladder.status(clock()).stage,
        revision: () => ladder.status(clock()).revision,
        notAfterMs: () => ladder.status(clock()).notAfterMs,
        tampered: () => ladder.status(clock()).tampered,
        now: clock,
      });
    }

    const server = createHttpsServer({
      cert, key,
      ca,
      requestCert: true,
      // The chain and the SPIFFE rules are checked by the gateway itself (per trust domain), right after the handshake.
      rejectUnauthorized: false,
      minVersion: "TLSv1.2",
      requestTimeout: 0,
      headersTimeout: 30_000,
      keepAliveTimeout: 30_000,
    }, (req, res) => void handleRequest(state, req, res));
    // `Expect: 100-continue` (curl sends it for large bodies): a body over the limit is refused before it is sent.
    server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => {
      if (!(Number(req.headers["content-length"]) > config.limits.maxBodyBytes)) res.writeContinue();
      void handleRequest(state, req, res);
    });
    server.on("tlsClientError", (err: NodeJS.ErrnoException) => {
      metrics.tlsFailures.inc({ check: "handshake" });
      logger.debug({ code: err.code }, "TLS handshake failed");
    });

    const admin = createHttpServer((req, res) => void serveAdmin(state, req, res));
    const gateway = new Gateway(state, server, admin, stamp, tlsClient);
    gateway.bundleSync = sync;
    try {
      await listen(server, config.listen);
      await listen(admin, config.admin);
    } catch (err) {
      await gateway.close();
      throw err;
    }
    gateway.#rotationTimer = setInterval(() => void gateway.#reloadCredentialsIfChanged(), config.tls.reloadIntervalMs);
    gateway.#rotationTimer.unref();
    logger.info({ listen: gateway.address, admin: gateway.adminAddress, revision: policy.revision }, "gateway started");
    return gateway;
  }

  get address(): { host: string; port: number } {
    const a = this.#server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  get adminAddress(): { host: string; port: number } {
    const a = this.#admin.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /**
   * Re-reads the policy files, or the local bundle file; an invalid policy or bundle leaves the active one in force.
   * Returns the active revision.
   */
  async reloadPolicy(): Promise<string | null> {
    if (this.bundleSync !== null) {
      await this.bundleSync.checkFile(true);
      return this.state.policy.revision;
    }
    const next = await loadPolicy(this.state.config.policy);
    this.state.policy = next;
    this.state.logger.info({ revision: next.revision }, "policy reloaded");
    return next.revision;
  }

  /**
   * Re-reads the gateway's certificate, key and trust bundles (SVIDs are short-lived: the issuer rewrites these
   * files). New connections use them; established ones keep what they negotiated. On any error the credentials
   * in force stay, so a half-written rotation never takes the listener down.
   */
  async reloadCredentials(): Promise<void> {
    const [credentials, stamp] = await Promise.all([loadCredentials(this.state.config), credentialsStamp(this.state.config)]);
    this.#server.setSecureContext({ cert: credentials.cert, key: credentials.key, ca: credentials.ca });
    this.state.bundles = credentials.bundles;
    this.#tlsClient.cert = credentials.cert;
    this.#tlsClient.key = credentials.key;
    this.#stamp = stamp;
    this.state.logger.info("TLS credentials and trust bundles reloaded");
  }

  async #reloadCredentialsIfChanged(): Promise<void> {
    if ((await credentialsStamp(this.state.config)) === this.#stamp) return;
    await this.reloadCredentials().catch((err: Error) =>
      this.state.logger.error({ err: err.message }, "credential reload refused; the credentials in force stay"));
  }

  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), then closes the log and runner pools. */
  close(graceMs = 10_000): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#rotationTimer !== null) clearInterval(this.#rotationTimer);
      await this.bundleSync?.close();
      const stopped = Promise.all([closeServer(this.#server), closeServer(this.#admin)]);
      this.#server.closeIdleConnections();
      const timer = setTimeout(() => this.#server.closeAllConnections(), graceMs);
      await stopped;
      clearTimeout(timer);
      await this.state.runners.close();
      await this.state.log.close();
    })();
    return this.#closing;
  }
}

/** Before any bundle verifies: nothing is allowed (the ladder says `locked`). */
const NO_POLICY: ActivePolicy = Object.freeze({ set: Object.freeze({ policies: [], sources: [] }), revision: null, revocations: RevocationList.EMPTY });

/** A verified bundle's policy files, compiled as one set; a policy error refuses the whole bundle. */
function compileBundle(bundle: VerifiedBundle): ActivePolicy {
  const { name, revision } = bundle.manifest;
  const set = mergePolicySets(bundle.policyFiles.map((f) => parsePolicies(f.text, `${name}@${revision}:${f.path}`)));
  return { set, revision: `${name}@${revision}`, revocations: bundle.revocations };
}

/** Reads each policy file once: the revision is the hash of exactly the text that was compiled. */
async function loadPolicy(files: readonly string[]): Promise<ActivePolicy> {
  const texts = await Promise.all(files.map((f) => readPolicyFile(f)));
  const set = mergePolicySets(texts.map((text, i) => parsePolicies(text, files[i]!)));
  const hash = createHash("sha256");
  for (const text of texts) hash.update(text);
  return { set, revision: `sha256:${hash.digest("hex").slice(0, 16)}`, revocations: RevocationList.EMPTY };
}

function listen(server: HttpServer | HttpsServer, at: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function closeServer(server: HttpServer | HttpsServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

async function serveAdmin(state: GatewayState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? "/").split("?", 1)[0];
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET" }).end();
    return;
  }
  switch (path) {
    case "/metrics": {
      const body = await state.metrics.registry.metrics();
      res.writeHead(200, { "content-type": state.metrics.registry.contentType }).end(body);
      return;
    }
    case "/healthz":
      res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
      return;
    case "/readyz": {
      const ready = { policyRevision: state.policy.revision, logSeq: state.log.lastSeq };
      if (state.ladder === null) {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ready", ...ready }));
        return;
      }
      // A locked node answers nothing but probes, so it is not ready to take traffic.
      const s = state.ladder.status(state.clock());
      const bundle = {
        stage: s.stage, reason: s.reason, revision: s.revision,
        notAfter: s.notAfterMs === null ? null : new Date(s.notAfterMs).toISOString(), clockTampered: s.tampered,
        lastError: state.ladder.lastError,
      };
      res.writeHead(s.stage === "locked" ? 503 : 200, { "content-type": "application/json" })
        .end(JSON.stringify({ status: s.stage === "locked" ? "locked" : "ready", ...ready, bundle }));
      return;
    }
    default:
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
  }
}
