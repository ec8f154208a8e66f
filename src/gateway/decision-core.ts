import { randomUUID } from "node:crypto";
import type { DecisionEntry } from "../decision-log/index.ts";
import type { Stage } from "../bundle/index.ts";
import type { BudgetLimits } from "../budget/index.ts";
import {
  couldAllow, evaluate, OpenAIRequestError, policyFields, readInferenceRequest,
  type Decision, type InferencePath, type InferenceRequest, type OpenAIRequestFields, type PolicyInput,
} from "../policy/index.ts";
import { decisionEntry, effectiveLimits, evaluateOptions } from "./decision.ts";
import { GatewayError } from "./errors.ts";
import { parseJsonObject } from "./json-body.ts";
import type { ActivePolicy, GatewayState } from "./state.ts";

/**
 * The stages every transport runs a request through, in the order the design fixes — authenticate → revoked →
 * locked → parse → authorize → limits → budget → record — so that the gateway's HTTPS listener, its sidecar mode
 * and the ext_authz services give the same answer and write the same record for the same request. Each stage either
 * returns what the next one needs or records the refusal and throws it as a GatewayError. Nothing here does I/O but
 * the decision-log append.
 */

/** What the stages need of the gateway's state, read live (the policy is replaced as a whole on reload). */
export type CoreState = Pick<GatewayState, "config" | "policy" | "ladder" | "log" | "budgets" | "metrics" | "logger" | "clock">;

/** One request on its way through the stages: what its records say. */
export interface Exchange {
  /** The policy in force when the request arrived; a bundle activated meanwhile applies to the next request. */
  readonly policy: ActivePolicy;
  readonly requestId: string;
  readonly method: string;
  /** Without the query string. */
  readonly path: string;
  /** Degradation stage (signed bundles only), read once so that every record of the request carries the same. */
  stage: Stage | undefined;
  principal: string | null;
  /** The client certificate's serial (null when the identity came from a header). */
  serial: string | null;
  model: string | null;
  decision: Decision | null;
  /** The last record written for the request, or null. */
  record: DecisionEntry | null;
}

/** What a transport knows of the request besides its body: the policy's connection and header attributes. */
export interface RequestFacts {
  /** Lower-case names; whatever the caller cannot be trusted to have set is already left out. */
  readonly headers: Readonly<Record<string, string>>;
  readonly host?: string;
  readonly port?: number;
  readonly sni?: string;
  readonly sourceIp?: string;
  readonly destinationIp?: string;
}

/** What an allowed inference request may use: the cap forwarded per sequence, and the tokens reserved for it. */
export interface Grant {
  /** Tokens per sequence the runner is asked for (0 for embeddings). */
  readonly cap: number;
  readonly sequences: number;
  /** Prompt estimate + cap × sequences: held from the caller's token budget until the request settles. */
  readonly reserved: number;
  readonly promptTokens: number;
  readonly budgetKey: string;
  readonly limits: BudgetLimits;
}

/**
 * Tokens a request used, to settle its reservation: as the runner reported them, or as the gateway counted them when
 * it reported none. The relay keeps it up to date as the answer passes, so that a relay failing midway still says
 * what went through; `prompt` starts as the estimate.
 */
export interface Usage {
  prompt: number;
  completion: number;
}

export class DecisionCore {
  readonly state: CoreState;

  constructor(state: CoreState) {
    this.state = state;
  }

  /** A new exchange under the policy in force now; `target` is the request target (a query is dropped). */
  begin(method: string, target: string, requestId: string = randomUUID()): Exchange {
    return {
      policy: this.state.policy, requestId, method, path: withoutQuery(target),
      stage: undefined, principal: null, serial: null, model: null, decision: null, record: null,
    };
  }

  /**
   * After the transport verified the caller: a revoked identity is refused (401, recorded), and so is every request
   * while the node is locked (403, recorded).
   */
  async authenticated(ex: Exchange, principal: string, serial: string | null): Promise<void> {
    const { state } = this;
    ex.principal = principal;
    ex.serial = serial;
    const ladder = state.ladder === null ? null : state.ladder.status(state.clock());
    ex.stage = ladder?.stage;
    const revoked = ex.policy.revocations.isRevoked(serial === null ? { spiffeId: principal } : { spiffeId: principal, serial });
    if (revoked !== null) {
      const what = revoked.kind === "serial" ? `certificate serial ${serial}` : principal;
      await this.refuse(ex, new GatewayError("revoked_identity", `caller identity rejected: ${what} was revoked at ${revoked.revokedAt}`), { reason: "revoked" });
    }
    // `locked` denies everything; `restricted` lets only essential rules allow (in authorize).
    if (ladder?.stage === "locked") {
      await this.refuse(ex, new GatewayError("policy_locked", `policy locked: ${ladder.reason}; every request is denied until a new signed bundle is activated`), { reason: "locked" });
    }
  }

