import { randomUUID } from "node:crypto";
import type { DecisionEntry } from "../../audit/index.ts";
import type { Stage } from "../../bundle/index.ts";
import { parseSpiffeId, SpiffeIdError, XfccError, xfccIdentity, type SpiffeId } from "../../identity/index.ts";
import { evaluate, openAIRequestFields, type Decision, type OpenAIRequestFields, type PolicyInput } from "../../policy/index.ts";
import { parseJsonObject } from "../body.ts";
import { decisionEntry, effectiveLimits, evaluateOptions } from "../decision.ts";
import { GatewayError, errorBody } from "../errors.ts";
import { INFERENCE_PATHS, checkRequestShape, type InferencePath, type InferenceRequest } from "../request-shape.ts";
import type { ActivePolicy, GatewayState } from "../state.ts";
import type { AuthzMetrics, AuthzTransport } from "./metrics.ts";

/** What a check needs of the gateway's state: the same policy, ladder, budgets and decision log, read live. */
export type AuthzState = Pick<GatewayState, "config" | "policy" | "ladder" | "log" | "budgets" | "metrics" | "logger" | "clock">;

/** Where the caller's identity comes from: Envoy's `source.principal`, or the XFCC header the sidecar set. */
export type CheckIdentity =
  | { from: "source"; principal: string | undefined }
  | { from: "xfcc"; header: string | undefined };

/** One check, whichever transport carried it. */
export interface CheckInput {
  transport: AuthzTransport;
  identity: CheckIdentity;
  method: string;
  /** The original request target: path and query. */
  path: string;
  host: string | undefined;
  /** Lower-case names. */
  headers: Readonly<Record<string, string>>;
  /** The request body Envoy buffered, or undefined when it sent none (no `includeRequestBodyInCheck`). */
  body: string | Buffer | undefined;
  /** Envoy's `x-envoy-auth-partial-body: true`: the body was cut at the proxy's max request bytes. */
  partial: boolean;
  sourceIp?: string;
  port?: number;
}

export interface CheckResult {
  allowed: boolean;
  /** 200 when allowed; otherwise the status Envoy should answer the client with. */
  status: number;
  /** Allowed: headers to set on the request sent upstream. Denied: headers for the client's answer. */
  headers: Record<string, string>;
  /** Denied: an OpenAI-style error body. */
  body: string;
  /** Why, in words: the deciding rule, or what was refused. */
  message: string;
  requestId: string;
  /** The record written to the decision log; null when it could not be written (the check is then denied). */
  record: DecisionEntry | null;
}

const INFERENCE = new Set<string>(INFERENCE_PATHS);
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

interface Context {
  /** The policy in force when the check arrived; one policy throughout. */
  policy: ActivePolicy;
  stage: Stage | undefined;
  requestId: string;
  method: string;
  path: string;
  principal: string | null;
  model: string | null;
  decision: Decision | null;
}

/**
 * Envoy's external authorization check, mapped onto the gateway's own stages: authenticate (the identity Envoy
 * vouches for), parse (the buffered body, OpenAI shape), authorize (the same `evaluate`), limits and budgets, record.
 * Nothing here does I/O but the decision-log append, and every check is recorded. Any internal error is a deny.
 */
export class Authorizer {
  readonly state: AuthzState;
  readonly metrics: AuthzMetrics;
  readonly #maxBodyBytes: number;

  constructor(state: AuthzState, metrics: AuthzMetrics, options: { maxBodyBytes: number }) {
    this.state = state;
    this.metrics = metrics;
    this.#maxBodyBytes = options.maxBodyBytes;
  }

  async check(input: CheckInput): Promise<CheckResult> {
    const started = performance.now();
    const ctx: Context = {
      policy: this.state.policy, stage: undefined, requestId: requestIdOf(input.headers),
      method: input.method === "" ? "NONE" : input.method, path: withoutQuery(input.path), principal: null, model: null, decision: null,
    };
    let result: CheckResult;
    let outcome: "allow" | "deny" | "error";
    try {
      result = await this.#decide(input, ctx);
      outcome = result.allowed ? "allow" : "deny";
    } catch (err) {
      result = await this.#internalError(ctx, err);
      outcome = "error";
    }
    this.metrics.checks.inc({ transport: input.transport, decision: outcome });
    this.metrics.duration.observe({ transport: input.transport }, (performance.now() - started) / 1000);
    return result;
  }

