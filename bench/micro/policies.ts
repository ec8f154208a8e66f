/**
 * Generators of one policy set written twice — as Edgeward AuthorizationPolicy YAML and as Cedar —
 * plus a mix of requests for both engines, so the policy microbenchmark compares like with like.
 *
 * Shape (realistic for a gateway in front of a few models): ALLOW policies of up to ten rules, one
 * policy per team namespace, two rules per service account (chat with one model, embeddings with
 * another); about 5 % of the rules are DENY rules (placed first, as operators write them) that forbid
 * a few callers the large model. With `cel`, every ALLOW rule also says `request.max_tokens <= 256`
 * and every DENY rule `request.max_tokens > 1024`; Cedar says the same with `context.max_tokens`.
 */

export interface PolicyShape {
  /** Total rules, ALLOW and DENY together. */
  rules: number;
  /** Whether each rule carries a max_tokens condition (CEL in Edgeward, `when` in Cedar). */
  cel: boolean;
  /**
   * "suffix" writes each Edgeward principal as the Istio pattern `*example.org/ns/…/sa/…`: the same
   * callers match, but the evaluator can no longer look rules up by exact principal and must try
   * them in turn — its worst case. Cedar has no such pattern for entity ids; its policies stay exact.
   */
  principals?: "exact" | "suffix";
}

/** One request of the mix, in engine-neutral terms. */
export interface BenchRequest {
  /** What the request exercises: an allow, a DENY-rule hit, or why it falls to the default deny. */
  kind: RequestKind;
  /** "spiffe://example.org/ns/…/sa/…", or null for an unauthenticated caller. */
  principal: string | null;
  method: "POST";
  path: string;
  model: string;
  maxTokens: number;
}

export type RequestKind = "allow" | "deny-rule" | "default-deny:condition" | "default-deny:model" | "default-deny:principal";

/** The rule that must decide a request: the same rule in both engines, or none for a default deny. */
export interface Expected {
  decision: "ALLOW" | "DENY";
  /** Edgeward "<namespace>/<name>" and rule index, null for a default deny. */
  policy: string | null;
  rule: number | null;
  /** The Cedar policy id of the same rule. */
  cedarId: string | null;
}

export interface GeneratedPolicies {
  shape: PolicyShape;
  /** A YAML stream of edgeward.dev/v1alpha1 AuthorizationPolicy documents. */
  edgeward: string;
  /** Cedar policies by id (one per Edgeward rule). */
  cedar: Record<string, string>;
  requests: { request: BenchRequest; expected: Expected }[];
}

const TRUST_DOMAIN = "example.org";
const RULES_PER_POLICY = 10;
const CHAT = "/v1/chat/completions";
const EMBEDDINGS = "/v1/embeddings";
const CHAT_MODELS = ["tiny", "mistral-7b-instruct", "llama-3.1-8b-instruct", "llama-3.1-70b"] as const;
const EMBEDDING_MODEL = "nomic-embed-text";
const LARGE_MODEL = "llama-3.1-70b";
const ALLOW_LIMIT = 256;
const DENY_OVER = 1024;

interface AllowRule {
  policy: string;
  rule: number;
  principal: string;
  path: string;
  model: string;
}

interface DenyRule {
  rule: number;
  principal: string;
}

const DENY_POLICY = "edge/deny-large-model";

export function generatePolicies(shape: PolicyShape): GeneratedPolicies {
  if (!Number.isSafeInteger(shape.rules) || shape.rules < 2) throw new Error("policies: need at least 2 rules");
  const denyCount = Math.max(1, Math.round(shape.rules * 0.05));
  const allow = allowRules(shape.rules - denyCount);
  // Forbid the large model to the callers spread evenly over the ALLOW rules that grant it.
  const large = allow.filter((r) => r.model === LARGE_MODEL);
  const deny: DenyRule[] = Array.from({ length: denyCount }, (_, i) => ({
    rule: i,
    principal: (large[Math.floor((i * large.length) / denyCount)] ?? (allow[0] as AllowRule)).principal,
  }));
  return {
    shape,
    edgeward: edgewardYaml(allow, deny, shape.cel, shape.principals ?? "exact"),
    cedar: cedarPolicies(allow, deny, shape.cel),
    requests: requestMix(allow, deny, shape.cel),
  };
}