  /** Parses and checks an inference body; every refusal is recorded. */
  async parse(ex: Exchange, path: InferencePath, raw: Buffer): Promise<InferenceRequest> {
    let request: InferenceRequest;
    try {
      request = readInferenceRequest(path, parseJsonObject(raw));
    } catch (err) {
      if (err instanceof OpenAIRequestError) return this.refuse(ex, new GatewayError(err.code, err.message));
      if (err instanceof GatewayError) return this.refuse(ex, err);
      throw err;
    }
    ex.model = request.model;
    return request;
  }

  /** The policy's view of a checked request: a request that sets no bound is seen with the cap it would be given. */
  fields(request: InferenceRequest): OpenAIRequestFields {
    return policyFields(request, this.state.config.limits.maxTokens);
  }

  /**
   * Before the body is read: a request that no ALLOW rule could admit, whatever its body says, is refused now (403,
   * recorded), so that a caller no rule allows cannot hold a connection and a buffer by sending a body slowly.
   */
  async prejudge(ex: Exchange, facts: RequestFacts): Promise<void> {
    const input = policyInput(ex.principal, ex.method, ex.path, facts, {});
    const options = evaluateOptions(this.state.config.workload, ex.stage);
    if (couldAllow(ex.policy.set, input, options)) return;
    // Denied whatever the body: the decision without it names the DENY rule that fired, if one did.
    const decision = evaluate(ex.policy.set, input, options);
    ex.decision = decision;
    this.state.metrics.decisions.inc({ decision: "DENY" });
    const reason = `${decision.reason}; no ALLOW rule can match ${ex.method} ${ex.path} for this caller whatever the body (decided before reading it)`;
    await this.refuse(ex, new GatewayError("policy_denied", `denied by policy: ${reason}`), { reason: "policy", recordReason: reason });
  }

  /** The policy decision; a DENY is recorded and thrown (403). */
  async authorize(ex: Exchange, facts: RequestFacts, fields: OpenAIRequestFields): Promise<Decision> {
    const decision = this.decide(ex, facts, fields);
    ex.decision = decision;
    this.state.metrics.decisions.inc({ decision: decision.decision });
    if (decision.decision === "DENY") {
      await this.refuse(ex, new GatewayError("policy_denied", `denied by policy: ${decision.reason}`), { reason: "policy", recordReason: decision.reason });
    }
    return decision;
  }

  /** Evaluates without recording (listing models asks the policy once per model). */
  decide(ex: Exchange, facts: RequestFacts, fields: OpenAIRequestFields, method = ex.method, path = ex.path): Decision {
    return evaluate(ex.policy.set, policyInput(ex.principal, method, path, facts, fields), evaluateOptions(this.state.config.workload, ex.stage));
  }

  /**
   * The limits of an allowed request: the tokens per sequence it may be answered with, how many sequences, and what
   * it reserves from the caller's budget. `mustBound`: the transport cannot rewrite the body (ext_authz), so the
   * request must state its own bound. Refusals (400) are recorded.
   */
  async limit(ex: Exchange, request: InferenceRequest, decision: Decision, options: { mustBound: boolean }): Promise<Grant> {
    const { maxTokens: ceiling, maxChoices, budget } = effectiveLimits(this.state.config.limits, decision);
    const grant = (cap: number, sequences: number) =>
      ({ cap, sequences, reserved: request.promptTokens + cap * sequences, promptTokens: request.promptTokens, budgetKey: ex.principal!, limits: budget });
    const refuse = (e: GatewayError) => this.refuse(ex, e, { reason: "limit" });
    const tpm = budget.tokensPerMinute;
    if (tpm !== undefined && request.promptTokens > tpm) {
      return refuse(new GatewayError("prompt_exceeds_budget", `the prompt (about ${request.promptTokens} tokens) is larger than the ${tpm}-token per-minute budget of ${ex.principal}`));
    }
    if (request.path === "/v1/embeddings") return grant(0, 1);

    if (request.maxTokens === undefined && options.mustBound) {
      return refuse(new GatewayError("max_tokens_required", `max_tokens is required: Edgeward authorizes this request without relaying it, so it cannot cap the answer (the limit for this caller is ${ceiling})`));
    }
    if (request.maxTokens !== undefined && request.maxTokens > ceiling) {
      return refuse(new GatewayError("max_tokens_exceeded", `max_tokens ${request.maxTokens} exceeds the limit of ${ceiling} for this caller`));
    }
    if (request.sequences > maxChoices) {
      return refuse(new GatewayError("too_many_choices", `the request asks for ${request.sequences} choices (n, best_of); the limit for this caller is ${maxChoices}`));
    }
    let cap = request.maxTokens ?? ceiling;
    if (tpm !== undefined && request.promptTokens + cap * request.sequences > tpm) {
      // A request that sets no bound is given the largest answer the budget can ever hold; one that set its own
      // bound is refused, since it could never be admitted.
      const fits = Math.floor((tpm - request.promptTokens) / request.sequences);
      if (request.maxTokens !== undefined || fits < 1) {
        return refuse(new GatewayError("reservation_exceeds_budget",
          `the request reserves ${request.promptTokens + cap * request.sequences} tokens (prompt estimate + max_tokens × ${request.sequences}), more than the ${tpm}-token per-minute budget of ${ex.principal}`));
      }
      cap = fits;
    }
    return grant(cap, request.sequences);
  }

