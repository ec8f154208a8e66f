import type { CelInput } from "@bufbuild/cel";
import { celBindings, namespaceOf } from "./cel.ts";
import { fieldMatches } from "./match.ts";
import type {
  CompiledCondition,
  CompiledOperation,
  CompiledPolicy,
  CompiledRule,
  CompiledSource,
  Decision,
  PolicyInput,
  PolicySet,
} from "./types.ts";

export interface EvaluateOptions {
  /** The gateway's own workload labels; policies whose selector does not match are ignored. */
  workloadLabels?: Readonly<Record<string, string>>;
}

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});
const HOST_WITH_PORT = /^(\[[^\]]*\]|[^:]*):\d+$/;

/** The attributes of one request, derived once per evaluation (CEL bindings only if a CEL condition runs). */
class RequestView {
  readonly input: PolicyInput;
  readonly principal: string | undefined;
  readonly namespace: string | undefined;
  readonly remoteIp: string | undefined;
  readonly path: string;
  readonly host: string | undefined;
  readonly hostWithoutPort: string | undefined;
  /** The CEL failure of the rule being evaluated. */
  ruleFailure: string | null = null;
  /** The CEL failure to explain: of the deciding rule, or the first one met. */
  celFailure: string | null = null;
  private bindings: Record<string, CelInput> | null = null;

  constructor(input: PolicyInput) {
    this.input = input;
    const p = input.source.principal;
    this.principal = p ? (p.startsWith("spiffe://") ? p.slice(9) : p) : undefined;
    this.namespace = this.principal === undefined ? undefined : namespaceOf(this.principal);
    this.remoteIp = input.source.remoteIp ?? input.source.ip;
    this.path = withoutQuery(input.request.path);
    this.host = input.request.host;
    const m = this.host === undefined ? null : HOST_WITH_PORT.exec(this.host);
    this.hostWithoutPort = m ? m[1] : undefined;
  }

  cel(): Record<string, CelInput> {
    this.bindings ??= celBindings(this.input);
    return this.bindings;
  }

  header(name: string): string | undefined {
    const h = this.input.request.headers;
    return Object.hasOwn(h, name) ? h[name] : undefined;
  }
}

/**
 * Decides one request. Order as in Istio: CUSTOM, then DENY, then ALLOW; AUDIT only marks.
 * Unlike Istio, no matching ALLOW is a DENY even when no ALLOW policy exists (zero trust).
 * When several ALLOW rules match, the first in file order decides (and supplies the limits).
 */
export function evaluate(set: PolicySet, input: PolicyInput, options: EvaluateOptions = {}): Decision {
  const labels = options.workloadLabels ?? NO_LABELS;
  const view = new RequestView(input);

  let audit = false;
  for (const policy of set.policies) {
    if (policy.action === "AUDIT" && applies(policy, labels) && firstMatchingRule(policy, view) !== -1) {
      audit = true;
      break;
    }
  }

  for (const policy of set.policies) {
    if (policy.action !== "CUSTOM" || !applies(policy, labels)) continue;
    const rule = firstMatchingRule(policy, view);
    if (rule !== -1) {
      return deny(policy, rule, `CUSTOM authorization provider ${policy.provider} is not available`, audit);
    }
  }

  for (const policy of set.policies) {
    if (policy.action !== "DENY" || !applies(policy, labels)) continue;
    view.celFailure = null;
    const rule = firstMatchingRule(policy, view);
    if (rule !== -1) {
      const why = view.celFailure === null ? "" : ` (${view.celFailure}; a failed condition counts as a match in DENY)`;
      return deny(policy, rule, `denied by DENY policy ${policy.id} rule ${rule}${why}`, audit);
    }
  }

  let allowFailure: string | null = null;
  for (const policy of set.policies) {
    if (policy.action !== "ALLOW" || !applies(policy, labels)) continue;
    view.celFailure = null;
    const rule = firstMatchingRule(policy, view);
    if (rule !== -1) {
      return {
        decision: "ALLOW",
        policy: policy.id,
        rule,
        reason: `allowed by ALLOW policy ${policy.id} rule ${rule}`,
        limits: { ...(policy.rules[rule] as CompiledRule).limits },
        audit,
      };
    }
    allowFailure ??= view.celFailure;
  }
  const why = allowFailure === null ? "" : `; ${allowFailure} (a failed condition counts as no match in ALLOW)`;
  return { decision: "DENY", policy: null, rule: null, reason: `no ALLOW policy matched (default deny)${why}`, limits: {}, audit };
}

