import type { CelCondition } from "./cel.ts";
import type { IpMatcher, PortMatcher, StringMatcher } from "./match.ts";

/** The one input document the evaluator sees; the gateway and the CLI both build it. */
export interface PolicyInput {
  source: {
    /** "spiffe://td/ns/x/sa/y", or null when the peer is unauthenticated. */
    principal: string | null;
    ip?: string;
    remoteIp?: string;
  };
  request: {
    method: string;
    path: string;
    host?: string;
    port?: number;
    sni?: string;
    /** The address the request arrived on (Istio's `destination.ip`); absent where the listener does not know it. */
    destinationIp?: string;
    /** Header names are lowercase. */
    headers: Readonly<Record<string, string>>;
    model?: string;
    maxTokens?: number;
    stream?: boolean;
    promptTokens?: number;
  };
}

export interface Limits {
  maxTokens?: number;
  /** Most choices (`n`, `best_of`) one request may have generated. */
  maxChoices?: number;
  requestsPerMinute?: number;
  tokensPerMinute?: number;
}

export interface Decision {
  decision: "ALLOW" | "DENY";
  /** "<namespace>/<name>" of the deciding policy; null when nothing matched. */
  policy: string | null;
  /** 0-based index of the deciding rule within that policy. */
  rule: number | null;
  reason: string;
  /** Limits of the deciding ALLOW rule; empty otherwise. */
  limits: Limits;
  /** True when an AUDIT policy matched. */
  audit: boolean;
}

export type Action = "ALLOW" | "DENY" | "AUDIT" | "CUSTOM";

/** A positive list and its `not` twin for one attribute; null where the policy left it out. */
export interface FieldMatch<M> {
  readonly values: M | null;
  readonly notValues: M | null;
}

/** The gateway's own workload, as Istio scopes policies to it. */
export interface Workload {
  /** The Kubernetes namespace; absent: every loaded policy applies whatever its namespace (no Istio scoping). */
  readonly namespace?: string;
  /** Matched by `selector.matchLabels`; absent: no labels. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Policies here apply mesh-wide (Istio's root namespace); `istio-system` when absent. */
  readonly rootNamespace?: string;
}

export interface CompiledSource {
  readonly principals: FieldMatch<StringMatcher>;
  readonly requestPrincipals: FieldMatch<StringMatcher>;
  /** Namespaces, service accounts and trust domains are all read from the caller's principal, as Istio does. */
  readonly namespaces: FieldMatch<TextMatcher>;
  readonly serviceAccounts: FieldMatch<TextMatcher>;
  readonly trustDomains: FieldMatch<TextMatcher>;
  readonly ipBlocks: FieldMatch<IpMatcher>;
  readonly remoteIpBlocks: FieldMatch<IpMatcher>;
}

export interface CompiledOperation {
  readonly hosts: FieldMatch<StringMatcher>;
  readonly ports: FieldMatch<PortMatcher>;
  readonly methods: FieldMatch<StringMatcher>;
  readonly paths: FieldMatch<StringMatcher>;
  readonly models: FieldMatch<StringMatcher>;
}

/** The attribute a `when` key reads. `absent` is for attributes Edgeward never has (request.auth.*). */
export type ConditionAttribute =
  | { readonly kind: "header"; readonly name: string }
  | { readonly kind: "source.ip" }
  | { readonly kind: "remote.ip" }
  | { readonly kind: "source.principal" }
  | { readonly kind: "destination.ip" }
  | { readonly kind: "connection.sni" }
  | { readonly kind: "absent" };

/** StringMatcher and IpMatcher both test a string attribute. */
export interface TextMatcher {
  test(value: string): boolean;
}

export type CompiledCondition =
  | {
      readonly kind: "key";
      readonly key: string;
      readonly attribute: ConditionAttribute;
      readonly match: FieldMatch<TextMatcher>;
    }
  | { readonly kind: "port"; readonly key: string; readonly match: FieldMatch<PortMatcher> }
  | { readonly kind: "cel"; readonly cel: CelCondition };

export interface CompiledRule {
  /** null: no `from`, any source. */
  readonly from: readonly CompiledSource[] | null;
  /** null: no `to`, any operation. */
  readonly to: readonly CompiledOperation[] | null;
  readonly when: readonly CompiledCondition[];
  readonly limits: Readonly<Limits>;
  /** Still allows when the node's policy bundle has expired into the `restricted` stage. */
  readonly essential: boolean;
  readonly line: number;
}

export interface CompiledPolicy {
  /** "<namespace>/<name>". */
  readonly id: string;
  /** `metadata.namespace` ("default" when absent): where the policy applies. */
  readonly namespace: string;
  readonly apiVersion: string;
  readonly action: Action;
  /** CUSTOM only: the extension provider's name. */
  readonly provider: string | null;
  /** null: no selector, applies to every workload. */
  readonly matchLabels: Readonly<Record<string, string>> | null;
  /** `istio.io/dry-run: "true"`: never enforced. */
  readonly dryRun: boolean;
  readonly rules: readonly CompiledRule[];
  readonly file: string;
  readonly line: number;
}

export interface PolicySet {
  readonly policies: readonly CompiledPolicy[];
  readonly sources: readonly string[];
}
