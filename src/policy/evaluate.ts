import type { CelInput } from "@bufbuild/cel";
import { celBindings } from "./cel.ts";
import { fieldMatches } from "./match.ts";
import { ruleIndex } from "./rule-index.ts";
import type { Candidate } from "./rule-index.ts";
import type {
  CompiledCondition,
  CompiledOperation,
  CompiledRule,
  CompiledSource,
  Decision,
  PolicyInput,
  PolicySet,
  Workload,
} from "./types.ts";

export interface EvaluateOptions {
  /**
   * The gateway's own workload: only the policies of its namespace (or the root namespace) whose selector matches its
   * labels apply. The applying rules are indexed once per set and workload, so pass the same object every time.
   */
  workload?: Workload;
  /**
   * Only rules marked `essential: true` may allow (the `restricted` stage of an expired policy bundle). DENY and
   * CUSTOM policies apply as always.
   */
  essentialOnly?: boolean;
}

/** The attributes of one request, derived once per evaluation (CEL bindings only if a CEL condition runs). */
class RequestView {
  readonly input: PolicyInput;
  /** Istio form (no "spiffe://"); namespaces, service accounts and trust domains are all read from it. */
  readonly principal: string | undefined;
  readonly remoteIp: string | undefined;
  readonly path: string;
  /** The CEL failure of the rule being evaluated. */
  ruleFailure: string | null = null;
  /** The first CEL failure met by the current pass over one action's rules. */
  firstFailure: string | null = null;
  /**
   * The body has not been read: every attribute taken from it (the model, and whatever CEL reads) may still match.
   * Only `couldAllow` sets it.
   */
  readonly bodyUnknown: boolean;
  private bindings: Record<string, CelInput> | null = null;

  constructor(input: PolicyInput, bodyUnknown = false) {
    this.input = input;
    this.bodyUnknown = bodyUnknown;
    const p = input.source.principal;
    this.principal = p ? (p.startsWith("spiffe://") ? p.slice(9) : p) : undefined;
    this.remoteIp = input.source.remoteIp ?? input.source.ip;
    this.path = withoutQuery(input.request.path);
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
  const view = new RequestView(input);
  const index = ruleIndex(set, options.workload);

  const audit = firstMatch(index.audit.for(view.principal), view) !== null;

  const custom = firstMatch(index.custom.for(view.principal), view);
  if (custom !== null) {
    return deny(custom, `CUSTOM authorization provider ${custom.policy.provider} is not available`, audit);
  }

  const denied = firstMatch(index.deny.for(view.principal), view);
  if (denied !== null) {
    const failure = view.ruleFailure;
    const why = failure === null ? "" : ` (${failure}; a failed condition counts as a match in DENY)`;
    return deny(denied, `denied by DENY policy ${denied.policy.id} rule ${denied.index}${why}`, audit);
  }

  const essentialOnly = options.essentialOnly === true;
  const allowed = firstMatch(index.allow.for(view.principal), view, essentialOnly);
  if (allowed !== null) {
    const id = allowed.policy.id;
    return {
      decision: "ALLOW",
      policy: id,
      rule: allowed.index,
      reason: `allowed by ALLOW policy ${id} rule ${allowed.index}`,
      limits: { ...allowed.rule.limits },
      audit,
    };
  }
  const failure = view.firstFailure;
  const why = failure === null ? "" : `; ${failure} (a failed condition counts as no match in ALLOW)`;
  const none = essentialOnly ? "no essential ALLOW rule matched (only rules marked essential allow in the restricted stage)" : "no ALLOW policy matched (default deny)";
  return { decision: "DENY", policy: null, rule: null, reason: `${none}${why}`, limits: {}, audit };
}

/**
 * Whether some ALLOW rule could still allow this request once its body is known: every rule is tried with what the
 * body decides (the model, CEL conditions) taken as matching. False means the request is denied whatever its body
 * says, so a gateway need not read (or wait for) the body to refuse it.
 */
export function couldAllow(set: PolicySet, input: PolicyInput, options: EvaluateOptions = {}): boolean {
  const view = new RequestView(input, true);
  return firstMatch(ruleIndex(set, options.workload).allow.for(view.principal), view, options.essentialOnly === true) !== null;
}

function withoutQuery(path: string): string {
  const q = path.indexOf("?");
  const h = path.indexOf("#");
  const end = q === -1 ? h : h === -1 ? q : Math.min(q, h);
  return end === -1 ? path : path.slice(0, end);
}

function deny(c: Candidate, reason: string, audit: boolean): Decision {
  return { decision: "DENY", policy: c.policy.id, rule: c.index, reason, limits: {}, audit };
}

/**
 * The first matching rule among `candidates` (in file order; only policies that apply are candidates), or null.
 * Afterwards `view.ruleFailure` is the CEL failure of the matching rule and `view.firstFailure` the
 * first CEL failure met, which is what an ALLOW-less default deny explains.
 */
function firstMatch(candidates: readonly Candidate[], view: RequestView, essentialOnly = false): Candidate | null {
  view.firstFailure = null;
  for (const c of candidates) {
    if (essentialOnly && !c.rule.essential) continue;
    view.ruleFailure = null;
    if (ruleMatches(c.rule, view, c.failedCelMatches, c.policy.id, c.index)) return c;
    view.firstFailure ??= view.ruleFailure;
  }
  return null;
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
  if (view.bodyUnknown) return true;
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
  const p = view.principal;
  for (const s of sources) {
    if (
      fieldMatches(s.principals, p) &&
      fieldMatches(s.namespaces, p) &&
      fieldMatches(s.serviceAccounts, p) &&
      fieldMatches(s.trustDomains, p) &&
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
      fieldMatches(o.hosts, req.host) &&
      fieldMatches(o.ports, req.port) &&
      (view.bodyUnknown || fieldMatches(o.models, req.model))
    ) {
      return true;
    }
  }
  return false;
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
    case "source.principal":
      return fieldMatches(c.match, view.principal);
    case "destination.ip":
      return fieldMatches(c.match, view.input.request.destinationIp);
    case "connection.sni":
      return fieldMatches(c.match, view.input.request.sni);
    case "absent":
      return fieldMatches(c.match, undefined);
  }
}