function withoutQuery(path: string): string {
  const q = path.indexOf("?");
  const h = path.indexOf("#");
  const end = q === -1 ? h : h === -1 ? q : Math.min(q, h);
  return end === -1 ? path : path.slice(0, end);
}

function deny(policy: CompiledPolicy, rule: number, reason: string, audit: boolean): Decision {
  return { decision: "DENY", policy: policy.id, rule, reason, limits: {}, audit };
}

function applies(policy: CompiledPolicy, labels: Readonly<Record<string, string>>): boolean {
  const want = policy.matchLabels;
  if (want === null) return true;
  for (const key in want) {
    if (!Object.hasOwn(labels, key) || labels[key] !== want[key]) return false;
  }
  return true;
}

function firstMatchingRule(policy: CompiledPolicy, view: RequestView): number {
  // A CEL failure fails closed: it matches in DENY, CUSTOM and AUDIT, and not in ALLOW.
  const failedCelMatches = policy.action !== "ALLOW";
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    view.ruleFailure = null;
    if (ruleMatches(rules[i] as CompiledRule, view, failedCelMatches, policy.id, i)) {
      view.celFailure = view.ruleFailure;
      return i;
    }
    view.celFailure ??= view.ruleFailure;
  }
  return -1;
}

function ruleMatches(rule: CompiledRule, view: RequestView, failedCelMatches: boolean, id: string, index: number): boolean {
  if (rule.to !== null && !anyOperation(rule.to, view)) return false;
  if (rule.from !== null && !anySource(rule.from, view)) return false;
  // Key conditions are cheap; CEL runs last.
  for (const c of rule.when) {
    if (c.kind === "key" ? !conditionMatches(c, view) : c.kind === "port" && !fieldMatches(c.match, view.input.request.port)) {
      return false;
    }
  }
  for (const c of rule.when) {
    if (c.kind !== "cel") continue;
    const result = c.cel.evaluate(view.cel());
    if (result === true) continue;
    if (result === false) return false;
    view.ruleFailure ??= `CEL condition in ${id} rule ${index} failed: ${result}`;
    if (!failedCelMatches) return false;
  }
  return true;
}

function anySource(sources: readonly CompiledSource[], view: RequestView): boolean {
  for (const s of sources) {
    if (
      fieldMatches(s.principals, view.principal) &&
      fieldMatches(s.namespaces, view.namespace) &&
      // No JWT authentication in the gateway: the request principal is always absent.
      fieldMatches(s.requestPrincipals, undefined) &&
      fieldMatches(s.ipBlocks, view.input.source.ip) &&
      fieldMatches(s.remoteIpBlocks, view.remoteIp)
    ) {
      return true;
    }
  }
  return false;
}

function anyOperation(operations: readonly CompiledOperation[], view: RequestView): boolean {
  const req = view.input.request;
  for (const o of operations) {
    if (
      fieldMatches(o.methods, req.method) &&
      fieldMatches(o.paths, view.path) &&
      hostMatches(o, view) &&
      fieldMatches(o.ports, req.port) &&
      fieldMatches(o.models, req.model)
    ) {
      return true;
    }
  }
  return false;
}

/** A host pattern matches the Host header with or without its port. */
function hostMatches(o: CompiledOperation, view: RequestView): boolean {
  const { values, notValues } = o.hosts;
  const host = view.host;
  const bare = view.hostWithoutPort;
  if (values !== null && (host === undefined || !(values.test(host) || (bare !== undefined && values.test(bare))))) return false;
  if (notValues !== null && host !== undefined && (notValues.test(host) || (bare !== undefined && notValues.test(bare)))) return false;
  return true;
}

function conditionMatches(c: Extract<CompiledCondition, { kind: "key" }>, view: RequestView): boolean {
  const a = c.attribute;
  switch (a.kind) {
    case "header":
      return fieldMatches(c.match, view.header(a.name));
    case "source.ip":
      return fieldMatches(c.match, view.input.source.ip);
    case "remote.ip":
      return fieldMatches(c.match, view.remoteIp);
    case "source.namespace":
      return fieldMatches(c.match, view.namespace);
    case "source.principal":
      return fieldMatches(c.match, view.principal);
    case "connection.sni":
      return fieldMatches(c.match, view.input.request.sni);
    case "absent":
      return fieldMatches(c.match, undefined);
  }
}