  async #decide(input: CheckInput, ctx: Context): Promise<CheckResult> {
    const { state } = this;
    const metrics = state.metrics;
    if (input.method === "" || !input.path.startsWith("/")) {
      return this.#refuse(ctx, new GatewayError(400, "parse", "invalid_request_error", "not_http", "the check carries no usable HTTP request (a method, and a path that starts with \"/\" — for the HTTP service, under the configured pathPrefix)"));
    }

    // 1. authenticate: the identity the proxy vouches for (it terminated the caller's mTLS).
    const who = resolveIdentity(input.identity);
    if (!who.ok) {
      metrics.denials.inc({ reason: "identity" });
      return this.#refuse(ctx, new GatewayError(401, "identity", "authentication_error", "invalid_client_identity", `caller identity rejected: ${who.message}`));
    }
    const principal = who.id.uri;
    ctx.principal = principal;
    // Read before any record is made, so that every record of this check carries the stage.
    const ladder = state.ladder === null ? null : state.ladder.status(state.clock());
    ctx.stage = ladder?.stage;
    const revoked = ctx.policy.revocations.isRevoked({ spiffeId: principal });
    if (revoked !== null) {
      metrics.denials.inc({ reason: "revoked" });
      return this.#refuse(ctx, new GatewayError(401, "identity", "authentication_error", "revoked_identity", `caller identity rejected: ${principal} was revoked at ${revoked.revokedAt}`));
    }
    if (ladder?.stage === "locked") {
      metrics.denials.inc({ reason: "locked" });
      return this.#refuse(ctx, new GatewayError(403, "policy", "permission_denied", "policy_locked", `policy locked: ${ladder.reason}; every request is denied until a new signed bundle is activated`));
    }

    // 2. parse: only the OpenAI routes have a body the policy reads.
    let fields: OpenAIRequestFields = {};
    let shape: InferenceRequest | null = null;
    if (input.method === "POST" && INFERENCE.has(ctx.path)) {
      const refusal = bodyProblem(input, this.#maxBodyBytes);
      if (refusal !== null) {
        metrics.denials.inc({ reason: "limit" });
        return this.#refuse(ctx, refusal);
      }
      try {
        const body = parseJsonObject(Buffer.isBuffer(input.body) ? input.body : Buffer.from(input.body!, "utf8"));
        shape = checkRequestShape(ctx.path as InferencePath, body);
        fields = openAIRequestFields(body);
      } catch (err) {
        if (err instanceof GatewayError) return this.#refuse(ctx, err);
        throw err;
      }
      ctx.model = shape.model;
    }

    // 3. authorize: the same evaluation as the gateway's (pure, no I/O).
    const decision = evaluate(ctx.policy.set, policyInput(input, principal, fields), evaluateOptions(state.config.workloadLabels, ctx.stage));
    ctx.decision = decision;
    metrics.decisions.inc({ decision: decision.decision });
    if (decision.decision === "DENY") {
      metrics.denials.inc({ reason: "policy" });
      return this.#refuse(ctx, new GatewayError(403, "policy", "permission_denied", "policy_denied", `denied by policy: ${decision.reason}`), decision.reason);
    }

    // 4. limits and budgets. Edgeward does not relay the request, so it cannot cap max_tokens nor count the answer's
    // tokens: a request must name its max_tokens, and that many tokens (plus the prompt's estimate) are reserved.
    if (shape !== null) {
      const refusal = this.#admit(ctx, principal, shape, fields, decision);
      if (refusal !== null) return this.#refuse(ctx, refusal);
    }

    // 5. record: durable before the allow is answered.
    const record = decisionEntry({ ...facts(ctx, state.clock()), status: undefined, reason: decision.reason });
    const failure = await this.#append(record);
    if (failure !== null) return deny(ctx, failure, null);
    return {
      allowed: true, status: 200, body: "", message: decision.reason, requestId: ctx.requestId, record,
      headers: { "x-edgeward-decision": "allow", "x-edgeward-principal": principal, "x-edgeward-request-id": ctx.requestId },
    };
  }

