import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import type { Stage } from "../bundle/index.ts";
import { evaluate, openAIRequestFields, type Decision, type PolicyInput } from "../policy/index.ts";
import { UpstreamError, callUpstream, callUpstreamBuffered, toUpstreamError } from "../runners/index.ts";
import { authenticateForwarded, authenticatePeer } from "./authenticate.ts";
import { parseJsonObject, readBody } from "./body.ts";
import { decisionEntry, effectiveLimits, evaluateOptions } from "./decision.ts";
import { GatewayError, errorBody } from "./errors.ts";
import { relayJson, relayStream, type TokenMeter } from "./relay.ts";
import { INFERENCE_PATHS, checkRequestShape, type InferencePath } from "./request-shape.ts";
import type { ActivePolicy, GatewayState } from "./state.ts";

/**
 * The request pipeline, in the order the design fixes:
 *   authenticate → parse → authorize → budget → route → record → relay → observe.
 * Budget admission and the route lookup run before the record so that the decision log says what was actually
 * done (a request refused for budget is logged as a denial with status 429, an unknown model with 404), and a
 * refused request never reaches a runner.
 */
interface Context {
  /** The policy in force when the request arrived; a bundle activated meanwhile applies to the next request. */
  policy: ActivePolicy;
  /** Degradation stage (signed bundles only). */
  stage: Stage | undefined;
  requestId: string;
  method: string;
  path: string;
  principal: string | null;
  model: string | null;
  decision: Decision | null;
}

const INFERENCE = new Set<string>(INFERENCE_PATHS);

