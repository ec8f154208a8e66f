import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { DecisionLog } from "../../decision-log/index.ts";
import { Budgets } from "../../budget/index.ts";
import { ConfigError, type GatewayConfig } from "../../config/index.ts";
import { createGatewayMetrics, createLogger, registerBundleGauges, type Logger } from "../../telemetry/index.ts";
import { BundleSync } from "../../node/bundle-sync.ts";
import { loadCredentials } from "../credentials.ts";
import { NO_POLICY, compileBundle, loadPolicy } from "../policy-source.ts";
import { loadTokenizer } from "../../policy/index.ts";
import type { AuthzState } from "./check.ts";
import { AuthzServer } from "./server.ts";

export interface AuthzServiceOptions {
  logger?: Logger;
  clock?: () => number;
}

/**
 * `edgeward authz`: only what ext_authz needs — the policy (files, or signed bundles with their ladder), budgets,
 * the decision log, metrics on the admin listener — and the ext_authz listeners. No TLS listener, no runners.
 * It owns its decision log: never point it at the log of a gateway that runs at the same time.
 */
export class AuthzService {
  readonly state: AuthzState;
  readonly server: AuthzServer;
  readonly #admin: Server;
  readonly #sync: BundleSync | null;
  #closing: Promise<void> | null = null;

  private constructor(state: AuthzState, server: AuthzServer, admin: Server, sync: BundleSync | null) {
    this.state = state;
    this.server = server;
    this.#admin = admin;
    this.#sync = sync;
  }

  static async start(config: GatewayConfig, options: AuthzServiceOptions = {}): Promise<AuthzService> {
    if (config.authz === null) throw new ConfigError("authz", "missing: set authz.grpc and/or authz.http to run the ext_authz service");
    const authz = config.authz;
    const logger = options.logger ?? createLogger(config.logLevel);
    const clock = options.clock ?? Date.now;
    // The control plane is fetched with the node's own SVID; its files are read once here.
    const credentials = config.bundle?.url != null ? await loadCredentials(config) : null;
    const policy = config.bundle === null ? await loadPolicy(config.policy) : NO_POLICY;
    loadTokenizer(); // now rather than on the first check
    const log = await DecisionLog.open(config.decisionLog, {
      onRepair: ({ droppedBytes }) => logger.warn({ droppedBytes }, "decision log: a torn last record was repaired"),
    });
    const metrics = createGatewayMetrics();
    const state: AuthzState = { config, policy, ladder: null, log, budgets: new Budgets(), metrics, logger, clock };
    let sync: BundleSync | null = null;
    let server: AuthzServer | null = null;
    const admin = createServer((req, res) => void serveAdmin(state, req, res));
    try {
      if (config.bundle !== null) {
        sync = await BundleSync.start({
          config: config.bundle, clock, logger, metrics,
          activate: (bundle) => {
            state.policy = compileBundle(bundle);
          },
          clientCredentials: () => {
            if (credentials === null) throw new Error("no TLS credentials for the control plane");
            return { cert: credentials.cert, key: credentials.key };
          },
        });
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
      server = await AuthzServer.start(state, authz);
      await listen(admin, config.admin);
    } catch (err) {
      await server?.close(0);
      await sync?.close();
      if (admin.listening) admin.close();
      await log.close();
      throw err;
    }
    logger.info({ grpc: server.grpcAddress, http: server.httpAddress, revision: state.policy.revision }, "ext_authz service started");
    return new AuthzService(state, server, admin, sync);
  }

  get adminAddress(): { host: string; port: number } {
    const a = this.#admin.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Re-reads the policy files, or the local bundle file; an invalid one leaves the policy in force. */
  async reloadPolicy(): Promise<string | null> {
    if (this.#sync !== null) {
      await this.#sync.checkFile(true);
      return this.state.policy.revision;
    }
    const next = await loadPolicy(this.state.config.policy);
    this.state.policy = next;
    this.state.logger.info({ revision: next.revision }, "policy reloaded");
    return next.revision;
  }

  close(graceMs = 5_000): Promise<void> {
    this.#closing ??= (async () => {
      await this.#sync?.close();
      await Promise.all([this.server.close(graceMs), new Promise<void>((resolve) => (this.#admin.listening ? this.#admin.close(() => resolve()) : resolve()))]);
      await this.state.log.close();
    })();
    return this.#closing;
  }
}

async function serveAdmin(state: AuthzState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET" }).end();
    return;
  }
  switch ((req.url ?? "/").split("?", 1)[0]) {
    case "/metrics":
      res.writeHead(200, { "content-type": state.metrics.registry.contentType }).end(await state.metrics.registry.metrics());
      return;
    case "/healthz":
      res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
      return;
    case "/readyz": {
      // Not ready while the log refuses appends (every check would be denied) or the bundle ladder is locked.
      const stage = state.ladder?.status(state.clock()).stage ?? null;
      const ready = state.log.refusal === null && stage !== "locked";
      const body = { status: ready ? "ready" : "unavailable", policyRevision: state.policy.revision, logSeq: state.log.lastSeq, ...(stage === null ? {} : { stage }) };
      res.writeHead(ready ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify(body));
      return;
    }
    default:
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
  }
}

function listen(server: Server, at: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}
