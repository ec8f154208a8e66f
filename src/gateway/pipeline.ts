import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import { boundedBody, INFERENCE_PATHS, type InferencePath, type InferenceRequest } from "../policy/index.ts";
import { UpstreamError, callUpstream, callUpstreamBuffered, releaseSlot, takeSlot, toUpstreamError, type Upstream } from "../runners/index.ts";
import { authenticateForwarded, authenticatePeer } from "./authenticate.ts";
import { ClientAbort, readBody } from "./body.ts";
import type { CutReason, OpenRequest } from "./capacity.ts";
import type { Exchange, Grant, RequestFacts, Usage } from "./decision-core.ts";
import { GatewayError, errorBody, streamErrorEvents } from "./errors.ts";
import { relayJson, relayStream } from "./relay.ts";
import type { GatewayState } from "./state.ts";

/**
 * The gateway's HTTP transport over the decision core (decision-core.ts): authenticate → revoked → locked →
 * capacity → parse → authorize → limits → route → budget → record → relay → settle → observe. Budget admission and
 * the route lookup run before the allow is recorded, so that the log says what was actually done (a request
 * refused for budget is logged as a denial with status 429, an unknown model with 404), and a refused request
 * never reaches a runner. After authentication every answer is recorded.
 */

const INFERENCE = new Set<string>(INFERENCE_PATHS);

export async function handleRequest(state: GatewayState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = performance.now();
  const ex = state.core.begin(req.method ?? "GET", req.url ?? "/");
  const route = INFERENCE.has(ex.path) || ex.path === "/v1/models" || ex.path === "/v1/health" ? ex.path : "other";
  state.metrics.inflight.inc();
  res.setHeader("x-request-id", ex.requestId);
  try {
    await dispatch(state, req, res, ex);
  } catch (err) {
    sendError(state, req, res, ex, err);
  } finally {
    state.metrics.inflight.dec();
    const finish = () => {
      state.metrics.requests.inc({ route, code: String(res.statusCode) });
      state.metrics.duration.observe({ route }, (performance.now() - started) / 1000);
    };
    if (res.writableFinished || res.destroyed) finish();
    else res.once("close", finish);
  }
}

async function dispatch(state: GatewayState, req: IncomingMessage, res: ServerResponse, ex: Exchange): Promise<void> {
  const { core } = state;
  if (ex.path === "/v1/health") {
    if (ex.method !== "GET" && ex.method !== "HEAD") throw methodNotAllowed("GET");
    return sendJson(res, 200, { status: "ok" });
  }

  // Authenticate (verified once per connection; only expiry is re-checked). Counted here rather than at the
  // handshake so that probes of /v1/health, which present no certificate, are not counted as failures. An
  // unauthenticated caller is not recorded: the log would be anyone's to fill.
  const peer = state.trustedPeers === null
    ? authenticatePeer(req.socket as TLSSocket, state.bundles, new Date(state.clock()))
    : authenticateForwarded(req, state.trustedPeers, state.bundles);
  if (!peer.ok) {
    state.metrics.tlsFailures.inc({ check: peer.check });
    state.logger.warn({ remote: req.socket.remoteAddress, check: peer.check }, `client certificate rejected: ${peer.message}`);
    return core.refuse(ex, new GatewayError("invalid_client_certificate", `client certificate rejected: ${peer.message}`), { record: false });
  }
  const principal = peer.principal;
  await core.authenticated(ex, principal, peer.serial);

  if (state.refusedConnections.has(req.socket)) {
    return core.refuse(ex, new GatewayError("too_many_connections",
      `${principal} already holds ${state.connections.maxPerPrincipal} connections to this gateway; this one is closed`, { "retry-after": "1" }));
  }

  // The request is registered in flight for as long as it runs: capped per caller and in all, and cut from outside
  // when its caller is revoked.
  const work = new Work(principal, ex.serial, req.socket);
  const entered = state.inFlight.enter(work, state.config.limits);
  if (entered === "total") {
    return core.refuse(ex, new GatewayError("gateway_busy", `${state.config.limits.maxInflight} requests are in flight; retry shortly`, { "retry-after": "1" }));
  }
  if (entered === "caller") {
    return core.refuse(ex, new GatewayError("too_many_requests_in_flight",
      `${principal} already has ${state.config.limits.maxInflightPerPrincipal} requests in flight`, { "retry-after": "1" }));
  }
  try {
    await serve(state, req, res, ex, work);
  } finally {
    state.inFlight.leave(work);
  }
}

/** A request in flight, as the gateway can cut it from outside. */
class Work implements OpenRequest {
  readonly principal: string;
  readonly serial: string | null;
  readonly socket: object;
  readonly abort = new AbortController();
  /** Why the request was cut, once it was. */
  cutBy: { reason: CutReason; error: GatewayError } | null = null;

