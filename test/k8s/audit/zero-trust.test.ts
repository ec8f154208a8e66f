import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { alwaysTrueRules, ZERO_TRUST_CHECKS } from "../../../src/k8s/audit/checks/zero-trust.ts";
import { audit } from "../../../src/k8s/audit/index.ts";
import { auditFixture, checkCaseTests, loadFixture, onlyCheck, rows } from "./support.ts";
import type { CheckCase } from "./support.ts";

const CASES: CheckCase[] = [
  {
    id: "zt.default-deny-ingress",
    fail: "zero-trust/default-deny-ingress.fail.yaml",
    pass: "zero-trust/default-deny-ingress.pass.yaml",
    expect: [
      ["Namespace//app", ""],
      ["Namespace//shop", ""],
    ],
  },
  {
    id: "zt.default-deny-egress",
    fail: "zero-trust/default-deny-egress.fail.yaml",
    pass: "zero-trust/default-deny-egress.pass.yaml",
    expect: [
      ["Namespace//app", ""],
      ["Namespace//ingress-only", ""],
    ],
  },
  {
    id: "zt.egress-unrestricted",
    fail: "zero-trust/egress-unrestricted.fail.yaml",
    pass: "zero-trust/egress-unrestricted.pass.yaml",
    expect: [
      ["NetworkPolicy/app/web-egress", "spec.egress[1]"],
      ["CiliumNetworkPolicy/app/web-egress", "spec.egress[0]"],
      ["NetworkPolicy/app/web-egress", "spec.egress[0]"],
    ],
  },
  {
    id: "zt.egress-dns",
    fail: "zero-trust/egress-dns.fail.yaml",
    pass: "zero-trust/egress-dns.pass.yaml",
    expect: [
      ["NetworkPolicy/app/default-deny", "spec.egress"],
      ["NetworkPolicy/other/api-egress", "spec.egress"],
    ],
  },
  {
    id: "zt.mtls-strict",
    fail: "zero-trust/mtls-strict.fail.yaml",
    pass: "zero-trust/mtls-strict.pass.yaml",
    expect: [
      ["Deployment/plain/web", ""],
      ["PeerAuthentication/perm/default", "spec.mtls.mode"],
      ["PeerAuthentication/strict/web-metrics", 'spec.portLevelMtls["9090"].mode'],
      ["Deployment/strict/legacy", 'spec.template.metadata.annotations["sidecar.istio.io/inject"]'],
    ],
  },
  {
    id: "zt.authz-policy",
    fail: "zero-trust/authz-policy.fail.yaml",
    pass: "zero-trust/authz-policy.pass.yaml",
    expect: [
      ["Deployment/a/web", ""],
      ["Deployment/b/web", ""],
    ],
  },
  {
    id: "zt.authz-allow-all",
    fail: "zero-trust/authz-allow-all.fail.yaml",
    pass: "zero-trust/authz-allow-all.pass.yaml",
    expect: [
      ["AuthorizationPolicy/app/allow-all", "spec.rules[0]"],
      ["AuthorizationPolicy/app/web", "spec.rules[1]"],
    ],
  },
  {
    id: "zt.spiffe-principal",
    fail: "zero-trust/spiffe-principal.fail.yaml",
    pass: "zero-trust/spiffe-principal.pass.yaml",
    expect: [
      ["AuthorizationPolicy/llm/runner", "spec.rules[0].from[0].source.principals[1]"],
      ["AuthorizationPolicy/llm/block-intruder", "spec.rules[0].from[0].source.notPrincipals[0]"],
    ],
  },
  {
    id: "zt.automount-token",
    fail: "zero-trust/automount-token.fail.yaml",
    pass: "zero-trust/automount-token.pass.yaml",
    expect: [
      ["ServiceAccount/app/web", "automountServiceAccountToken"],
      ["Deployment/app/uses-default", "spec.template.spec.automountServiceAccountToken"],
      ["Deployment/app/overrides", "spec.template.spec.automountServiceAccountToken"],
    ],
  },
  {
    id: "zt.secret-in-env",
    fail: "zero-trust/secret-in-env.fail.yaml",
    pass: "zero-trust/secret-in-env.pass.yaml",
    expect: [
      ["Deployment/app/api", "spec.template.spec.initContainers[0].env[1].value"],
      ["Deployment/app/api", "spec.template.spec.containers[0].env[0].value"],
      ["Deployment/app/api", "spec.template.spec.containers[0].env[2].value"],
    ],
  },
  {
    id: "zt.secret-in-configmap",
    fail: "zero-trust/secret-in-configmap.fail.yaml",
    pass: "zero-trust/secret-in-configmap.pass.yaml",
    expect: [
      ["ConfigMap/app/app-config", "data.DB_PASSWORD"],
      ["ConfigMap/app/app-config", 'data["config.yaml"]'],
      ["ConfigMap/app/app-config", 'data["tls.key"]'],
    ],
  },
  {
    id: "zt.image-latest",
    fail: "zero-trust/image-latest.fail.yaml",
    pass: "zero-trust/image-latest.pass.yaml",
    expect: [
      ["Pod/app/images", "spec.initContainers[0].image"],
      ["Pod/app/images", "spec.containers[0].image"],
      ["Pod/app/images", "spec.containers[1].image"],
    ],
  },
  {
    id: "zt.image-digest",
    fail: "zero-trust/image-digest.fail.yaml",
    pass: "zero-trust/image-digest.pass.yaml",
    expect: [
      ["Pod/app/images", "spec.containers[0].image"],
      ["Pod/app/images", "spec.containers[2].image"],
    ],
  },
  {
    id: "zt.image-admission-missing",
    fail: "zero-trust/image-admission-missing.fail.yaml",
    pass: "zero-trust/image-admission-missing.pass.yaml",
    expect: [["Cluster//cluster", ""]],
  },
  {
    id: "zt.image-admission-placeholder",
    fail: "zero-trust/image-admission-placeholder.fail.yaml",
    pass: "zero-trust/image-admission-placeholder.pass.yaml",
    expect: [
      ["ConstraintTemplate//k8ssignedimages", "spec.targets[0].rego"],
      ["ClusterPolicy//verify-images", "spec.rules[0].verifyImages[0].attestors"],
      ["ClusterPolicy//verify-images-audit", "spec.rules[0].verifyImages[0].failureAction"],
      ["ClusterImagePolicy//empty", "spec.authorities"],
      ["ClusterImagePolicy//pass-all", "spec.authorities[0].static.action"],
    ],
  },
  {
    id: "zt.metrics-public",
    fail: "zero-trust/metrics-public.fail.yaml",
    pass: "zero-trust/metrics-public.pass.yaml",
    expect: [
      ["Service/app/gateway", "spec.ports[1]"],
      ["Service/app/exporter", "spec.ports[0]"],
    ],
  },
];

