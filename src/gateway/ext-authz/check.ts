import { randomUUID } from "node:crypto";
import type { DecisionEntry } from "../../decision-log/index.ts";
import { parseSpiffeId, SpiffeIdError, XfccError, xfccIdentity, type SpiffeId } from "../../identity/index.ts";
import { INFERENCE_PATHS, type InferencePath } from "../../policy/index.ts";
import { DecisionCore, type CoreState, type Exchange, type RequestFacts } from "../decision-core.ts";
import { GatewayError, errorBody } from "../errors.ts";
import type { AuthzMetrics, AuthzTransport } from "./metrics.ts";

/** What a check needs of the gateway's state: the same policy, ladder, budgets and decision log, read live. */
export type AuthzState = CoreState;

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
  /** The address the caller connected to (the proxy's destination). */
  destinationIp?: string;
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

/**
 * Envoy's external authorization check, run through the gateway's own stages (decision-core.ts): authenticate (the
 * identity Envoy vouches for), revoked, locked, parse (the buffered body), authorize, limits, budget, record.
 * Nothing here does I/O but the decision-log append, and every check is recorded. Any internal error is a deny.
 */
export class Authorizer {
  readonly state: AuthzState;
  readonly metrics: AuthzMetrics;
  readonly core: DecisionCore;
  readonly #maxBodyBytes: number;

  constructor(state: AuthzState, metrics: AuthzMetrics, options: { maxBodyBytes: number }) {
    this.state = state;
    this.metrics = metrics;
    this.core = new DecisionCore(state);
    this.#maxBodyBytes = options.maxBodyBytes;
  }

  async check(input: CheckInput): Promise<CheckResult> {
    const started = performance.now();
    const ex = this.core.begin(input.method === "" ? "NONE" : input.method, input.path, requestIdOf(input.headers));
    let result: CheckResult;
    let outcome: "allow" | "deny" | "error";
    try {
      await this.#decide(input, ex);
      result = {
        allowed: true, status: 200, body: "", message: ex.decision!.reason, requestId: ex.requestId, record: ex.record,
        headers: { "x-edgeward-decision": "allow", "x-edgeward-principal": ex.principal!, "x-edgeward-request-id": ex.requestId },
      };
      outcome = "allow";
    } catch (err) {
      if (err instanceof GatewayError) {
        result = deny(ex, err, err.code === "decision_log_unavailable" ? null : ex.record);
        outcome = "deny";
      } else {
        result = await this.#internalError(ex, err);
        outcome = "error";
      }
    }
    this.metrics.checks.inc({ transport: input.transport, decision: outcome });
    this.metrics.duration.observe({ transport: input.transport }, (performance.now() - started) / 1000);
    return result;
  }

  async #decide(input: CheckInput, ex: Exchange): Promise<void> {
    const { core } = this;
    if (input.method === "" || !input.path.startsWith("/")) {
      return core.refuse(ex, new GatewayError("not_http", "the check carries no usable HTTP request (a method, and a path that starts with \"/\" — for the HTTP service, under the configured pathPrefix)"));
    }

    // Authenticate: the identity the proxy vouches for (it terminated the caller's mTLS).
    const who = resolveIdentity(input.identity);
    if (!who.ok) return core.refuse(ex, new GatewayError("invalid_client_identity", `caller identity rejected: ${who.message}`));
    await core.authenticated(ex, who.id.uri, null);

    const facts: RequestFacts = { headers: input.headers, host: input.host, port: input.port, sourceIp: input.sourceIp, destinationIp: input.destinationIp };
    // Only the OpenAI routes have a body the policy reads.
    if (input.method !== "POST" || !INFERENCE.has(ex.path)) {
      await core.authorize(ex, facts, {});
      return core.recordAllow(ex);
    }
    const refusal = bodyProblem(input, this.#maxBodyBytes);
    if (refusal !== null) return core.refuse(ex, refusal);
    const body = Buffer.isBuffer(input.body) ? input.body : Buffer.from(input.body!, "utf8");
    const request = await core.parse(ex, ex.path as InferencePath, body);
    const decision = await core.authorize(ex, facts, core.fields(request));
    // Edgeward does not relay the request, so it can neither cap the answer nor count its tokens: the request must
    // state its bound, and all it may use stays reserved.
    const grant = await core.limit(ex, request, decision, { mustBound: true });
    await core.reserve(ex, grant);
    // Record: durable before the allow is answered.
    return core.recordAllow(ex);
  }

  async #internalError(ex: Exchange, err: unknown): Promise<CheckResult> {
    const { state } = this;
    state.logger.error({ requestId: ex.requestId, err: (err as Error)?.message }, "ext_authz internal error; denying the check");
    const e = new GatewayError("internal_error", "internal error in the authorizer; the request is denied");
    try {
      await this.core.refuse(ex, e);
    } catch (refused) {
      // The deny stands; recorded unless the log itself failed.
      if (refused instanceof GatewayError && refused.code === "decision_log_unavailable") return deny(ex, e, null);
    }
    return deny(ex, e, ex.record);
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
    return new GatewayError("body_required",
      "the proxy sent no request body with the check, so the model, max_tokens and stream cannot be checked; enable includeRequestBodyInCheck (with_request_body)");
  }
  if (input.partial) {
    return new GatewayError("request_too_large",
      "the proxy sent only part of the request body (x-envoy-auth-partial-body: true); body conditions cannot be checked on a partial body");
  }
  const size = Buffer.isBuffer(input.body) ? input.body.length : Buffer.byteLength(input.body, "utf8");
  if (size > maxBodyBytes) {
    return new GatewayError("request_too_large", `request body is larger than the authorizer's ${maxBodyBytes}-byte limit`);
  }
  return null;
}

function deny(ex: Exchange, e: GatewayError, record: DecisionEntry | null): CheckResult {
  return {
    allowed: false, status: e.status, message: e.message, requestId: ex.requestId, record,
    headers: { "content-type": "application/json", "x-edgeward-decision": "deny", "x-edgeward-request-id": ex.requestId, ...e.headers },
    body: errorBody(e.message, e.type, e.code),
  };
}

/** Envoy's (or Istio's) x-request-id, so the record matches the proxy's access log; a fresh id when it is unusable. */
function requestIdOf(headers: Readonly<Record<string, string>>): string {
  const id = Object.hasOwn(headers, "x-request-id") ? headers["x-request-id"] : undefined;
  return id !== undefined && REQUEST_ID.test(id) ? id : randomUUID();
}
