import { readFileSync } from "node:fs";
import type { KubeObject } from "../../src/k8s/objects.ts";
import { parseValues, render } from "../../src/k8s/render/index.ts";
import type { PolicySource, Values } from "../../src/k8s/render/index.ts";

export const EXAMPLE_VALUES_PATH = new URL("../../examples/deploy.yaml", import.meta.url).pathname;
export const EXAMPLE_POLICY_PATH = new URL("../../examples/policy.yaml", import.meta.url).pathname;
export const EXAMPLE_VALUES_TEXT = readFileSync(EXAMPLE_VALUES_PATH, "utf8");
export const EXAMPLE_POLICY: PolicySource = { text: readFileSync(EXAMPLE_POLICY_PATH, "utf8"), file: "examples/policy.yaml" };

export const MESHES = ["istio", "linkerd", "none"] as const;
export const CNIS = ["kubernetes", "calico", "cilium"] as const;
export const ENGINES = ["sigstore", "kyverno", "gatekeeper-ratify"] as const;

export interface Combo {
  mesh: Values["mesh"];
  cni: Values["cni"];
  engine: Values["admission"]["engine"];
}

export const COMBOS: Combo[] = MESHES.flatMap((mesh) => CNIS.flatMap((cni) => ENGINES.map((engine) => ({ mesh, cni, engine }))));

export function comboName(c: Combo): string {
  return `mesh ${c.mesh}, cni ${c.cni}, admission ${c.engine}`;
}

/** The example values, parsed fresh (so tests may change them). */
export function exampleValues(): Values {
  return parseValues(EXAMPLE_VALUES_TEXT, "examples/deploy.yaml");
}

export function valuesFor(c: Combo, base: Values = exampleValues()): Values {
  return { ...base, mesh: c.mesh, cni: c.cni, admission: { ...base.admission, engine: c.engine } };
}

export function renderCombo(c: Combo, policy: PolicySource = EXAMPLE_POLICY): KubeObject[] {
  return render(valuesFor(c), policy);
}

export const TRANSPORTS = ["grpc", "http"] as const;

/** A combination with values authz enabled (mesh istio only). */
export interface AuthzCombo {
  cni: Values["cni"];
  engine: Values["admission"]["engine"];
  transport: Values["authz"]["transport"];
}

export const AUTHZ_COMBOS: AuthzCombo[] = CNIS.flatMap((cni) => ENGINES.flatMap((engine) => TRANSPORTS.map((transport) => ({ cni, engine, transport }))));

export function authzComboName(c: AuthzCombo): string {
  return `mesh istio, authz ${c.transport}, cni ${c.cni}, admission ${c.engine}`;
}

/**
 * With authz.protectRunner the runner's sidecar checks every request the gateway forwards,
 * naming the gateway as the caller: the policy file must admit it (docs/istio.md).
 */
export const GATEWAY_FORWARDS_POLICY = `apiVersion: edgeward.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: gateway-forwards
  namespace: edge
spec:
  action: ALLOW
  rules:
    - from:
        - source:
            principals: ["example.org/ns/edge/sa/edgeward-gateway"]
      to:
        - operation:
            methods: ["POST"]
            paths: ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
            models: ["mistral-7b-instruct"]
`;

export const AUTHZ_POLICY: PolicySource = { text: `${EXAMPLE_POLICY.text}---\n${GATEWAY_FORWARDS_POLICY}`, file: "policy-authz.yaml" };

export function authzValuesFor(c: AuthzCombo, base: Values = exampleValues()): Values {
  return { ...valuesFor({ mesh: "istio", cni: c.cni, engine: c.engine }, base), authz: { ...base.authz, enabled: true, transport: c.transport } };
}

export function renderAuthzCombo(c: AuthzCombo, policy: PolicySource = AUTHZ_POLICY): KubeObject[] {
  return render(authzValuesFor(c), policy);
}

export function byKind(objects: readonly KubeObject[], kind: string, apiVersion?: string): KubeObject[] {
  return objects.filter((o) => o.kind === kind && (apiVersion === undefined || o.apiVersion === apiVersion));
}

export function named(objects: readonly KubeObject[], kind: string, name: string): KubeObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (o === undefined) throw new Error(`no ${kind} ${name} among ${objects.map((x) => `${x.kind}/${x.metadata.name}`).join(", ")}`);
  return o;
}

/** A loosely typed view for reading nested fields in assertions. */
export type Loose = any;
