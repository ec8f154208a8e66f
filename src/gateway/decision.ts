import type { DecisionEntry } from "../decision-log/index.ts";
import type { Stage } from "../bundle/index.ts";
import type { BudgetLimits } from "../budget/index.ts";
import type { GatewayConfig } from "../config/index.ts";
import type { Decision, EvaluateOptions, Workload } from "../policy/index.ts";

/**
 * What the gateway's pipeline and the ext_authz service decide alike, so that a request gets the same answer and the
 * same record whichever way it reached Edgeward.
 */

/**
 * The evaluation options for a request: the node's workload (the config's own object, so the policy's per-workload
 * index is reused), essential rules only in the `restricted` stage.
 */
export function evaluateOptions(workload: Workload, stage: Stage | undefined): EvaluateOptions {
  return stage === "restricted" ? { workload, essentialOnly: true } : { workload };
}

/** The limits in force for an allowed request: the config's defaults, tightened by the deciding rule's own. */
export function effectiveLimits(limits: GatewayConfig["limits"], decision: Decision): { maxTokens: number; maxChoices: number; budget: BudgetLimits } {
  return {
    maxTokens: Math.min(limits.maxTokens, decision.limits.maxTokens ?? Infinity),
    maxChoices: Math.min(limits.maxChoices, decision.limits.maxChoices ?? Infinity),
    budget: {
      requestsPerMinute: minDefined(limits.requestsPerMinute, decision.limits.requestsPerMinute),
      tokensPerMinute: minDefined(limits.tokensPerMinute, decision.limits.tokensPerMinute),
    },
  };
}

/** What one decision-log record says about a request. */
export interface DecisionFacts {
  timeMs: number;
  requestId: string;
  principal: string | null;
  method: string;
  /** Without the query string. */
  path: string;
  model: string | null;
  /** The policy decision, or null when the request was refused before the policy was asked. */
  decision: Decision | null;
  revision: string | null;
  stage: Stage | undefined;
  /** The HTTP status of a refusal; undefined when the request goes on. */
  status: number | undefined;
  reason: string;
}

/** The record for a decision: any refusal with a status is a DENY, whatever the policy said. */
export function decisionEntry(f: DecisionFacts): DecisionEntry {
  const d = f.decision;
  return {
    time: new Date(f.timeMs).toISOString(),
    requestId: f.requestId,
    principal: f.principal, method: f.method, path: f.path, model: f.model,
    decision: f.status === undefined ? (d?.decision ?? "DENY") : "DENY",
    policy: d?.policy ?? null, rule: d?.rule ?? null, reason: f.reason,
    revision: f.revision,
    ...(f.stage === undefined ? {} : { stage: f.stage }),
    ...(f.status === undefined ? {} : { status: f.status }),
  };
}

function minDefined(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}