  #admit(ctx: Context, principal: string, shape: InferenceRequest, fields: OpenAIRequestFields, decision: Decision): GatewayError | null {
    const { state } = this;
    const { maxTokens: cap, budget } = effectiveLimits(state.config.limits, decision);
    if (ctx.path !== "/v1/embeddings") {
      if (shape.maxTokens === undefined) {
        state.metrics.denials.inc({ reason: "limit" });
        return new GatewayError(400, "limit", "invalid_request_error", "max_tokens_required",
          `max_tokens is required: Edgeward authorizes this request without relaying it, so it cannot cap the answer (the limit for this caller is ${cap})`);
      }
      if (shape.maxTokens > cap) {
        state.metrics.denials.inc({ reason: "limit" });
        return new GatewayError(400, "limit", "invalid_request_error", "max_tokens_exceeded", `max_tokens ${shape.maxTokens} exceeds the limit of ${cap} for this caller`);
      }
    }
    const now = state.clock();
    const reservation = (fields.promptTokens ?? 0) + (shape.maxTokens ?? 0);
    const tpm = budget.tokensPerMinute;
    if (tpm !== undefined) {
      if (reservation > tpm) {
        state.metrics.denials.inc({ reason: "limit" });
        return new GatewayError(400, "limit", "invalid_request_error", "reservation_exceeds_budget",
          `the request reserves ${reservation} tokens (prompt estimate + max_tokens), more than the ${tpm}-token per-minute budget of ${principal}`);
      }
      const remaining = state.budgets.remainingTokens(principal, budget, now);
      if (remaining < reservation) {
        const retry = Math.max(1, Math.ceil(((reservation - remaining) * 60) / tpm));
        state.metrics.denials.inc({ reason: "budget" });
        return new GatewayError(429, "budget", "rate_limit_error", "rate_limit_exceeded",
          `tokensPerMinute budget exhausted for ${principal}: the request reserves ${reservation} tokens; retry in ${retry}s`, { "retry-after": String(retry) });
      }
    }
    const admission = state.budgets.admit(principal, budget, now);
    if (!admission.ok) {
      state.metrics.denials.inc({ reason: "budget" });
      return new GatewayError(429, "budget", "rate_limit_error", "rate_limit_exceeded",
        `${admission.limit} budget exhausted for ${principal}; retry in ${admission.retryAfterSeconds}s`, { "retry-after": String(admission.retryAfterSeconds) });
    }
    state.budgets.consumeTokens(principal, reservation, budget, now);
    return null;
  }

  /** Records a refusal and answers it; a refusal that cannot be recorded is answered as the log's 503. */
  async #refuse(ctx: Context, e: GatewayError, reason = e.message): Promise<CheckResult> {
    const record = decisionEntry({ ...facts(ctx, this.state.clock()), status: e.status, reason });
    const failure = await this.#append(record);
    return failure === null ? deny(ctx, e, record) : deny(ctx, failure, null);
  }

  /** Appends and waits for durability; the refusal to answer when the log cannot be written, else null. */
  async #append(record: DecisionEntry): Promise<GatewayError | null> {
    const { state } = this;
    try {
      const refusal = state.log.refusal;
      if (refusal !== null) throw refusal;
      await state.log.append(record);
      return null;
    } catch (err) {
      state.logger.error({ err: (err as Error).message }, "decision log append failed; refusing the check");
      state.metrics.denials.inc({ reason: "log" });
      return new GatewayError(503, "log", "service_unavailable", "decision_log_unavailable", "the decision log cannot be written; the authorizer denies requests it cannot record");
    }
  }

  async #internalError(ctx: Context, err: unknown): Promise<CheckResult> {
    const { state } = this;
    state.logger.error({ requestId: ctx.requestId, err: (err as Error)?.message }, "ext_authz internal error; denying the check");
    state.metrics.denials.inc({ reason: "internal" });
    const e = new GatewayError(503, "upstream", "internal_error", "internal_error", "internal error in the authorizer; the request is denied");
    let record: DecisionEntry | null = null;
    try {
      const entry = decisionEntry({ ...facts(ctx, state.clock()), status: e.status, reason: e.message });
      if (state.log.refusal === null) {
        await state.log.append(entry);
        record = entry;
      }
    } catch {
      // The deny stands, unrecorded; the log's own failure is reported by the next append.
    }
    return deny(ctx, e, record);
  }
}

