import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { chmodSync, existsSync, lstatSync, readFileSync, unlinkSync } from "node:fs";
import type { AddressInfo, Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { DecisionLog, type DecisionLogOptions } from "../decision-log/index.ts";
import { trustedPeers } from "../identity/index.ts";
import { Budgets } from "../budget/index.ts";
import { checkConfigFiles, ConfigError, type GatewayConfig } from "../config/index.ts";
import { markDown, markUp, RunnerSupervisor, RunnerTable } from "../runners/index.ts";
import { createGatewayMetrics, createLogger, registerBundleGauges, registerDecisionLogGauge, registerRunnerMetrics, registerUploadMetrics, type Logger } from "../telemetry/index.ts";
import type { BundleSync } from "../node/bundle-sync.ts";
import { loadTokenizer, policyWarnings } from "../policy/index.ts";
import { compileBundle, loadPolicy, NO_POLICY } from "./policy-source.ts";
import { credentialsStamp, loadCredentials } from "./credentials.ts";
import type { AuthzServer } from "./ext-authz/index.ts";
import type { LogUploader } from "../node/log-upload.ts";
import { ConnectionTally, InFlight } from "./capacity.ts";
import { DecisionCore } from "./decision-core.ts";
import { authenticatePeer } from "./authenticate.ts";
import { handleRequest } from "./pipeline.ts";
import type { GatewayState } from "./state.ts";

export interface GatewayOptions {
  logger?: Logger;
  clock?: () => number;
  /** How the decision log retries after a failed write (default: 100 ms, doubling to 30 s). */
  logRetry?: DecisionLogOptions["retry"];
  /** How long an embedded runner that died waits to be started again (default: 1 s, doubling to 30 s). */
  runnerBackoff?: { initialMs: number; maxMs: number };
}

/** The edge gateway: the mTLS listener running the pipeline, and the admin listener (metrics, health). */
export class Gateway {
  readonly state: GatewayState;
  readonly #server: HttpsServer | HttpServer;
  readonly #admin: HttpServer;
  #closing: Promise<void> | null = null;
  #stamp: string;
  #rotationTimer: NodeJS.Timeout | null = null;
  /** Signed bundles: the persisted bundle, the local file and the control plane (null with policy files). */
  bundleSync: BundleSync | null = null;
  /** Decision-log upload to the control plane, and retention (null without `upload`). */
  logUploader: LogUploader | null = null;
  /** Envoy ext_authz services over this gateway's state (null without `authz`). */
  authz: AuthzServer | null = null;
  /** The runners the config marks `embedded`, which this gateway starts, restarts and stops. */
  supervisors: RunnerSupervisor[] = [];

  readonly #tlsClient: { cert: string; key: string };
  /** The main listener's open connections, once their handshake is done (mTLS only). */
  readonly #secured: ReadonlySet<TLSSocket>;

  private constructor(
    state: GatewayState, server: HttpsServer | HttpServer, admin: HttpServer, stamp: string, tlsClient: { cert: string; key: string }, secured: ReadonlySet<TLSSocket>,
  ) {
    this.state = state;
    this.#tlsClient = tlsClient;
    this.#secured = secured;
    this.#server = server;
    this.#admin = admin;
    this.#stamp = stamp;
  }

  /** Loads everything the config names (refusing to start on any error) and starts both listeners. */
  static async start(config: GatewayConfig, options: GatewayOptions = {}): Promise<Gateway> {
    const logger = options.logger ?? createLogger(config.logLevel);
    const clock = options.clock ?? Date.now;
    await checkConfigFiles(config);
    loadTokenizer(); // now rather than on the first request
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
      onRecover: ({ retries, droppedBytes }) => logger.warn({ retries, droppedBytes }, "decision log: writable again after a failed write; the rejected appends were cut off"),
      clock,
      ...(options.logRetry === undefined ? {} : { retry: options.logRetry }),
    });
    const metrics = createGatewayMetrics();
    registerDecisionLogGauge(metrics, () => log.health.writable);
    const peers = config.identity.source === "xfcc" ? trustedPeers(config.identity.trustedPeers) : null;
    const state = {
      config, bundles, trustedPeers: peers, policy, ladder: null, log, budgets: new Budgets(), runners: new RunnerTable(config.runners), metrics, logger, clock,
      inFlight: new InFlight(), connections: new ConnectionTally(connectionCap(config.limits.maxConnections, logger), config.limits.maxConnectionsPerPrincipal),
      refusedConnections: new WeakSet(),
    } as Omit<GatewayState, "core"> as GatewayState;
    state.core = new DecisionCore(state);
    let sync: BundleSync | null = null;
    if (config.bundle !== null) {
      try {
        // Loaded only when configured, like the uploader and ext_authz below: what a node does not use stays out of memory.
        const { BundleSync } = await import("../node/bundle-sync.ts");
        sync = await BundleSync.start({
          config: config.bundle, clock, logger, metrics,
          activate: (bundle) => {
            state.policy = compileBundle(bundle);
            policyChanged(state);
          },
          clientCredentials: () => tlsClient,
          logSeq: () => log.lastSeq,
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
    // A bundle's warnings come with its activation.
    if (config.bundle === null) warnAboutPolicy(state);

    // Decision-log upload: like the bundle sync, a background task that must stop before the log closes.
    let uploader: LogUploader | null = null;
    if (config.upload !== null) {
      try {
        const { LogUploader } = await import("../node/log-upload.ts");
        uploader = await LogUploader.start({
          config: config.upload, retentionMs: config.logRetentionMs, log, clock, logger,
          metrics: registerUploadMetrics(metrics),
          clientCredentials: () => tlsClient,
          nodeStatus: () => {
            const s = state.ladder?.status(clock());
            return { bundleRevision: s?.revision ?? null, stage: s?.stage ?? null };
          },
        });
      } catch (err) {
        await sync?.close();
        await log.close();
        await state.runners.close();
        throw err;
      }
    }

    // The embedded runners, started before the listeners so that the first request finds its model loaded.
    let supervisors: RunnerSupervisor[];
    try {
      supervisors = await startEmbeddedRunners(state, options.runnerBackoff);
      await state.runners.startProbes(Date.now);
    } catch (err) {
      await uploader?.close();
      await sync?.close();
      await log.close();
      await state.runners.close();
      throw err;
    }

    const handler = (req: IncomingMessage, res: ServerResponse) => void handleRequest(state, req, res);
    // The body's own deadline (limits.bodyTimeout) is enforced while it is read, with a 408; Node's requestTimeout
    // only backs it up for a request whose headers and body together never arrive.
    const timeouts = { requestTimeout: HEADERS_TIMEOUT_MS + config.limits.bodyTimeoutMs + 1000, headersTimeout: HEADERS_TIMEOUT_MS, keepAliveTimeout: 30_000 };
    // Sidecar mode: the local Envoy terminated mTLS and forwards the caller's identity in XFCC, over plain HTTP on
    // loopback or a Unix socket that nothing but the sidecar can reach.
    const server: HttpsServer | HttpServer = config.identity.source === "xfcc"
      ? createHttpServer(timeouts, handler)
      : createHttpsServer({
        cert, key,
        ca,
        requestCert: true,
        // The chain and the SPIFFE rules are checked by the gateway itself (per trust domain), right after the handshake.
        rejectUnauthorized: false,
        minVersion: "TLSv1.2",
        ...timeouts,
      }, handler);
    // `Expect: 100-continue` (curl sends it for large bodies): a body over the limit is refused before it is sent.
    server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => {
      if (!(Number(req.headers["content-length"]) > config.limits.maxBodyBytes)) res.writeContinue();
      void handleRequest(state, req, res);
    });
    server.on("tlsClientError", (err: NodeJS.ErrnoException) => {
      metrics.tlsFailures.inc({ check: "handshake" });
      logger.debug({ code: err.code }, "TLS handshake failed");
    });
    // Connections beyond limits.maxConnections are closed as they arrive, before any handshake work.
    server.maxConnections = state.connections.maxTotal;
    server.on("drop", () => metrics.connectionsRefused.inc({ limit: "total" }));
    server.on("connection", (socket: Socket) => {
      state.connections.accepted();
      socket.once("close", () => state.connections.closed());
    });
    const secured = new Set<TLSSocket>();
    if (config.identity.source === "mtls") {
      server.on("secureConnection", (socket: TLSSocket) => {
        secured.add(socket);
        socket.once("close", () => secured.delete(socket));
        countConnection(state, socket);
      });
    }

    const admin = createHttpServer((req, res) => void serveAdmin(state, req, res));
    const gateway = new Gateway(state, server, admin, stamp, tlsClient, secured);
    gateway.bundleSync = sync;
    gateway.logUploader = uploader;
    gateway.supervisors = supervisors;
    try {
      await listen(server, config.listen);
      await listen(admin, config.admin);
      // Loaded only when configured: a gateway without ext_authz does not carry gRPC in memory.
      if (config.authz !== null) gateway.authz = await (await import("./ext-authz/index.ts")).AuthzServer.start(state, config.authz);
    } catch (err) {
      await gateway.close();
      throw err;
    }
    gateway.#rotationTimer = setInterval(() => void gateway.#reloadCredentialsIfChanged(), config.tls.reloadIntervalMs);
    gateway.#rotationTimer.unref();
    logger.info({ listen: gateway.address, admin: gateway.adminAddress, revision: policy.revision }, "gateway started");
    return gateway;
  }

  /** The main listener's TCP address; for a Unix socket (sidecar mode), `host` is the socket's path and `port` 0. */
  get address(): { host: string; port: number } {
    const a = this.#server.address();
    return typeof a === "string" ? { host: a, port: 0 } : { host: (a as AddressInfo).address, port: (a as AddressInfo).port };
  }

  /** The main listener as a URL: https:// (mTLS), http:// or unix: (sidecar mode). */
  get url(): string {
    const a = this.address;
    if (typeof this.#server.address() === "string") return `unix:${a.host}`;
    const host = a.host.includes(":") ? `[${a.host}]` : a.host;
    return `${this.state.config.identity.source === "xfcc" ? "http" : "https"}://${host}:${a.port}`;
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
    policyChanged(this.state);
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
    if ("setSecureContext" in this.#server) this.#server.setSecureContext({ cert: credentials.cert, key: credentials.key, ca: credentials.ca });
    this.state.bundles = credentials.bundles;
    this.#tlsClient.cert = credentials.cert;
    this.#tlsClient.key = credentials.key;
    this.#stamp = stamp;
    this.state.logger.info("TLS credentials and trust bundles reloaded");
    this.#recheckConnections();
  }

  /**
   * After the trust bundles changed: every open connection is verified again under the new ones, and one whose client
   * certificate no longer verifies is closed — its requests in flight are cut first (a stream gets a final event).
   */
  #recheckConnections(): void {
    const { state } = this;
    const now = new Date(state.clock());
    for (const socket of this.#secured) {
      const before = authenticatePeer(socket, state.bundles, now);
      if (before.ok) continue;
      const principal = peerPrincipal(socket);
      const message = `client certificate no longer accepted after the trust bundles changed: ${before.message}`;
      const cut = principal === null ? 0 : state.inFlight.cutConnection(principal, socket, message);
      if (cut > 0) state.logger.warn({ principal, cut }, "requests of a caller the new trust bundles do not verify were ended");
      else socket.destroy();
    }
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
      await this.logUploader?.close();
      await this.authz?.close(graceMs);
      const stopped = Promise.all([closeServer(this.#server), closeServer(this.#admin)]);
      this.#server.closeIdleConnections();
      const timer = setTimeout(() => this.#server.closeAllConnections(), graceMs);
      await stopped;
      clearTimeout(timer);
      await Promise.all(this.supervisors.map((s) => s.stop()));
      await this.state.runners.close();
      await this.state.log.close();
    })();
    return this.#closing;
  }
}

/**
 * Starts the runners the config marks `embedded` (all at once) and ties their health to their process: down when
 * one exits, up when it listens again. One that does not start stops the others, and the gateway does not start.
 */
async function startEmbeddedRunners(state: GatewayState, backoff: GatewayOptions["runnerBackoff"]): Promise<RunnerSupervisor[]> {
  const { config, logger, metrics } = state;
  const restarts = registerRunnerMetrics(metrics, () => state.runners.upstreams.map((u) => ({ name: u.name, up: u.health.up })));
  const started = await Promise.allSettled(config.runners.map(async (r, i) => {
    if (r.embedded === null) return null;
    const upstream = state.runners.byName(r.name)!;
    try {
      return await RunnerSupervisor.start({
        name: r.name, config: r.embedded, logger, ...(backoff !== undefined ? { backoff } : {}),
        onReady: () => markUp(upstream, Date.now()),
        onExit: (reason) => {
          restarts.inc({ runner: r.name });
          markDown(upstream, reason, Date.now(), { pinned: true });
        },
      });
    } catch (err) {
      throw new ConfigError(`runners[${i}].embedded`, (err as Error).message);
    }
  }));
  const supervisors = started.flatMap((s) => (s.status === "fulfilled" && s.value !== null ? [s.value] : []));
  const failed = started.find((s) => s.status === "rejected");
  if (failed !== undefined) {
    await Promise.all(supervisors.map((s) => s.stop()));
    throw failed.reason;
  }
  return supervisors;
}

/** How long a client may take to send a request's headers. */
const HEADERS_TIMEOUT_MS = 30_000;
/** How long a connection over its caller's limit is kept for its 429. */
const REFUSED_CONNECTION_GRACE_MS = 1000;
/** Descriptors kept for everything but callers' connections: the log, runner pools, the admin listener, files. */
const RESERVED_DESCRIPTORS = 64;

/**
 * The connection limit, lowered (with a warning) to what the process's descriptor limit can hold: when callers'
 * connections take every descriptor, the log cannot be written and the runner cannot be reached.
 */
function connectionCap(configured: number, logger: Logger): number {
  let soft: number;
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (line === null) return configured;
    soft = Number(line[1]);
  } catch {
    return configured; // not Linux: the configured limit stands
  }
  const cap = Math.max(16, soft - RESERVED_DESCRIPTORS);
  if (configured <= cap) return configured;
  logger.warn({ configured, openFilesLimit: soft, cap }, "limits.maxConnections is above what the open-files limit can hold; lowered");
  return cap;
}

/**
 * Counts a new connection against its caller's connection limit once the handshake is done (the verdict is cached
 * for the connection's requests). A connection over the limit is answered 429 on its first request and closed, or,
 * while the listener is half full, closed at once.
 */
function countConnection(state: GatewayState, socket: TLSSocket): void {
  const peer = authenticatePeer(socket, state.bundles, new Date(state.clock()));
  if (!peer.ok) return;
  principals.set(socket, peer.principal);
  const verdict = state.connections.open(peer.principal);
  if (verdict === "ok") {
    socket.once("close", () => state.connections.release(peer.principal));
    return;
  }
  state.metrics.connectionsRefused.inc({ limit: "principal" });
  if (verdict === "close") {
    socket.destroy();
    return;
  }
  state.refusedConnections.add(socket);
  // Long enough for its first request to be told why; not long enough to hold a descriptor.
  setTimeout(() => socket.destroy(), REFUSED_CONNECTION_GRACE_MS).unref();
}

/** The SPIFFE ID the connection was first verified with, whatever it is worth now. */
function peerPrincipal(socket: TLSSocket): string | null {
  return principals.get(socket) ?? null;
}

/** The principal each counted connection was verified as, so that a later refusal can still find its requests. */
const principals = new WeakMap<TLSSocket, string>();

/** After a new policy took force: the requests in flight of callers it revokes are ended, and its warnings logged. */
function policyChanged(state: GatewayState): void {
  const cut = state.inFlight.cutRevoked(state.policy.revocations);
  if (cut > 0) state.logger.warn({ cut }, "requests of revoked callers were ended");
  warnAboutPolicy(state);
}

/** Policies that can never apply to this gateway, and a missing workload namespace, are worth an operator's look. */
function warnAboutPolicy(state: GatewayState): void {
  for (const warning of policyWarnings(state.policy.set, state.config.workload)) state.logger.warn({ revision: state.policy.revision }, warning);
}

function listen(server: HttpServer | HttpsServer, at: { host: string; port: number } | { path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const done = () => {
      server.off("error", reject);
      resolve();
    };
    if ("path" in at) {
      // A socket left by a process that died is removed; anything else at that path is not ours to delete.
      if (existsSync(at.path) && lstatSync(at.path).isSocket()) unlinkSync(at.path);
      server.listen(at.path, () => {
        chmodSync(at.path, 0o660); // the sidecar runs as another user of the pod's group
        done();
      });
    } else {
      server.listen(at.port, at.host, done);
    }
  });
}

function closeServer(server: HttpServer | HttpsServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

/**
 * Each runner's health for /readyz, and, when none is up, why the gateway is not ready (naming each runner and its
 * reason). One runner up is enough: the models of the others answer 502 meanwhile, which `runners` shows.
 */
function runnerReadiness(state: GatewayState): { detail: Record<string, { up: boolean; since: string; reason?: string }>; down: string | null } {
  const detail: Record<string, { up: boolean; since: string; reason?: string }> = {};
  const down: string[] = [];
  for (const u of state.runners.upstreams) {
    const h = u.health;
    detail[u.name] = { up: h.up, since: new Date(h.since).toISOString(), ...(h.up ? {} : { reason: h.reason ?? "down" }) };
    if (!h.up) down.push(`runner ${u.name} is down: ${h.reason ?? "down"}`);
  }
  return { detail, down: down.length === state.runners.upstreams.length ? `no runner is up (${down.join("; ")})` : null };
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
      const runners = runnerReadiness(state);
      const ready = { policyRevision: state.policy.revision, logSeq: state.log.lastSeq, runners: runners.detail };
      const health = state.log.health;
      if (!health.writable) {
        // Every request would be refused with 503 before it is forwarded: not ready, until the log has recovered.
        const log = {
          writable: false, since: health.since === null ? null : new Date(health.since).toISOString(), lastError: health.lastError,
          retries: health.retries, nextRetryAt: health.nextRetryAt === null ? null : new Date(health.nextRetryAt).toISOString(),
        };
        res.writeHead(503, { "content-type": "application/json" })
          .end(JSON.stringify({ status: "unavailable", reason: "the decision log cannot be written; requests are refused until it recovers", ...ready, log }));
        return;
      }
      if (runners.down !== null) {
        // Every inference request would be answered 502: not ready, until one of them is back.
        res.writeHead(503, { "content-type": "application/json" })
          .end(JSON.stringify({ status: "unavailable", reason: runners.down, ...ready, log: { writable: true } }));
        return;
      }
      if (state.ladder === null) {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ready", ...ready, log: { writable: true } }));
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
        .end(JSON.stringify({ status: s.stage === "locked" ? "locked" : "ready", ...ready, log: { writable: true }, bundle }));
      return;
    }
    default:
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
  }
}