const only = (id: string, path: string) => onlyCheck("zero-trust", id, path);

describe("zero-trust checks", () => {
  checkCaseTests("zero-trust", CASES, ZERO_TRUST_CHECKS);

  it("a ClusterImagePolicy alone leaves namespaces without the opt-in label unverified", () => {
    assert.deepEqual(only("zt.image-admission-missing", "zero-trust/image-admission-missing-sigstore.fail.yaml"), [
      ["zt.image-admission-missing", "Namespace//app", 'metadata.labels["policy.sigstore.dev/include"]'],
    ]);
  });

  it("a namespace-level finding without a Namespace object points at the namespace's first workload", () => {
    const f = auditFixture("zero-trust/default-deny-ingress.fail.yaml", { profiles: ["zero-trust"] }).find((x) => x.checkId === "zt.default-deny-ingress");
    assert.deepEqual(f?.object, { kind: "Namespace", name: "app", key: "Namespace//app" });
    assert.deepEqual(f?.source, { file: "zero-trust/default-deny-ingress.fail.yaml", line: 1 });
  });

  it("mesh-wide policies follow the configured root namespace", () => {
    const objects = loadFixture("zero-trust/mtls-strict.pass.yaml").map((o) =>
      o.kind === "PeerAuthentication" && o.metadata.namespace === "istio-system" ? { ...o, metadata: { ...o.metadata, namespace: "istio-config" } } : o,
    );
    const mtls = (root?: string) =>
      rows(audit(objects, { profiles: ["zero-trust"], ...(root ? { meshRootNamespace: root } : {}) }).findings).filter(([id]) => id === "zt.mtls-strict");
    assert.deepEqual(mtls("istio-config"), []);
    assert.deepEqual(mtls(), [["zt.mtls-strict", "Deployment/app/web", ""]]);
  });

  it("the spiffe:// finding says what Istio compares instead", () => {
    const f = auditFixture("zero-trust/spiffe-principal.fail.yaml").find((x) => x.checkId === "zt.spiffe-principal");
    assert.equal(
      f?.message,
      'Istio matches principals as "cluster.local/ns/llm/sa/batch"; "spiffe://cluster.local/ns/llm/sa/batch" never matches, so this rule never allows that caller',
    );
  });

  describe("always-true Rego verification rules", () => {
    const cases: [string, string[]][] = [
      ["cosign_verified(image) { true }", ["cosign_verified"]],
      ["cosign_verified(image) {\n  true\n}", ["cosign_verified"]],
      ["verified(img) if { true }", ["verified"]],
      ["signature_valid(img) if true", ["signature_valid"]],
      ["image_signed(img) := true", ["image_signed"]],
      ["default verified := true", ["verified"]],
      ["default verified = true  # TODO", ["verified"]],
      ["is_pod(kind) { true }", []],
      ["default verified := false", []],
      ["verified(img) { data.signatures[img] }", []],
      ["verified = true {\n  input.x\n}", []],
      ["# cosign_verified(image) { true }", []],
    ];
    for (const [rego, want] of cases) {
      it(JSON.stringify(rego), () => assert.deepEqual(alwaysTrueRules(rego), want));
    }
  });
});