  constructor(principal: string, serial: string | null, socket: object) {
    this.principal = principal;
    this.serial = serial;
    this.socket = socket;
  }

  cut(reason: CutReason, message: string): void {
    if (this.cutBy !== null) return;
    this.cutBy = { reason, error: new GatewayError("revoked_identity", message) };
    this.abort.abort();
  }
}

async function serve(state: GatewayState, req: IncomingMessage, res: ServerResponse, ex: Exchange, work: Work): Promise<void> {
  const { core } = state;
  const facts = requestFacts(state, req);
  if (ex.path === "/v1/models") {
    if (ex.method !== "GET") return core.refuse(ex, methodNotAllowed("GET"));
    return listModels(state, res, ex, facts);
  }
  if (!INFERENCE.has(ex.path)) return core.refuse(ex, new GatewayError("unknown_url", `unknown route ${ex.method} ${ex.path}`));
  if (ex.method !== "POST") return core.refuse(ex, methodNotAllowed("POST"));

  // A caller no rule could allow here is refused before its body is read.
  await core.prejudge(ex, facts);
  // Parse: the body is bounded in size and in the time it may take to arrive.
  let raw: Buffer;
  try {
    raw = await readBody(req, state.config.limits.maxBodyBytes, state.config.limits.bodyTimeoutMs);
  } catch (err) {
    if (err instanceof GatewayError) await core.refuse(ex, err);
    throw err;
  }
  const request = await core.parse(ex, ex.path as InferencePath, raw);

  const decision = await core.authorize(ex, facts, core.fields(request));
  const grant = await core.limit(ex, request, decision, { mustBound: false });

  // Route: after authorization, so that an unauthorized caller cannot probe which models exist.
  const upstream = state.runners.route(request.model);
  if (upstream === undefined) return core.refuse(ex, new GatewayError("model_not_found", `model ${JSON.stringify(request.model)} is not served by this gateway`));
  if (!takeSlot(upstream)) {
    return core.refuse(ex, new GatewayError("runner_busy", `runner ${upstream.name} has ${upstream.capacity} requests open or waiting; retry shortly`, { "retry-after": "1" }));
  }
  try {
    await core.reserve(ex, grant);
    const used: Usage = { prompt: grant.promptTokens, completion: 0 };
    try {
      await relay(state, req, res, ex, work, request, grant, upstream, used);
    } finally {
      core.settle(grant, used);
    }
  } finally {
    releaseSlot(upstream);
  }
}

async function relay(
  state: GatewayState, req: IncomingMessage, res: ServerResponse, ex: Exchange, work: Work,
  request: InferenceRequest, grant: Grant, upstream: Upstream, used: Usage,
): Promise<void> {
  const { core } = state;
  const runner = upstream.name;
  // The runner is sent what was decided on: the bound fields rewritten to the cap, and a stream asked for usage.
  const body = boundedBody(request, grant.cap);
  if (request.stream) body.stream_options = { ...(body.stream_options as object | null | undefined), include_usage: true };
  const forward = JSON.stringify(body);
  if (work.cutBy !== null) return core.refuse(ex, work.cutBy.error, { reason: work.cutBy.reason });

  // Record: sealed into the chain before anything is forwarded. Its fsync overlaps the runner's work: the relay
  // releases no byte of the answer (an error included) until the record is durable.
  const durable = core.recordAllow(ex);
  durable.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"

  const abort = work.abort;
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  res.on("close", onClose);
  try {
    const call = { path: ex.path, body: forward, headers: { "x-request-id": ex.requestId }, signal: abort.signal };
    const outcome = request.stream
      ? await relayStream(runner, await callUpstream(upstream, call), res, durable, { forwardUsage: request.includeUsage, maxTokens: grant.cap * grant.sequences }, used)
      : await relayJson(runner, await callUpstreamBuffered(upstream, call), res, durable, used);
    if (outcome.stoppedForBudget || outcome.clientGone) abort.abort();
  } catch (err) {
    if (work.cutBy !== null) return endCut(state, req, res, ex, work.cutBy, durable);
    if (abort.signal.aborted) return; // the client left; nothing to answer
    abort.abort();
    await durable; // throws the 503 when the record could not be made durable
    if (err instanceof GatewayError) {
      // The runner answered, but with a failure (its 5xx, with its message) or something that cannot be relayed.
      if (err.check === "upstream") state.metrics.upstreamErrors.inc({ runner, kind: err.code === "upstream_error" ? "status" : "protocol" });
      throw err;
    }
    const e = toUpstreamError(runner, err);
    if (e instanceof UpstreamError) state.metrics.upstreamErrors.inc({ runner, kind: e.kind });
    throw e;
  } finally {
    res.off("close", onClose);
  }
}

/**
 * A request cut from outside (its caller was revoked, or its certificate no longer verifies): a stream gets a final
 * error event, an unanswered request the error; the connection is closed.
 */
