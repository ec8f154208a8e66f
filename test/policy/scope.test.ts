import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { evaluate, inertPolicies, parsePolicies, policyWarnings } from "../../src/policy/index.ts";
import type { Workload } from "../../src/policy/index.ts";
import { doc, input, policies } from "./fixtures.ts";

// The gateway's workload: namespace edge, labels app=gw; Istio's default root namespace.
const EDGE: Workload = { namespace: "edge", labels: { app: "gw" } };
const allowAllIn = (namespace: string, selector?: Record<string, string>) =>
  doc([{}], { name: "allow-all", namespace, ...(selector ? { selector } : {}) });
const denyAllIn = (namespace: string) => doc([{}], { name: "deny-all", namespace, action: "DENY" });

describe("policies apply to the workloads of their own namespace (Istio scoping)", () => {
  it("Istio: a policy outside the workload's namespace does not apply (an allow-all elsewhere does not open the gateway)", () => {
    const d = evaluate(policies(allowAllIn("other")), input(), { workload: EDGE });
    assert.deepEqual([d.decision, d.policy], ["DENY", null]);
  });

  it("Istio: a DENY outside the workload's namespace does not close the gateway", () => {
    const d = evaluate(policies(denyAllIn("other"), allowAllIn("edge")), input(), { workload: EDGE });
    assert.deepEqual([d.decision, d.policy], ["ALLOW", "edge/allow-all"]);
  });

  it("Istio: a policy in the workload's namespace applies", () => {
    assert.equal(evaluate(policies(denyAllIn("edge"), allowAllIn("edge")), input(), { workload: EDGE }).policy, "edge/deny-all");
  });

  it("Istio: a policy in the root namespace applies mesh-wide, its selector matching workloads in every namespace", () => {
    assert.equal(evaluate(policies(denyAllIn("istio-system"), allowAllIn("edge")), input(), { workload: EDGE }).policy, "istio-system/deny-all");
    const selected = doc([{}], { name: "mesh-allow", namespace: "istio-system", selector: { app: "gw" } });
    assert.equal(evaluate(policies(selected), input(), { workload: EDGE }).policy, "istio-system/mesh-allow");
    const other = doc([{}], { name: "mesh-allow", namespace: "istio-system", selector: { app: "other" } });
    assert.equal(evaluate(policies(other), input(), { workload: EDGE }).decision, "DENY");
  });

  it("Istio: the root namespace is configurable (meshConfig.rootNamespace)", () => {
    const set = policies(denyAllIn("mesh-root"), allowAllIn("edge"));
    assert.equal(evaluate(set, input(), { workload: EDGE }).decision, "ALLOW");
    assert.equal(evaluate(set, input(), { workload: { ...EDGE, rootNamespace: "mesh-root" } }).policy, "mesh-root/deny-all");
  });

  it("Istio: a policy without metadata.namespace is in namespace default, which is not the gateway's", () => {
    const d = evaluate(policies(doc([{}], { name: "no-namespace" })), input(), { workload: EDGE });
    assert.equal(d.decision, "DENY");
  });

  it("without the workload's namespace every loaded policy applies, as before (selectors still count)", () => {
    const set = policies(allowAllIn("other"), denyAllIn("elsewhere"));
    assert.equal(evaluate(set, input(), { workload: { labels: { app: "gw" } } }).policy, "elsewhere/deny-all");
    assert.equal(evaluate(policies(allowAllIn("other")), input()).policy, "other/allow-all");
    assert.equal(evaluate(policies(allowAllIn("other", { app: "gw" })), input(), { workload: { labels: { app: "x" } } }).decision, "DENY");
  });

  it("the applying rules are resolved once per set and workload: a new workload object with the same content decides alike", () => {
    const set = policies(denyAllIn("other"), allowAllIn("edge"));
    for (let i = 0; i < 3; i++) {
      assert.equal(evaluate(set, input(), { workload: { namespace: "edge", labels: { app: "gw" } } }).decision, "ALLOW");
      assert.equal(evaluate(set, input(), { workload: { namespace: "other" } }).decision, "DENY");
    }
  });
});

describe("policies that can never apply are reported", () => {
  const set = policies(
    allowAllIn("edge"),
    doc([{}], { name: "elsewhere", namespace: "other" }),
    doc([{}], { name: "mesh", namespace: "istio-system" }),
    doc([{}], { name: "for-another-app", namespace: "edge", selector: { app: "billing" } }),
  );

  it("Istio: a policy in another namespace (not the root) and a selector the workload's labels cannot match never apply", () => {
    assert.deepEqual(
      inertPolicies(set, EDGE).map(({ policy, reason }) => `${policy.id}: ${reason}`),
      [
        "other/elsewhere: its namespace other is neither the gateway's (edge) nor the root namespace (istio-system)",
        "edge/for-another-app: its selector {app: billing} does not match the gateway's labels {app: gw}",
      ],
    );
  });

  it("the start-up warnings name file:line of each, and say when policies are not scoped to a namespace", () => {
    const warnings = policyWarnings(set, EDGE);
    assert.equal(warnings.length, 2);
    assert.match(warnings[0] as string, /^test\.yaml:\d+: policy other\/elsewhere never applies to this gateway: its namespace other is neither/);
    const unscoped = policyWarnings(set, { labels: { app: "gw" } });
    assert.match(unscoped[0] as string, /^workload\.namespace is not set: every loaded policy applies to this gateway whatever its metadata\.namespace/);
    assert.equal(unscoped.length, 2);
  });

  it("when the labels are not known, selectors are not reported", () => {
    assert.deepEqual(inertPolicies(set, { namespace: "edge" }, false).map(({ policy }) => policy.id), ["other/elsewhere"]);
    assert.deepEqual(inertPolicies(set, undefined, false), []);
  });
});

it("Istio: a policy annotated istio.io/dry-run is never enforced — a dry-run ALLOW opens nothing, a dry-run DENY closes nothing", () => {
  const doc = (name: string, action: string, dryRun: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: edge, annotations: {istio.io/dry-run: "${dryRun}"}}
spec: {action: ${action}, rules: [{}]}
`;
  const input = { source: { principal: "spiffe://example.org/ns/apps/sa/a" }, request: { method: "GET", path: "/v1/models", headers: {} } };
  assert.equal(evaluate(parsePolicies(doc("open", "ALLOW", "true"), "p.yaml"), input).decision, "DENY");
  assert.equal(evaluate(parsePolicies(doc("open", "ALLOW", "false"), "p.yaml"), input).decision, "ALLOW");
  const both = parsePolicies(`${doc("open", "ALLOW", "false")}---\n${doc("shut", "DENY", "TRUE")}`, "p.yaml");
  assert.equal(evaluate(both, input).decision, "ALLOW");
  assert.match(inertPolicies(both, {}).map((p) => p.reason).join(), /dry run/);
});
