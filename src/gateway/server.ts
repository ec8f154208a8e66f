import { createHash } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { DecisionLog } from "../audit/index.ts";
import { Budgets } from "../budget/index.ts";
import type { GatewayConfig } from "../config/index.ts";
import { mergePolicySets, parsePolicies, readPolicyFile, type PolicySet } from "../policy/index.ts";
import { RunnerTable } from "../runners/index.ts";
import { createGatewayMetrics, createLogger, type Logger } from "../telemetry/index.ts";
import { credentialsStamp, loadCredentials } from "./credentials.ts";
import { handleRequest } from "./pipeline.ts";
import type { GatewayState } from "./state.ts";

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

  private constructor(state: GatewayState, server: HttpsServer, admin: HttpServer, stamp: string) {
    this.state = state;
    this.#server = server;
    this.#admin = admin;
    this.#stamp = stamp;
  }

  /** Loads everything the config names (refusing to start on any error) and starts both listeners. */
  static async start(config: GatewayConfig, options: GatewayOptions = {}): Promise<Gateway> {
    const logger = options.logger ?? createLogger(config.logLevel);
    const clock = options.clock ?? Date.now;
    const [credentials, stamp, policy] = await Promise.all([loadCredentials(config), credentialsStamp(config), loadPolicy(config.policy)]);
    const { cert, key, ca, bundles } = credentials;
    const log = await DecisionLog.open(config.decisionLog, {
      onRepair: ({ droppedBytes }) => logger.warn({ droppedBytes }, "decision log: a torn last record was repaired"),
    });
    const metrics = createGatewayMetrics();
    const state: GatewayState = { config, bundles, policy, log, budgets: new Budgets(), runners: new RunnerTable(config.runners), metrics, logger, clock };

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
    const gateway = new Gateway(state, server, admin, stamp);
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

  /** Re-reads the policy; an invalid policy leaves the active one in force. Returns the active revision. */
  async reloadPolicy(): Promise<string> {
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

/** Reads each policy file once: the revision is the hash of exactly the text that was compiled. */
async function loadPolicy(files: readonly string[]): Promise<{ set: PolicySet; revision: string }> {
  const texts = await Promise.all(files.map((f) => readPolicyFile(f)));
  const set = mergePolicySets(texts.map((text, i) => parsePolicies(text, files[i]!)));
  const hash = createHash("sha256");
  for (const text of texts) hash.update(text);
  return { set, revision: `sha256:${hash.digest("hex").slice(0, 16)}` };
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
    case "/readyz":
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ready", policyRevision: state.policy.revision, logSeq: state.log.lastSeq }));
      return;
    default:
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
  }
}