  /** Takes the request and reserves its tokens from the caller's budgets, or refuses (429, recorded). */
  async reserve(ex: Exchange, grant: Grant): Promise<void> {
    const admission = this.state.budgets.admit(grant.budgetKey, grant.limits, this.state.clock(), grant.reserved);
    if (!admission.ok) {
      const what = admission.limit === "tokensPerMinute" ? `the request reserves ${grant.reserved} tokens; ` : "";
      await this.refuse(ex, new GatewayError("rate_limit_exceeded", `${admission.limit} budget exhausted for ${ex.principal}: ${what}retry in ${admission.retryAfterSeconds}s`,
        { "retry-after": String(admission.retryAfterSeconds) }), { reason: "budget" });
    }
  }

  /** Ends a reservation with what was used: the rest goes back to the caller's budget. */
  settle(grant: Grant, usage: Usage): void {
    const { state } = this;
    state.budgets.settle(grant.budgetKey, grant.limits, state.clock(), grant.reserved, usage.prompt + usage.completion);
    state.metrics.tokens.inc({ kind: "prompt" }, usage.prompt);
    state.metrics.tokens.inc({ kind: "completion" }, usage.completion);
  }

  /**
   * Seals the allow into the decision log before anything is forwarded; resolves once it is durable (a 503 when it
   * cannot be made so). A log that already refuses appends throws here, at once, so nothing is forwarded.
   */
  recordAllow(ex: Exchange): Promise<void> {
    const refusal = this.state.log.refusal;
    if (refusal !== null) throw this.#logUnavailable(refusal);
    return this.#record(ex, undefined, ex.decision?.reason ?? "allowed");
  }

  /** Records what happened to a request after it was allowed (cut for revocation), with the status answered. */
  recordOutcome(ex: Exchange, status: number, reason: string): Promise<void> {
    return this.#record(ex, status, reason);
  }

  /**
   * Records a refusal (unless `record: false`: an unauthenticated caller of the gateway's own listener) and throws
   * it; a refusal that cannot be recorded is thrown as the log's 503 instead.
   */
  async refuse(ex: Exchange, err: GatewayError, options: { reason?: string; record?: boolean; recordReason?: string } = {}): Promise<never> {
    this.state.metrics.denials.inc({ reason: options.reason ?? err.check });
    if (options.record !== false) await this.#record(ex, err.status, options.recordReason ?? err.message);
    throw err;
  }

  async #record(ex: Exchange, status: number | undefined, reason: string): Promise<void> {
    const entry = decisionEntry({
      timeMs: this.state.clock(), requestId: ex.requestId, principal: ex.principal, method: ex.method, path: ex.path, model: ex.model,
      decision: ex.decision, revision: ex.policy.revision, stage: ex.stage, status, reason,
    });
    try {
      await this.state.log.append(entry);
    } catch (err) {
      throw this.#logUnavailable(err as Error);
    }
    ex.record = entry;
  }

  #logUnavailable(err: Error): GatewayError {
    this.state.logger.error({ err: err.message }, "decision log append failed; refusing the request");
    this.state.metrics.denials.inc({ reason: "log" });
    return new GatewayError("decision_log_unavailable", "the decision log cannot be written; requests that cannot be recorded are refused");
  }
}

/** The one input document the policy sees, whichever transport carried the request. */
export function policyInput(principal: string | null, method: string, path: string, facts: RequestFacts, fields: OpenAIRequestFields): PolicyInput {
  return {
    source: { principal, ip: facts.sourceIp, remoteIp: facts.sourceIp },
    request: {
      method, path, host: facts.host, port: facts.port, sni: facts.sni, destinationIp: facts.destinationIp, headers: facts.headers,
      model: fields.model, maxTokens: fields.maxTokens, stream: fields.stream, promptTokens: fields.promptTokens,
    },
  };
}

function withoutQuery(target: string): string {
  const end = target.search(/[?#]/);
  return end === -1 ? target : target.slice(0, end);
}