function allowRules(count: number): AllowRule[] {
  const rules: AllowRule[] = [];
  for (let i = 0; i < count; i++) {
    const team = Math.floor(i / RULES_PER_POLICY);
    const account = Math.floor(i / 2);
    const chat = i % 2 === 0;
    rules.push({
      policy: `edge/team-${team}`,
      rule: i % RULES_PER_POLICY,
      principal: `spiffe://${TRUST_DOMAIN}/ns/team-${team}/sa/app-${account}`,
      path: chat ? CHAT : EMBEDDINGS,
      model: chat ? (CHAT_MODELS[account % CHAT_MODELS.length] as string) : EMBEDDING_MODEL,
    });
  }
  return rules;
}

function edgewardYaml(allow: readonly AllowRule[], deny: readonly DenyRule[], cel: boolean, principals: "exact" | "suffix"): string {
  const principal = (p: string) => (principals === "exact" ? p : `*${p.slice("spiffe://".length)}`);
  const docs: string[] = [];
  const denyRules = deny.map((d) =>
    [
      `    - from: [{source: {principals: ["${principal(d.principal)}"]}}]`,
      `      to: [{operation: {methods: ["POST"], paths: ["${CHAT}"], models: ["${LARGE_MODEL}"]}}]`,
      ...(cel ? [`      when: [{cel: "request.max_tokens > ${DENY_OVER}"}]`] : []),
    ].join("\n"),
  );
  docs.push(policyDoc(DENY_POLICY, "DENY", denyRules));
  for (let start = 0; start < allow.length; start += RULES_PER_POLICY) {
    const group = allow.slice(start, start + RULES_PER_POLICY);
    const rules = group.map((r) =>
      [
        `    - from: [{source: {principals: ["${principal(r.principal)}"]}}]`,
        `      to: [{operation: {methods: ["POST"], paths: ["${r.path}"], models: ["${r.model}"]}}]`,
        ...(cel ? [`      when: [{cel: "request.max_tokens <= ${ALLOW_LIMIT}"}]`] : []),
        `      limits: {maxTokens: ${ALLOW_LIMIT}, requestsPerMinute: 600}`,
      ].join("\n"),
    );
    docs.push(policyDoc((group[0] as AllowRule).policy, "ALLOW", rules));
  }
  return docs.join("\n---\n");
}

function policyDoc(id: string, action: "ALLOW" | "DENY", rules: readonly string[]): string {
  const [namespace, name] = id.split("/") as [string, string];
  return [
    "apiVersion: edgeward.dev/v1alpha1",
    "kind: AuthorizationPolicy",
    "metadata:",
    `  name: ${name}`,
    `  namespace: ${namespace}`,
    "spec:",
    `  action: ${action}`,
    "  rules:",
    ...rules,
  ].join("\n");
}

function cedarId(policy: string, rule: number): string {
  return `${policy}#${rule}`;
}

/** Cedar names the caller in Istio form, as Edgeward compares principals. */
function cedarPrincipal(principal: string | null): string {
  return principal === null ? "(unauthenticated)" : principal.slice("spiffe://".length);
}