export async function handleRequest(state: GatewayState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = performance.now();
  const path = (req.url ?? "/").split("?", 1)[0]!;
  const ctx: Context = { policy: state.policy, stage: undefined, requestId: randomUUID(), method: req.method ?? "GET", path, principal: null, model: null, decision: null };
  const route = INFERENCE.has(path) || path === "/v1/models" || path === "/v1/health" ? path : "other";
  state.metrics.inflight.inc();
  res.setHeader("x-request-id", ctx.requestId);
  try {
    await dispatch(state, req, res, ctx);
  } catch (err) {
    sendError(state, req, res, ctx, err);
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

async function dispatch(state: GatewayState, req: IncomingMessage, res: ServerResponse, ctx: Context): Promise<void> {
  if (ctx.path === "/v1/health") {
    if (ctx.method !== "GET" && ctx.method !== "HEAD") throw methodNotAllowed("GET");
    return sendJson(res, 200, { status: "ok" });
  }

  // 1. authenticate (verified once per connection; only expiry is re-checked). Counted here rather than at the
  // handshake so that probes of /v1/health, which present no certificate, are not counted as failures.
  const peer = state.trustedPeers === null
    ? authenticatePeer(req.socket as TLSSocket, state.bundles, new Date(state.clock()))
    : authenticateForwarded(req, state.trustedPeers, state.bundles);
  if (!peer.ok) {
    state.metrics.denials.inc({ reason: "identity" });
    state.metrics.tlsFailures.inc({ check: peer.check });
    state.logger.warn({ remote: req.socket.remoteAddress, check: peer.check }, `client certificate rejected: ${peer.message}`);
    throw new GatewayError(401, "identity", "authentication_error", "invalid_client_certificate", `client certificate rejected: ${peer.message}`);
  }
  ctx.principal = peer.principal;
  // The degradation stage of the policy bundle, read once, so that every record of this request carries it.
  const ladder = state.ladder === null ? null : state.ladder.status(state.clock());
  ctx.stage = ladder?.stage;
  const revoked = ctx.policy.revocations.isRevoked({ spiffeId: peer.principal, serial: peer.serial });
  if (revoked !== null) {
    const what = revoked.kind === "serial" ? `certificate serial ${peer.serial}` : peer.principal;
    const message = `client certificate rejected: ${what} was revoked at ${revoked.revokedAt}`;
    state.metrics.denials.inc({ reason: "revoked" });
    state.metrics.tlsFailures.inc({ check: "revoked" });
    await record(state, ctx, 401, message);
    throw new GatewayError(401, "identity", "authentication_error", "revoked_identity", message);
  }

  // `locked` denies everything; `restricted` lets only essential rules allow (in authorize).
  if (ladder?.stage === "locked") {
    const message = `policy locked: ${ladder.reason}; every request is denied until a new signed bundle is activated`;
    state.metrics.denials.inc({ reason: "locked" });
    await record(state, ctx, 403, message);
    throw new GatewayError(403, "policy", "permission_denied", "policy_locked", message);
  }

  if (ctx.path === "/v1/models") {
    if (ctx.method !== "GET") throw methodNotAllowed("GET");
    return listModels(state, req, res, ctx);
  }
  if (!INFERENCE.has(ctx.path)) throw new GatewayError(404, "route", "invalid_request_error", "unknown_url", `unknown route ${ctx.method} ${ctx.path}`);
  if (ctx.method !== "POST") throw methodNotAllowed("POST");

  // 2. parse
  const raw = await readBody(req, state.config.limits.maxBodyBytes);
  const body = parseJsonObject(raw);
  const shape = checkRequestShape(ctx.path as InferencePath, body);
  ctx.model = shape.model;
  const fields = openAIRequestFields(body);

  // 3. authorize
  const decision = evaluate(ctx.policy.set, policyInput(state, req, ctx, fields), evaluateOptions(state.config.workloadLabels, ctx.stage));
  ctx.decision = decision;
  state.metrics.decisions.inc({ decision: decision.decision });
  if (decision.decision === "DENY") {
    await record(state, ctx, 403, decision.reason);
    state.metrics.denials.inc({ reason: "policy" });
    throw new GatewayError(403, "policy", "permission_denied", "policy_denied", `denied by policy: ${decision.reason}`);
  }

  const { maxTokens: cap, budget: budgetLimits } = effectiveLimits(state.config.limits, decision);
  if (shape.maxTokens !== undefined && shape.maxTokens > cap) {
    const message = `max_tokens ${shape.maxTokens} exceeds the limit of ${cap} for this caller`;
    await record(state, ctx, 400, message);
    state.metrics.denials.inc({ reason: "limit" });
    throw new GatewayError(400, "limit", "invalid_request_error", "max_tokens_exceeded", message);
  }

  // 4. budget
  const budgetKey = peer.principal;
  const admission = state.budgets.admit(budgetKey, budgetLimits, state.clock());
  if (!admission.ok) {
    const message = `${admission.limit} budget exhausted for ${peer.principal}; retry in ${admission.retryAfterSeconds}s`;
    await record(state, ctx, 429, message);
    state.metrics.denials.inc({ reason: "budget" });
    throw new GatewayError(429, "budget", "rate_limit_error", "rate_limit_exceeded", message, { "retry-after": String(admission.retryAfterSeconds) });
  }

  // 5. route (before the record, so that the record carries the 404)
  const upstream = state.runners.route(shape.model);
  if (upstream === undefined) {
    const message = `model ${JSON.stringify(shape.model)} is not served by this gateway`;
    await record(state, ctx, 404, message);
    throw new GatewayError(404, "route", "invalid_request_error", "model_not_found", message);
  }

  // 6. record — sealed into the chain before anything is forwarded. Its fsync overlaps the runner's work: the
  // relay releases no byte of the answer (an error included) until the record is durable.
  const refusal = state.log.refusal;
  if (refusal !== null) throw logUnavailable(state, refusal); // a broken log: refuse before forwarding anything
  const durable = record(state, ctx, undefined, decision.reason);
  durable.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"

  // 7. relay
  const promptEstimate = fields.promptTokens ?? 0;
  const meter = tokenMeter(state, budgetKey, budgetLimits, promptEstimate);
  // The body is re-serialized only when the gateway changes it; otherwise the caller's bytes go as they came.
  let forward: string | Buffer = raw;
  if ((shape.maxTokens === undefined && ctx.path !== "/v1/embeddings") || shape.stream) {
    if (shape.maxTokens === undefined && ctx.path !== "/v1/embeddings") body.max_tokens = cap;
    if (shape.stream) body.stream_options = { ...(body.stream_options as object | null | undefined), include_usage: true };
    forward = JSON.stringify(body);
  }

  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  res.on("close", onClose);
  try {
    const call = { path: ctx.path, body: forward, headers: { "x-request-id": ctx.requestId }, signal: abort.signal };
    const outcome = shape.stream
      ? await relayStream(upstream.name, await callUpstream(upstream, call), res, meter, durable, { forwardUsage: shape.includeUsage })
      : await relayJson(upstream.name, await callUpstreamBuffered(upstream, call), res, meter, durable);
    if (outcome.stoppedForBudget || outcome.clientGone) abort.abort();
  } catch (err) {
    if (abort.signal.aborted) return; // the client left; nothing to answer
    abort.abort();
    await durable; // throws the 503 when the record could not be made durable
    const e = toUpstreamError(upstream.name, err);
    if (e instanceof UpstreamError) state.metrics.upstreamErrors.inc({ runner: upstream.name, kind: e.kind });
    throw e;
  } finally {
    res.off("close", onClose);
  }
}

function tokenMeter(state: GatewayState, key: string, limits: { tokensPerMinute?: number }, promptEstimate: number): TokenMeter {
  state.budgets.consumeTokens(key, promptEstimate, limits, state.clock());
  return {
    charge(tokens) {
      return !state.budgets.consumeTokens(key, tokens, limits, state.clock()).exhausted;
    },
    settle(usage, counted) {
      const prompt = usage.prompt_tokens ?? promptEstimate;
      const completion = usage.completion_tokens ?? counted;
      const extra = prompt - promptEstimate + (completion - counted);
      if (extra > 0) state.budgets.consumeTokens(key, extra, limits, state.clock());
      state.metrics.tokens.inc({ kind: "prompt" }, prompt);
      state.metrics.tokens.inc({ kind: "completion" }, completion);
    },
  };
}

async function listModels(state: GatewayState, req: IncomingMessage, res: ServerResponse, ctx: Context): Promise<void> {
  const wls = evaluateOptions(state.config.workloadLabels, ctx.stage);
  const decision = evaluate(ctx.policy.set, policyInput(state, req, ctx, {}), wls);
  ctx.decision = decision;
  state.metrics.decisions.inc({ decision: decision.decision });
  await record(state, ctx, decision.decision === "DENY" ? 403 : undefined, decision.reason);
  if (decision.decision === "DENY") {
    state.metrics.denials.inc({ reason: "policy" });
    throw new GatewayError(403, "policy", "permission_denied", "policy_denied", `denied by policy: ${decision.reason}`);
  }
  // A model is listed when the caller may use it on at least one inference route.
  const visible = state.runners.models().filter((model) =>
    INFERENCE_PATHS.some((path) =>
      evaluate(ctx.policy.set, policyInput(state, req, { ...ctx, method: "POST", path }, { model }), wls).decision === "ALLOW"));
  sendJson(res, 200, { object: "list", data: visible.map((id) => ({ id, object: "model", created: 0, owned_by: "edgeward" })) });
}

function policyInput(state: GatewayState, req: IncomingMessage, ctx: Context, fields: { model?: string; maxTokens?: number; stream?: boolean; promptTokens?: number }): PolicyInput {
  // On the mTLS listener XFCC is whatever the caller wrote: a policy condition on it must not be satisfiable there.
  const dropXfcc = state.trustedPeers === null;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || (dropXfcc && k === "x-forwarded-client-cert")) continue;
    headers[k] = Array.isArray(v) ? v.join(",") : v;
  }
  const socket = req.socket;
  return {
    source: { principal: ctx.principal, ip: socket.remoteAddress, remoteIp: socket.remoteAddress },
    request: {
      method: ctx.method, path: ctx.path, host: req.headers.host, port: socket.localPort, sni: (socket as TLSSocket).servername || undefined,
      headers, model: fields.model, maxTokens: fields.maxTokens, stream: fields.stream, promptTokens: fields.promptTokens,
    },
  };
}

