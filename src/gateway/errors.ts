/**
 * Every refusal the gateway (and its ext_authz service) answers, in one table: the code, docs/gateway.md's error
 * table and the tests all read it, so a status or type can change in one place only. `type` and `code` follow
 * OpenAI's vocabulary where one exists so that OpenAI clients surface them sensibly; `check` names the stage that
 * refused, for logs and metrics.
 */
export type Check = "identity" | "parse" | "policy" | "limit" | "budget" | "capacity" | "route" | "upstream" | "log" | "internal";

export interface ErrorSpec {
  readonly status: number;
  readonly check: Check;
  readonly type: string;
  /** When it is answered, as docs/gateway.md says it. */
  readonly when: string;
}

export const GATEWAY_ERRORS = {
  invalid_json: { status: 400, check: "parse", type: "invalid_request_error", when: "the body is not one JSON object" },
  duplicate_key: { status: 400, check: "parse", type: "invalid_request_error", when: "a JSON object in the body names a key twice (runners disagree on which one counts)" },
  too_deeply_nested: { status: 400, check: "parse", type: "invalid_request_error", when: "the body nests arrays and objects deeper than 64 levels" },
  invalid_request: { status: 400, check: "parse", type: "invalid_request_error", when: "the body does not have the route's OpenAI shape; the message names the field" },
  contradictory_token_limits: { status: 400, check: "parse", type: "invalid_request_error", when: "two fields that bound the answer's length (`max_tokens`, `max_completion_tokens`, `n_predict`, `max_new_tokens`, `options.num_predict`) disagree" },
  max_tokens_exceeded: { status: 400, check: "limit", type: "invalid_request_error", when: "the requested output tokens are above the caller's cap (`limits.maxTokens`, the rule's `maxTokens`)" },
  too_many_choices: { status: 400, check: "limit", type: "invalid_request_error", when: "`n` or `best_of` is above the caller's `maxChoices`" },
  prompt_exceeds_budget: { status: 400, check: "limit", type: "invalid_request_error", when: "the prompt alone is larger than the caller's whole `tokensPerMinute` budget" },
  reservation_exceeds_budget: { status: 400, check: "limit", type: "invalid_request_error", when: "prompt + `max_tokens` × choices can never fit the caller's `tokensPerMinute` budget" },
  max_tokens_required: { status: 400, check: "limit", type: "invalid_request_error", when: "ext_authz: a request without `max_tokens` (the authorizer cannot cap an answer it does not relay)" },
  not_http: { status: 400, check: "parse", type: "invalid_request_error", when: "ext_authz: the check carries no usable HTTP request" },
  invalid_client_certificate: { status: 401, check: "identity", type: "authentication_error", when: "no client certificate, or one that is not a valid X.509-SVID of a trusted domain" },
  invalid_client_identity: { status: 401, check: "identity", type: "authentication_error", when: "ext_authz: the proxy vouches for no usable SPIFFE ID" },
  revoked_identity: { status: 401, check: "identity", type: "authentication_error", when: "the caller's SPIFFE ID or certificate serial is revoked (also ends a stream in flight)" },
  policy_denied: { status: 403, check: "policy", type: "permission_denied", when: "the policy denied the request" },
  policy_locked: { status: 403, check: "policy", type: "permission_denied", when: "the signed policy bundle expired past its grace and restricted periods" },
  body_required: { status: 403, check: "limit", type: "permission_denied", when: "ext_authz: the proxy sent no body with the check" },
  unknown_url: { status: 404, check: "route", type: "invalid_request_error", when: "no such route" },
  model_not_found: { status: 404, check: "route", type: "invalid_request_error", when: "no runner serves the model (answered after authorization)" },
  method_not_allowed: { status: 405, check: "route", type: "invalid_request_error", when: "wrong method for a known route (`Allow` says which)" },
  request_timeout: { status: 408, check: "limit", type: "invalid_request_error", when: "the body did not arrive within `limits.bodyTimeout`; the connection is closed" },
  request_too_large: { status: 413, check: "limit", type: "invalid_request_error", when: "the body is over `limits.maxBodyBytes` (or, ext_authz, partial or over `authz.maxBodyBytes`)" },
  rate_limit_exceeded: { status: 429, check: "budget", type: "rate_limit_error", when: "the request or token budget cannot hold this request now (`Retry-After` in seconds)" },
  too_many_requests_in_flight: { status: 429, check: "capacity", type: "rate_limit_error", when: "the caller already has `limits.maxInflightPerPrincipal` requests in flight" },
  too_many_connections: { status: 429, check: "capacity", type: "rate_limit_error", when: "the caller already holds `limits.maxConnectionsPerPrincipal` connections; this one is closed" },
  internal_error: { status: 500, check: "internal", type: "internal_error", when: "a fault in the gateway itself; ext_authz denies the check (over HTTP as 403: Envoy would count a 5xx as the service failing)" },
  upstream_unavailable: { status: 502, check: "upstream", type: "upstream_error", when: "the runner cannot be reached" },
  upstream_error: { status: 502, check: "upstream", type: "upstream_error", when: "the runner answered 5xx; the message says its status and its own message (`runner X answered 500: …`, one line, at most 1000 characters)" },
  upstream_invalid: { status: 502, check: "upstream", type: "upstream_error", when: "the runner answered invalid JSON" },
  upstream_too_large: { status: 502, check: "upstream", type: "upstream_error", when: "the runner's answer is over 64 MiB" },
  decision_log_unavailable: { status: 503, check: "log", type: "service_unavailable", when: "the decision log cannot be written (fail closed)" },
  gateway_busy: { status: 503, check: "capacity", type: "service_unavailable", when: "`limits.maxInflight` requests are in flight (`Retry-After: 1`)" },
  runner_busy: { status: 503, check: "capacity", type: "service_unavailable", when: "the runner's connections and queue (`runners[].maxQueued`) are full (`Retry-After: 1`)" },
  upstream_timeout: { status: 504, check: "upstream", type: "timeout", when: "the runner did not answer within its `timeout`" },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof GATEWAY_ERRORS;

/** Codes that only ever appear as the last event of a stream that was already answered 200. */
export const STREAM_ERRORS = {
  token_budget_exhausted: { type: "rate_limit_error", when: "the runner sent more tokens than the request reserved; the gateway ends the stream and cancels the runner" },
  revoked_identity: { type: "authentication_error", when: "the caller was revoked (or its trust domain's bundle no longer verifies it) while the stream ran" },
} as const;

export class GatewayError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: ErrorCode;
  readonly check: Check;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message);
    const spec: ErrorSpec = GATEWAY_ERRORS[code];
    this.name = "GatewayError";
    this.status = spec.status;
    this.type = spec.type;
    this.code = code;
    this.check = spec.check;
    this.headers = headers;
  }
}

export function errorBody(message: string, type: string, code: string): string {
  return JSON.stringify({ error: { message, type, code } });
}

/** The last event of a stream the gateway ends, then `[DONE]`. */
export function streamErrorEvents(code: keyof typeof STREAM_ERRORS, message: string): string {
  return `data: ${errorBody(message, STREAM_ERRORS[code].type, code)}\n\ndata: [DONE]\n\n`;
}

export const badRequest = (code: "invalid_json" | "duplicate_key" | "too_deeply_nested" | "invalid_request" | "contradictory_token_limits", message: string) => new GatewayError(code, message);
