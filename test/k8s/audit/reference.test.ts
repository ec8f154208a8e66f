import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { auditFixture, rows } from "./support.ts";

const REFERENCE = "reference-zero-trust-llm-k3s.yaml";
const VLLM = "Deployment/llm/vllm";
const C0 = "spec.template.spec.containers[0]";

describe('a published-style "zero-trust LLM on k3s" manifest', () => {
  const findings = auditFixture(REFERENCE);
  const got = rows(findings);
  const has = (id: string, key: string, path: string) => got.some(([i, k, p]) => i === id && k === key && p === path);

  it("reports the vLLM image on :latest", () => {
    assert.ok(has("zt.image-latest", VLLM, `${C0}.image`));
  });

  it("reports the missing securityContext as the restricted profile would", () => {
    assert.ok(has("pss.run-as-non-root", VLLM, "spec.template.spec.securityContext.runAsNonRoot"));
    assert.ok(has("pss.seccomp-profile-restricted", VLLM, "spec.template.spec.securityContext.seccompProfile.type"));
    assert.ok(has("pss.allow-privilege-escalation", VLLM, `${C0}.securityContext.allowPrivilegeEscalation`));
    assert.ok(has("pss.capabilities-restricted", VLLM, `${C0}.securityContext.capabilities.drop`));
  });

  it("reports the spiffe:// principal the AuthorizationPolicy can never match", () => {
    assert.ok(has("zt.spiffe-principal", "AuthorizationPolicy/llm/vllm-allow-gateway", "spec.rules[0].from[0].source.principals[0]"));
  });

  it("reports that the Calico egress policy (Prometheus/Grafana only) leaves no DNS", () => {
    assert.ok(has("zt.egress-dns", "NetworkPolicy/llm/vllm-egress", "spec.egress"));
  });

  it("reports the always-true cosign_verified rule of the Gatekeeper template", () => {
    assert.ok(has("zt.image-admission-placeholder", "ConstraintTemplate//k8ssignedimages", "spec.targets[0].rego"));
    const f = findings.find((x) => x.checkId === "zt.image-admission-placeholder");
    assert.match(f?.message ?? "", /cosign_verified always holds/);
    assert.equal(f?.severity, "critical");
  });

  it("reports the missing default deny, ingress and egress", () => {
    assert.ok(has("zt.default-deny-ingress", "Namespace//llm", ""));
    assert.ok(has("zt.default-deny-egress", "Namespace//llm", ""));
  });

  it("reports the health probe on a path vLLM does not serve", () => {
    assert.ok(has("llm.probe-path", VLLM, `${C0}.readinessProbe.httpGet.path`));
  });

  it("reports the runner reachable without passing a gateway", () => {
    assert.ok(has("llm.runner-exposed", VLLM, ""));
  });

  it("counts the mesh-wide STRICT PeerAuthentication and the selecting AuthorizationPolicy (no false mTLS/authz findings)", () => {
    assert.ok(!got.some(([id]) => id === "zt.mtls-strict" || id === "zt.authz-policy" || id === "zt.image-admission-missing"));
  });

  it("reports exactly these findings, in input order", () => {
    assert.deepEqual(got, [
      ["zt.default-deny-ingress", "Namespace//llm", ""],
      ["zt.default-deny-egress", "Namespace//llm", ""],
      ["pss.capabilities-restricted", VLLM, `${C0}.securityContext.capabilities.drop`],
      ["pss.seccomp-profile-restricted", VLLM, "spec.template.spec.securityContext.seccompProfile.type"],
      ["pss.allow-privilege-escalation", VLLM, `${C0}.securityContext.allowPrivilegeEscalation`],
      ["pss.run-as-non-root", VLLM, "spec.template.spec.securityContext.runAsNonRoot"],
      ["zt.automount-token", VLLM, "spec.template.spec.automountServiceAccountToken"],
      ["zt.image-latest", VLLM, `${C0}.image`],
      ["llm.runner-exposed", VLLM, ""],
      ["llm.probe-path", VLLM, `${C0}.readinessProbe.httpGet.path`],
      ["zt.spiffe-principal", "AuthorizationPolicy/llm/vllm-allow-gateway", "spec.rules[0].from[0].source.principals[0]"],
      ["zt.egress-dns", "NetworkPolicy/llm/vllm-egress", "spec.egress"],
      ["zt.image-admission-placeholder", "ConstraintTemplate//k8ssignedimages", "spec.targets[0].rego"],
    ]);
  });
});

describe("a hardened gateway + vLLM runner", () => {
  it("has no findings in any profile", () => {
    assert.deepEqual(rows(auditFixture("clean/hardened-llm.yaml")), []);
  });
});