function logUnavailable(state: GatewayState, err: Error): GatewayError {
  state.logger.error({ err: err.message }, "decision log append failed; refusing the request");
  state.metrics.denials.inc({ reason: "log" });
  return new GatewayError(503, "log", "service_unavailable", "decision_log_unavailable", "the decision log cannot be written; the gateway refuses requests it cannot record");
}

async function record(state: GatewayState, ctx: Context, status: number | undefined, reason: string): Promise<void> {
  const entry = decisionEntry({
    timeMs: state.clock(), requestId: ctx.requestId, principal: ctx.principal, method: ctx.method, path: ctx.path, model: ctx.model,
    decision: ctx.decision, revision: ctx.policy.revision, stage: ctx.stage, status, reason,
  });
  try {
    await state.log.append(entry);
  } catch (err) {
    throw logUnavailable(state, err as Error);
  }
}

function methodNotAllowed(allowed: string): GatewayError {
  return new GatewayError(405, "route", "invalid_request_error", "method_not_allowed", `method not allowed; use ${allowed}`, { allow: allowed });
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function sendError(state: GatewayState, req: IncomingMessage, res: ServerResponse, ctx: Context, err: unknown): void {
  let e: GatewayError;
  if (err instanceof GatewayError) e = err;
  else if (err instanceof UpstreamError) {
    e = err.kind === "timeout"
      ? new GatewayError(504, "upstream", "timeout", "upstream_timeout", `runner ${err.runner} did not answer in time`)
      : new GatewayError(502, "upstream", "upstream_error", "upstream_unavailable", `runner ${err.runner} is unavailable`);
  } else {
    state.logger.error({ requestId: ctx.requestId, err: (err as Error)?.message }, "internal error");
    e = new GatewayError(500, "upstream", "internal_error", "internal_error", "internal error");
  }
  if (e.status >= 500) state.logger.warn({ requestId: ctx.requestId, principal: ctx.principal, status: e.status, code: e.code }, e.message);
  if (res.headersSent) {
    // Mid-stream failure: all that can be done is end the stream with an error event.
    if (!res.writableEnded) res.end(`data: ${errorBody(e.message, e.type, e.code)}\n\ndata: [DONE]\n\n`);
    return;
  }
  const text = errorBody(e.message, e.type, e.code);
  for (const [k, v] of Object.entries(e.headers)) res.setHeader(k, v);
  // A caller that failed authentication is not kept connected.
  const close = e.check === "identity";
  if (req.complete) {
    if (close) res.setHeader("connection", "close");
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
