import { stringify } from "yaml";
import { parsePolicies } from "../../src/policy/index.ts";
import type { PolicyInput, PolicySet } from "../../src/policy/index.ts";

export const ISTIO = "security.istio.io/v1";
export const EDGEWARD = "edgeward.dev/v1alpha1";

export interface DocOptions {
  name?: string;
  namespace?: string;
  apiVersion?: string;
  action?: string;
  selector?: Record<string, string>;
  provider?: string;
}

/** One AuthorizationPolicy document as a JS object. */
export function doc(rules: unknown[] | undefined, o: DocOptions = {}): Record<string, unknown> {
  const spec: Record<string, unknown> = {};
  if (o.action !== undefined) spec.action = o.action;
  if (o.selector !== undefined) spec.selector = { matchLabels: o.selector };
  if (o.provider !== undefined) spec.provider = { name: o.provider };
  if (rules !== undefined) spec.rules = rules;
  return {
    apiVersion: o.apiVersion ?? ISTIO,
    kind: "AuthorizationPolicy",
    metadata: { name: o.name ?? "p", ...(o.namespace !== undefined ? { namespace: o.namespace } : {}) },
    spec,
  };
}

export function yamlOf(...docs: Record<string, unknown>[]): string {
  return docs.map((d) => stringify(d)).join("---\n");
}

export function policies(...docs: Record<string, unknown>[]): PolicySet {
  return parsePolicies(yamlOf(...docs), "test.yaml");
}

export type InputOverrides = {
  source?: Partial<PolicyInput["source"]>;
  request?: Partial<PolicyInput["request"]>;
};

export function input(o: InputOverrides = {}): PolicyInput {
  return {
    source: { principal: "spiffe://td.example/ns/app/sa/web", ip: "10.1.2.3", remoteIp: "203.0.113.5", ...o.source },
    request: {
      method: "POST",
      path: "/v1/chat/completions",
      host: "gw.example.org:8443",
      port: 8443,
      sni: "gw.example.org",
      headers: { "x-team": "blue" },
      model: "tiny",
      maxTokens: 100,
      stream: false,
      promptTokens: 12,
      ...o.request,
    },
  };
}
