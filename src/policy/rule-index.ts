import { appliesTo } from "./scope.ts";
import type { Action, CompiledPolicy, CompiledRule, PolicySet, Workload } from "./types.ts";

/** One rule of the set, with what the evaluator needs when it decides. */
export interface Candidate {
  readonly policy: CompiledPolicy;
  readonly rule: CompiledRule;
  /** 0-based index of the rule within its policy. */
  readonly index: number;
  /** A CEL failure counts as a match in DENY, CUSTOM and AUDIT (fail closed), not in ALLOW. */
  readonly failedCelMatches: boolean;
}

/**
 * The rules of one action that can match a caller, in file order. Most policies name their callers
 * exactly, so a request only visits the rules naming its principal and the rules that do not pin
 * the principal to exact values; every other rule would fail its `from` check before any
 * condition runs, so skipping it changes neither the decision nor the reason.
 */
export class ActionRules {
  /** Per principal (Istio form): its rules merged in file order with `anyPrincipal`. */
  readonly #byPrincipal: ReadonlyMap<string, readonly Candidate[]>;
  /** Rules that may match a caller whatever its exact principal. */
  readonly #anyPrincipal: readonly Candidate[];

  constructor(rules: readonly Candidate[]) {
    const keyed = new Map<string, Candidate[]>();
    const any: Candidate[] = [];
    for (const c of rules) {
      const principals = exactPrincipals(c.rule);
      if (principals === null) {
        any.push(c);
        for (const list of keyed.values()) list.push(c);
        continue;
      }
      for (const p of principals) {
        let list = keyed.get(p);
        if (list === undefined) keyed.set(p, (list = [...any]));
        list.push(c);
      }
    }
    this.#byPrincipal = keyed;
    this.#anyPrincipal = any;
  }

  /** The rules that may match a caller with this principal (Istio form; undefined: unauthenticated). */
  for(principal: string | undefined): readonly Candidate[] {
    return (principal === undefined ? undefined : this.#byPrincipal.get(principal)) ?? this.#anyPrincipal;
  }
}

/**
 * The principals a rule can match when every source of its `from` lists only exact principals
 * (Istio's `"*"`, prefix and suffix patterns match open sets); null when the rule is not pinned so.
 * The empty principal never matches, so it is left out.
 */
function exactPrincipals(rule: CompiledRule): ReadonlySet<string> | null {
  if (rule.from === null) return null;
  const all = new Set<string>();
  for (const source of rule.from) {
    const exact = source.principals.values?.exactValues ?? null;
    if (exact === null) return null;
    for (const p of exact) if (p !== "") all.add(p);
  }
  return all;
}

export interface RuleIndex {
  readonly audit: ActionRules;
  readonly custom: ActionRules;
  readonly deny: ActionRules;
  readonly allow: ActionRules;
}

/** The indexes of one set: by workload object, and by the workload's content for callers that build a new one each time. */
interface SetIndexes {
  readonly byObject: WeakMap<Workload, RuleIndex>;
  readonly byContent: Map<string, RuleIndex>;
}

// Built on a set's first evaluation for a workload and kept as long as the set lives; a PolicySet is immutable.
const indexes = new WeakMap<PolicySet, SetIndexes>();
const NO_WORKLOAD: Workload = Object.freeze({});

/**
 * The rules of the policies that apply to the workload (Istio's namespace and selector scoping, resolved here once
 * rather than per request), indexed per action.
 */
export function ruleIndex(set: PolicySet, workload: Workload = NO_WORKLOAD): RuleIndex {
  let forSet = indexes.get(set);
  if (forSet === undefined) indexes.set(set, (forSet = { byObject: new WeakMap(), byContent: new Map() }));
  let index = forSet.byObject.get(workload);
  if (index === undefined) {
    const key = contentKey(workload);
    index = forSet.byContent.get(key);
    if (index === undefined) forSet.byContent.set(key, (index = buildIndex(set, workload)));
    forSet.byObject.set(workload, index);
  }
  return index;
}

function contentKey(w: Workload): string {
  const labels = w.labels ?? {};
  return JSON.stringify([w.namespace ?? null, w.rootNamespace ?? null, Object.keys(labels).sort().map((k) => [k, labels[k]])]);
}

function buildIndex(set: PolicySet, workload: Workload): RuleIndex {
  const applying = set.policies.filter((policy) => appliesTo(policy, workload));
  const rulesOf = (action: Action) =>
    new ActionRules(
      applying
        .filter((policy) => policy.action === action)
        .flatMap((policy) => policy.rules.map((rule, i) => ({ policy, rule, index: i, failedCelMatches: action !== "ALLOW" }))),
    );
  return { audit: rulesOf("AUDIT"), custom: rulesOf("CUSTOM"), deny: rulesOf("DENY"), allow: rulesOf("ALLOW") };
}