type Identity = { ok: true; id: SpiffeId } | { ok: false; message: string };

function resolveIdentity(identity: CheckIdentity): Identity {
  try {
    if (identity.from === "xfcc") return { ok: true, id: xfccIdentity(identity.header) };
    if (identity.principal === undefined || identity.principal === "") {
      return { ok: false, message: "the check carries no source principal: the caller presented no client certificate to the proxy" };
    }
    return { ok: true, id: parseSpiffeId(identity.principal) };
  } catch (err) {
    if (err instanceof XfccError) return { ok: false, message: err.message };
    if (err instanceof SpiffeIdError) return { ok: false, message: `the source principal is not a SPIFFE ID (${err.message})` };
    throw err;
  }
}

/**
 * Why the body cannot be read for the policy, or null. A body Envoy did not send, or cut at its limit, is refused:
 * evaluating without it would let a DENY rule on the model or max_tokens miss.
 */
function bodyProblem(input: CheckInput, maxBodyBytes: number): GatewayError | null {
  if (input.body === undefined) {
    return new GatewayError(403, "limit", "permission_denied", "body_required",
      "the proxy sent no request body with the check, so the model, max_tokens and stream cannot be checked; enable includeRequestBodyInCheck (with_request_body)");
  }
  if (input.partial) {
    return new GatewayError(413, "limit", "invalid_request_error", "request_too_large",
      "the proxy sent only part of the request body (x-envoy-auth-partial-body: true); body conditions cannot be checked on a partial body");
  }
  const size = Buffer.isBuffer(input.body) ? input.body.length : Buffer.byteLength(input.body, "utf8");
  if (size > maxBodyBytes) {
    return new GatewayError(413, "limit", "invalid_request_error", "request_too_large", `request body is larger than the authorizer's ${maxBodyBytes}-byte limit`);
  }
  return null;
}

function policyInput(input: CheckInput, principal: string, fields: OpenAIRequestFields): PolicyInput {
  return {
    source: { principal, ip: input.sourceIp, remoteIp: input.sourceIp },
    request: {
      method: input.method, path: input.path, host: input.host, port: input.port, headers: input.headers,
      model: fields.model, maxTokens: fields.maxTokens, stream: fields.stream, promptTokens: fields.promptTokens,
    },
  };
}

function facts(ctx: Context, timeMs: number) {
  return {
    timeMs, requestId: ctx.requestId, principal: ctx.principal, method: ctx.method, path: ctx.path, model: ctx.model,
    decision: ctx.decision, revision: ctx.policy.revision, stage: ctx.stage,
  };
}

function deny(ctx: Context, e: GatewayError, record: DecisionEntry | null): CheckResult {
  return {
    allowed: false, status: e.status, message: e.message, requestId: ctx.requestId, record,
    headers: { "content-type": "application/json", "x-edgeward-decision": "deny", "x-edgeward-request-id": ctx.requestId, ...e.headers },
    body: errorBody(e.message, e.type, e.code),
  };
}

/** Envoy's (or Istio's) x-request-id, so the record matches the proxy's access log; a fresh id when it is unusable. */
function requestIdOf(headers: Readonly<Record<string, string>>): string {
  const id = Object.hasOwn(headers, "x-request-id") ? headers["x-request-id"] : undefined;
  return id !== undefined && REQUEST_ID.test(id) ? id : randomUUID();
}

function withoutQuery(path: string): string {
  const end = path.search(/[?#]/);
  return end === -1 ? path : path.slice(0, end);
}
