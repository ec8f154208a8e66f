import type { CelInput } from "@bufbuild/cel";
import { celBindings, namespaceOf } from "./cel.ts";
import { fieldMatches } from "./match.ts";
import { ruleIndex } from "./rule-index.ts";
import type { Candidate } from "./rule-index.ts";
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
  /**
   * Only rules marked `essential: true` may allow (the `restricted` stage of an expired policy bundle). DENY and
   * CUSTOM policies apply as always.
   */
  essentialOnly?: boolean;
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
  /** The CEL failure of the rule being evaluated. */
  ruleFailure: string | null = null;
  /** The first CEL failure met by the current pass over one action's rules. */
  firstFailure: string | null = null;
  private bindings: Record<string, CelInput> | null = null;
  /** Parsed on first use: most policies do not constrain hosts. */
  private bareHost: string | undefined | null = null;

  constructor(input: PolicyInput) {
    this.input = input;
    const p = input.source.principal;
    this.principal = p ? (p.startsWith("spiffe://") ? p.slice(9) : p) : undefined;
    this.namespace = this.principal === undefined ? undefined : namespaceOf(this.principal);
    this.remoteIp = input.source.remoteIp ?? input.source.ip;
    this.path = withoutQuery(input.request.path);
    this.host = input.request.host;
  }

  /** The Host header without its port, when it has one. */
  hostWithoutPort(): string | undefined {
    if (this.bareHost === null) {
      const m = this.host === undefined ? null : HOST_WITH_PORT.exec(this.host);
      this.bareHost = m ? m[1] : undefined;
    }
    return this.bareHost;
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
  const index = ruleIndex(set);

  const audit = firstMatch(index.audit.for(view.principal), labels, view) !== null;

  const custom = firstMatch(index.custom.for(view.principal), labels, view);
  if (custom !== null) {
    return deny(custom, `CUSTOM authorization provider ${custom.policy.provider} is not available`, audit);
  }

  const denied = firstMatch(index.deny.for(view.principal), labels, view);
  if (denied !== null) {
    const failure = view.ruleFailure;
    const why = failure === null ? "" : ` (${failure}; a failed condition counts as a match in DENY)`;
    return deny(denied, `denied by DENY policy ${denied.policy.id} rule ${denied.index}${why}`, audit);
  }

  const essentialOnly = options.essentialOnly === true;
  const allowed = firstMatch(index.allow.for(view.principal), labels, view, essentialOnly);
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

function withoutQuery(path: string): string {
  const q = path.indexOf("?");
  const h = path.indexOf("#");
  const end = q === -1 ? h : h === -1 ? q : Math.min(q, h);
  return end === -1 ? path : path.slice(0, end);
}

function deny(c: Candidate, reason: string, audit: boolean): Decision {
  return { decision: "DENY", policy: c.policy.id, rule: c.index, reason, limits: {}, audit };
}

function applies(policy: CompiledPolicy, labels: Readonly<Record<string, string>>): boolean {
  const want = policy.matchLabels;
  if (want === null) return true;
  for (const key in want) {
    if (!Object.hasOwn(labels, key) || labels[key] !== want[key]) return false;
  }
  return true;
}

/**
 * The first matching rule among `candidates` (in file order) of the policies that apply, or null.
 * Afterwards `view.ruleFailure` is the CEL failure of the matching rule and `view.firstFailure` the
 * first CEL failure met, which is what an ALLOW-less default deny explains.
 */
function firstMatch(candidates: readonly Candidate[], labels: Readonly<Record<string, string>>, view: RequestView, essentialOnly = false): Candidate | null {
  view.firstFailure = null;
  let policy: CompiledPolicy | null = null;
  let applied = false;
  for (const c of candidates) {
    if (c.policy !== policy) {
      policy = c.policy;
      applied = applies(policy, labels);
    }
    if (!applied || (essentialOnly && !c.rule.essential)) continue;
    view.ruleFailure = null;
    if (ruleMatches(c.rule, view, c.failedCelMatches, policy.id, c.index)) return c;
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
  if (values === null && notValues === null) return true;
  const host = view.host;
  const bare = view.hostWithoutPort();
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
