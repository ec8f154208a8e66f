import type { IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { fastify, LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from "fastify";
import { compileStringMatcher } from "../policy/match.ts";
import { createLogger, type Logger } from "../telemetry/index.ts";
import { authenticatePeer, authorize, GroupTable, RevokedSet, type Access, type Caller } from "./access.ts";
import type { ControlPlaneConfig } from "./config.ts";
import { ClaimCheck } from "./claims.ts";
import { ApiError } from "./errors.ts";
import { LogIngestion, MAX_UPLOAD_BYTES } from "./ingestion.ts";
import { KeyedLock } from "./keyed-lock.ts";
import { LongPoll } from "./long-poll.ts";
import { OPENAPI_DOCUMENT } from "./openapi.ts";
import { publishBundle, timestamp } from "./publish.ts";
import { etagMatches, limitParam, nodeReport, preferredWait, queryOf, requireBody } from "./request.ts";
import { parseRevocationRequest, revocationRevision } from "./revocation.ts";
import { loadStartupFiles, openConfiguredStorage, type StartupFiles } from "./startup.ts";
import { MAX_LIMIT, type NodeRecord, type Storage, type StoredBundle } from "./storage/index.ts";

/** A pushed bundle, as large as the bundle module's reader accepts. */
export const MAX_BUNDLE_BYTES = 32 * 1024 * 1024;
/** JSON bodies (a revocation) are a few fields. */
const MAX_JSON_BYTES = 16 * 1024;
const DEFAULT_MAX_WAITERS = 10_000;
const DEFAULT_HISTORY = 100;

export interface ControlPlaneOptions {
  logger?: Logger;
  clock?: () => number;
  /** Storage to use instead of the configured one; the caller keeps ownership (it is not closed). */
  storage?: Storage;
  /** Most long-polls held at once (default 10,000). */
  maxWaiters?: number;
}

/** Set when the server stops: answers then close their connection, so a keep-alive client does not hold the stop. */
interface Shutdown {
  closing: boolean;
}

/** The central server: HTTPS with mTLS, bundles, decision-log ingestion, findings, revocation and the fleet view. */
export class ControlPlane {
  readonly config: ControlPlaneConfig;
  readonly storage: Storage;
  readonly longPoll: LongPoll;
  /** "METHOD /path" of every route served, for the API description's test. */
  readonly routes: readonly string[];
  readonly #app: FastifyInstance;
  readonly #ownsStorage: boolean;
  readonly #shutdown: Shutdown;
  #closing: Promise<void> | null = null;

  private constructor(parts: { config: ControlPlaneConfig; storage: Storage; ownsStorage: boolean; app: FastifyInstance; routes: readonly string[]; longPoll: LongPoll; shutdown: Shutdown }) {
    this.config = parts.config;
    this.storage = parts.storage;
    this.#ownsStorage = parts.ownsStorage;
    this.#app = parts.app;
    this.routes = parts.routes;
    this.longPoll = parts.longPoll;
    this.#shutdown = parts.shutdown;
  }

  /** Loads and checks everything the config names (refusing to start on any error), opens storage and listens. */
  static async start(config: ControlPlaneConfig, options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const logger = options.logger ?? createLogger(config.logLevel);
    const files = await loadStartupFiles(config);
    const ownsStorage = options.storage === undefined;
    const storage = options.storage ?? (await openConfiguredStorage(config));
    try {
      const revoked = new RevokedSet();
      for (const r of await storage.listRevocations()) revoked.add(r);
      const longPoll = new LongPoll(options.maxWaiters ?? DEFAULT_MAX_WAITERS);
      const shutdown: Shutdown = { closing: false };
      const { app, routes } = buildApp({ config, files, storage, logger, clock: options.clock ?? Date.now, revoked, longPoll, shutdown });
      const plane = new ControlPlane({ config, storage, ownsStorage, app, routes, longPoll, shutdown });
      await app.listen({ host: config.listen.host, port: config.listen.port });
      logger.info({ listen: plane.address, storage: config.storage.kind }, "control plane started");
      return plane;
    } catch (error) {
      if (ownsStorage) await storage.close();
      throw error;
    }
  }

  get address(): { host: string; port: number } {
    const a = this.#app.server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Answers the held long-polls, lets requests in flight finish (up to `graceMs`), then closes storage. */
  close(graceMs = 10_000): Promise<void> {
    this.#closing ??= (async () => {
      this.#shutdown.closing = true;
      this.longPoll.close();
      // Requests still running after the grace period lose their connection rather than hold the stop.
      const timer = setTimeout(() => this.#app.server.closeAllConnections(), graceMs);
      await this.#app.close();
      clearTimeout(timer);
      if (this.#ownsStorage) await this.storage.close();
    })();
    return this.#closing;
  }
}

interface AppContext {
  config: ControlPlaneConfig;
  files: StartupFiles;
  storage: Storage;
  logger: Logger;
  clock: () => number;
  revoked: RevokedSet;
  longPoll: LongPoll;
  shutdown: Shutdown;
}

function buildApp(ctx: AppContext): { app: FastifyInstance; routes: string[] } {
  const { config, files, storage, logger, clock, revoked, longPoll, shutdown } = ctx;
  const now = () => timestamp(clock());
  const groups = new GroupTable(config.groups);
  const rules = {
    groups,
    operators: compileStringMatcher(config.operators.principals),
    token: files.token,
    isRevoked: (principal: string, serial: string) => revoked.has(principal, serial),
  };
  const callers = new WeakMap<IncomingMessage, Caller>();
  const publishLock = new KeyedLock();
  const ingestion = new LogIngestion({ storage, logger, clockSkewMs: config.analysis.clockSkewMs, now });
  const claims = new ClaimCheck(storage, logger);

  const app = fastify({
    https: {
      cert: files.cert,
      key: files.key,
      ca: files.ca,
      requestCert: true,
      // The chain and the SPIFFE rules are checked per request against the trust bundles, per trust domain.
      rejectUnauthorized: false,
      minVersion: "TLSv1.2",
    },
    loggerInstance: logger as FastifyBaseLogger,
    // Requests are logged where something happens (a refused upload, a publish), not one line per poll.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: MAX_JSON_BYTES,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    keepAliveTimeout: 30_000,
  });

  const routes: string[] = [];
  app.addHook("onRoute", (route) => {
    for (const method of [route.method].flat()) routes.push(`${method} ${route.url}`);
  });

  // Bodies that are not JSON are taken as bytes, within each route's bodyLimit; the route checks them.
  app.addContentTypeParser(["application/x-ndjson", "application/gzip"], { parseAs: "buffer" }, (_request, body, done) => done(null, body));

  // Authentication comes first, before any body is read: nothing but health reaches an unauthenticated caller.
  app.addHook("onRequest", async (request) => {
    const access = (request.routeOptions.config as { access?: Access }).access ?? "any";
    const peer = access === "public" ? null : authenticatePeer(request.raw.socket as TLSSocket, files.trust, new Date(clock()));
    const caller = authorize(access, peer, request.headers.authorization, rules);
    callers.set(request.raw, caller);
    if (access === "node" && caller.kind === "node") {
      // The node's identity is its verified SVID; what its headers say about its state is only its claim.
      const claimed = nodeReport(request);
      const at = now();
      await storage.touchNode({ id: caller.id, group: caller.group, at, claimed });
      await claims.check({ id: caller.id, group: caller.group }, claimed, at);
    }
  });

  app.addHook("onSend", async (_request, reply) => {
    if (shutdown.closing) reply.header("connection", "close");
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof ApiError) return reply.code(error.status).headers(error.headers).send(error.body());
    if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") return reply.code(413).send(new ApiError(413, "too_large", "the body is larger than this route accepts").body());
    if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return reply.code(415).send(new ApiError(415, "unsupported_media_type", "unsupported content type").body());
    if (typeof error.statusCode === "number" && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.code(error.statusCode).send(new ApiError(error.statusCode, "bad_request", error.message).body());
    }
    request.log.error({ err: error.message, url: request.url }, "request failed");
    return reply.code(500).send(new ApiError(500, "internal", "internal error").body());
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send(new ApiError(404, "not_found", `no route ${request.method} ${request.url.split("?", 1)[0]}`).body()));

  const node = (request: FastifyRequest) => callers.get(request.raw) as Extract<Caller, { kind: "node" }>;
  const operator = (request: FastifyRequest) => callers.get(request.raw) as Extract<Caller, { kind: "operator" }>;
  const configuredGroup = (value: string | undefined): string => {
    if (value === undefined || value === "") throw new ApiError(400, "bad_request", "query parameter group is required");
    if (!groups.has(value)) throw new ApiError(400, "unknown_group", `no configured group ${JSON.stringify(value.slice(0, 64))} (groups: ${groups.names().join(", ")})`);
    return value;
  };
  /** Publishes one group's bundle at a time, and wakes the group's long-polls. */
  const publish = (group: string, archive: () => Promise<Buffer>, at: number): Promise<StoredBundle> =>
    publishLock.run(group, async () => {
      const stored = await publishBundle(storage, files.keys, group, await archive(), at);
      longPoll.publish(group);
      return stored;
    });

  app.get("/healthz", { config: { access: "public" } }, async () => ({ status: "ok" }));

  app.get("/v1/openapi.json", { config: { access: "any" } }, async () => OPENAPI_DOCUMENT);

  app.get("/v1/bundle", { config: { access: "node" } }, async (request, reply) => {
    const { group } = node(request);
    const wait = preferredWait(request);
    // The version is read before the bundle: a publish in between makes the wait return at once.
    const seen = longPoll.version(group);
    let latest = await storage.latestBundle(group);
    if (wait !== null && wait > 0 && (latest === null || etagMatches(request, latest.etag))) {
      const gone = new AbortController();
      reply.raw.once("close", () => gone.abort());
      const waiting = longPoll.wait(group, seen, wait * 1000, gone.signal);
      if (waiting !== null) {
        await waiting;
        reply.header("preference-applied", `wait=${wait}`);
        latest = await storage.latestBundle(group);
      }
    }
    if (latest === null) return reply.code(404).send(new ApiError(404, "no_bundle", `group ${group} has no bundle yet`).body());
    reply.header("etag", `"${latest.etag}"`).header("cache-control", "no-cache");
    if (etagMatches(request, latest.etag)) return reply.code(304).send();
    return reply.code(200).type("application/gzip").send(latest.archive);
  });

  app.get("/v1/logs/head", { config: { access: "node" } }, async (request) => {
    const head = await storage.logHead(node(request).id);
    return { ackSeq: head.ackSeq, ackHash: head.ackHash };
  });

  app.post("/v1/logs", { config: { access: "node" }, bodyLimit: MAX_UPLOAD_BYTES, onRequest: requireBody("application/x-ndjson", "gzip") },
    async (request) => ingestion.upload(node(request), (request.body as Buffer | undefined) ?? Buffer.alloc(0)));

  app.post("/v1/bundles", { config: { access: "operator" }, bodyLimit: MAX_BUNDLE_BYTES, onRequest: requireBody("application/gzip", null) }, async (request, reply) => {
    const group = configuredGroup(queryOf(request).group);
    const archive = (request.body as Buffer | undefined) ?? Buffer.alloc(0);
    const stored = await publish(group, async () => archive, clock());
    logger.info({ group, revision: stored.revision, by: operator(request).id }, "bundle published");
    return reply.code(201).send({ group, revision: stored.revision, digest: stored.digest, etag: stored.etag });
  });

  app.get("/v1/bundles", { config: { access: "operator" } }, async (request) => {
    const query = queryOf(request);
    const history = await storage.bundleHistory(configuredGroup(query.group), limitParam(query) ?? DEFAULT_HISTORY);
    return history.map((b) => ({ revision: b.revision, digest: b.digest, name: b.name, createdAt: b.createdAt, notAfter: b.notAfter, publishedAt: b.publishedAt }));
  });

  app.post("/v1/revocations", { config: { access: "operator" }, onRequest: requireBody("application/json", null) }, async (request, reply) => {
    const wanted = parseRevocationRequest(request.body);
    const at = clock();
    const revocation = await storage.addRevocation({ ...wanted, revokedAt: timestamp(at) });
    revoked.add(revocation);
    logger.warn({ kind: revocation.kind, value: revocation.value, by: operator(request).id }, "revoked");
    const bundles: { group: string; revision: number }[] = [];
    const releaseKey = files.releaseKey;
    if (releaseKey !== null) {
      for (const group of await storage.bundleGroups()) {
        // Read under the group's lock: of two revocations racing, the later revision carries both.
        const stored = await publish(group, async () => {
          const [latest, recorded] = await Promise.all([storage.latestBundle(group), storage.listRevocations()]);
          return revocationRevision(latest!, recorded, releaseKey, at, config.bundles.revocationValidForSeconds);
        }, at);
        bundles.push({ group, revision: stored.revision });
      }
    }
    return reply.code(201).send({ revocation, bundles });
  });

  app.get("/v1/revocations", { config: { access: "operator" } }, async () => storage.listRevocations());

  async function nodeView(n: NodeRecord) {
    const [head, findings] = await Promise.all([storage.logHead(n.id), storage.listFindings({ node: n.id, limit: MAX_LIMIT })]);
    return {
      id: n.id, group: n.group, firstSeen: n.firstSeen, lastContact: n.lastContact,
      claimed: n.claimed, ackSeq: head.ackSeq, findings: findings.length,
    };
  }

  app.get("/v1/nodes", { config: { access: "operator" } }, async () => Promise.all((await storage.listNodes()).map(nodeView)));

  app.get("/v1/nodes/:id", { config: { access: "operator" } }, async (request) => {
    const { id } = request.params as { id: string };
    const found = await storage.getNode(id);
    if (found === null) throw new ApiError(404, "not_found", `no node ${JSON.stringify(id.slice(0, 256))}`);
    return nodeView(found);
  });

  app.get("/v1/findings", { config: { access: "operator" } }, async (request) => {
    const query = queryOf(request);
    if (query.severity !== undefined && !["low", "medium", "high", "critical"].includes(query.severity)) {
      throw new ApiError(400, "bad_request", "severity must be low, medium, high or critical");
    }
    const limit = limitParam(query);
    return storage.listFindings({
      ...(query.node === undefined ? {} : { node: query.node }),
      ...(query.severity === undefined ? {} : { severity: query.severity }),
      ...(query.kind === undefined ? {} : { kind: query.kind }),
      ...(limit === undefined ? {} : { limit }),
    });
  });

  return { app, routes };
}