function cedarPolicies(allow: readonly AllowRule[], deny: readonly DenyRule[], cel: boolean): Record<string, string> {
  const policies: Record<string, string> = {};
  for (const d of deny) {
    policies[cedarId(DENY_POLICY, d.rule)] =
      `forbid (principal == Principal::"${cedarPrincipal(d.principal)}", action == Action::"POST ${CHAT}", ` +
      `resource == Model::"${LARGE_MODEL}")${cel ? ` when { context.max_tokens > ${DENY_OVER} }` : ""};`;
  }
  for (const r of allow) {
    policies[cedarId(r.policy, r.rule)] =
      `permit (principal == Principal::"${cedarPrincipal(r.principal)}", action == Action::"POST ${r.path}", ` +
      `resource == Model::"${r.model}")${cel ? ` when { context.max_tokens <= ${ALLOW_LIMIT} }` : ""};`;
  }
  return policies;
}

/**
 * Allows deciding at the first, a quarter, half, three quarters and the last ALLOW rule, the same callers
 * asking for a model they were not granted or over their token limit, DENY-rule hits, unknown and
 * unauthenticated callers — roughly half allows. Each expectation comes from the generator's own
 * model of the rules, a third opinion besides the two engines.
 */
function requestMix(allow: readonly AllowRule[], deny: readonly DenyRule[], cel: boolean): GeneratedPolicies["requests"] {
  const requests: BenchRequest[] = [];
  const depths = [...new Set([0, 0.25, 0.5, 0.75, 1].map((f) => Math.round(f * (allow.length - 1))))];
  for (const depth of depths) {
    const r = allow[depth] as AllowRule;
    const base = { principal: r.principal, method: "POST" as const, path: r.path, model: r.model, maxTokens: 128 };
    for (let i = 0; i < 3; i++) requests.push({ kind: "allow", ...base });
    requests.push({ kind: "default-deny:model", ...base, model: "gpt-4o" });
    requests.push({ kind: "default-deny:condition", ...base, maxTokens: 512 });
  }
  for (const d of [deny[0], deny[deny.length - 1]] as DenyRule[]) {
    requests.push({ kind: "deny-rule", principal: d.principal, method: "POST", path: CHAT, model: LARGE_MODEL, maxTokens: 2048 });
  }
  const stranger = { kind: "default-deny:principal" as const, method: "POST" as const, path: CHAT, model: "tiny", maxTokens: 128 };
  requests.push({ ...stranger, principal: `spiffe://${TRUST_DOMAIN}/ns/team-x/sa/intruder` });
  requests.push({ ...stranger, principal: "spiffe://other.org/ns/team-0/sa/app-0" });
  requests.push({ ...stranger, principal: null });
  return requests.map((request) => ({ request, expected: decide(allow, deny, cel, request) }));
}

/** The generator's model of both policy sets: DENY rules first, then the first ALLOW rule in order. */
function decide(allow: readonly AllowRule[], deny: readonly DenyRule[], cel: boolean, q: BenchRequest): Expected {
  for (const d of deny) {
    if (q.principal === d.principal && q.path === CHAT && q.model === LARGE_MODEL && (!cel || q.maxTokens > DENY_OVER)) {
      return { decision: "DENY", policy: DENY_POLICY, rule: d.rule, cedarId: cedarId(DENY_POLICY, d.rule) };
    }
  }
  for (const r of allow) {
    if (q.principal === r.principal && q.path === r.path && q.model === r.model && (!cel || q.maxTokens <= ALLOW_LIMIT)) {
      return { decision: "ALLOW", policy: r.policy, rule: r.rule, cedarId: cedarId(r.policy, r.rule) };
    }
  }
  return DEFAULT_DENY;
}

const DEFAULT_DENY: Expected = { decision: "DENY", policy: null, rule: null, cedarId: null };

/** The request as Cedar's `isAuthorized` takes it (without the policies). */
export function cedarRequest(r: BenchRequest): {
  principal: { type: string; id: string };
  action: { type: string; id: string };
  resource: { type: string; id: string };
  context: { max_tokens: number };
} {
  return {
    principal: { type: "Principal", id: cedarPrincipal(r.principal) },
    action: { type: "Action", id: `${r.method} ${r.path}` },
    resource: { type: "Model", id: r.model },
    context: { max_tokens: r.maxTokens },
  };
}