async function endCut(
  state: GatewayState, req: IncomingMessage, res: ServerResponse, ex: Exchange, cut: { reason: CutReason; error: GatewayError }, durable: Promise<void>,
): Promise<void> {
  state.metrics.requestsCut.inc({ reason: cut.reason });
  await durable.catch(() => undefined);
  await state.core.recordOutcome(ex, cut.error.status, cut.error.message).catch(() => undefined);
  if (!res.headersSent) throw cut.error;
  res.shouldKeepAlive = false;
  if (!res.writableEnded) res.end(streamErrorEvents("revoked_identity", cut.error.message));
  req.socket.end();
}

async function listModels(state: GatewayState, res: ServerResponse, ex: Exchange, facts: RequestFacts): Promise<void> {
  const { core } = state;
  await core.authorize(ex, facts, {});
  await core.recordAllow(ex);
  // A model is listed when the caller may use it on at least one inference route.
  const visible = state.runners.models().filter((model) =>
    INFERENCE_PATHS.some((path) => core.decide(ex, facts, { model }, "POST", path).decision === "ALLOW"));
  sendJson(res, 200, { object: "list", data: visible.map((id) => ({ id, object: "model", created: 0, owned_by: "edgeward" })) });
}

function requestFacts(state: GatewayState, req: IncomingMessage): RequestFacts {
  // On the mTLS listener XFCC is whatever the caller wrote: a policy condition on it must not be satisfiable there.
  const dropXfcc = state.trustedPeers === null;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || (dropXfcc && k === "x-forwarded-client-cert")) continue;
    headers[k] = Array.isArray(v) ? v.join(",") : v;
  }
  const socket = req.socket;
  return {
    headers, host: req.headers.host, port: socket.localPort, sni: (socket as TLSSocket).servername || undefined,
    sourceIp: socket.remoteAddress, destinationIp: socket.localAddress,
  };
}

function methodNotAllowed(allowed: string): GatewayError {
  return new GatewayError("method_not_allowed", `method not allowed; use ${allowed}`, { allow: allowed });
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function sendError(state: GatewayState, req: IncomingMessage, res: ServerResponse, ex: Exchange, err: unknown): void {
  if (err instanceof ClientAbort) {
    // Not a fault: the caller went away mid-body. Nothing can be answered.
    state.metrics.clientAborts.inc();
    state.logger.debug({ requestId: ex.requestId, principal: ex.principal }, err.message);
    return;
  }
  let e: GatewayError;
  if (err instanceof GatewayError) e = err;
  else if (err instanceof UpstreamError) {
    e = err.kind === "timeout"
      ? new GatewayError("upstream_timeout", `runner ${err.runner} did not answer in time`)
      : new GatewayError("upstream_unavailable", `runner ${err.runner} is unavailable`);
  } else {
    state.logger.error({ requestId: ex.requestId, err: (err as Error)?.message }, "internal error");
    e = new GatewayError("internal_error", "internal error");
  }
  if (e.status >= 500) state.logger.warn({ requestId: ex.requestId, principal: ex.principal, status: e.status, code: e.code }, e.message);
  if (res.headersSent) {
    // Mid-stream failure: all that can be done is end the stream with an error event.
    if (!res.writableEnded) res.end(`data: ${errorBody(e.message, e.type, e.code)}\n\ndata: [DONE]\n\n`);
    return;
  }
  const text = errorBody(e.message, e.type, e.code);
  for (const [k, v] of Object.entries(e.headers)) res.setHeader(k, v);
  // A caller that failed authentication, was cut, timed out or is over its connection limit is not kept connected.
  const close = e.check === "identity" || e.code === "request_timeout" || e.code === "too_many_connections";
  if (req.complete) {
    if (close) res.setHeader("connection", "close");
  } else if (e.code === "request_timeout") {
    // A body that did not arrive in time is not waited for any longer.
    res.setHeader("connection", "close");
    res.once("finish", () => req.socket.destroySoon());
  } else {
    drainRequest(req, res, close);
  }
  res.writeHead(e.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Reads and discards the rest of a request answered early (413, 401…). Closing with unread bytes in flight makes
 * the kernel send a reset, and clients such as curl then report the reset instead of the status. A client that
 * keeps sending is cut off after a few seconds.
 */
function drainRequest(req: IncomingMessage, res: ServerResponse, closeAfter: boolean): void {
  const socket = req.socket;
  const timer = setTimeout(() => socket.destroy(), 5000);
  timer.unref();
  let ended = false;
  let finished = false;
  const settle = () => {
    if (!ended || !finished) return;
    clearTimeout(timer);
    if (closeAfter) socket.end();
  };
  req.once("end", () => {
    ended = true;
    settle();
  });
  res.once("finish", () => {
    finished = true;
    settle();
  });
  req.resume();
}
