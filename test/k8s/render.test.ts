import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseConfig } from "../../src/config/load.ts";
import { audit, failingFindings } from "../../src/k8s/audit/index.ts";
import type { KubeObject } from "../../src/k8s/objects.ts";
import { AdmissionError, AuthzError, CallersError, parseValues, render, ValuesError } from "../../src/k8s/render/index.ts";
import type { Values } from "../../src/k8s/render/index.ts";
import { parseManifests, stringifyManifests } from "../../src/k8s/yaml.ts";
import { PolicyError } from "../../src/policy/index.ts";
import { runCli } from "../support/processes.ts";
import {
  AUTHZ_COMBOS,
  AUTHZ_POLICY,
  authzComboName,
  authzValuesFor,
  byKind,
  CNIS,
  COMBOS,
  comboName,
  ENGINES,
  EXAMPLE_POLICY,
  EXAMPLE_VALUES_TEXT,
  exampleValues,
  named,
  renderAuthzCombo,
  renderCombo,
  valuesFor,
} from "./render-fixtures.ts";
import type { Loose } from "./render-fixtures.ts";

const ISTIO_K8S_SIGSTORE = { mesh: "istio", cni: "kubernetes", engine: "sigstore" } as const;

function policy(text: string) {
  return { text, file: "policy.yaml" };
}

/** The example values with `edit` applied to a deep copy. */
function edited(edit: (v: Loose) => void): Values {
  const v = structuredClone(exampleValues()) as Loose;
  edit(v);
  return v as Values;
}

function podSpecs(objects: readonly KubeObject[]): { name: string; spec: Loose }[] {
  return byKind(objects, "Deployment").map((d) => ({ name: d.metadata.name, spec: (d as Loose).spec.template.spec }));
}

describe("render: deterministic output", () => {
  it("the same input gives the same bytes, whatever order the objects come in", () => {
    const a = stringifyManifests(renderCombo(ISTIO_K8S_SIGSTORE));
    const b = stringifyManifests(renderCombo(ISTIO_K8S_SIGSTORE));
    assert.equal(a, b);
    const shuffled = renderCombo(ISTIO_K8S_SIGSTORE).reverse();
    assert.equal(stringifyManifests(shuffled), a);
    assert.ok(a.startsWith("---\napiVersion: v1\nkind: Namespace\n"));
    assert.ok(a.endsWith("\n") && !a.endsWith("\n\n"));
  });

  it("reading the output back and writing it again changes nothing, for every combination", () => {
    for (const c of COMBOS) {
      const text = stringifyManifests(renderCombo(c));
      assert.equal(stringifyManifests(parseManifests(text, "out.yaml")), text, comboName(c));
    }
  });
});

describe("render: objects per option", () => {
  const kinds = (objects: readonly KubeObject[]) => [...new Set(objects.map((o) => `${o.apiVersion} ${o.kind}`))].sort();

  it("the example renders the namespace, identities, workloads, services and every layer", () => {
    const objects = renderCombo(ISTIO_K8S_SIGSTORE);
    assert.deepEqual(kinds(objects), [
      "apps/v1 Deployment",
      "monitoring.coreos.com/v1 ServiceMonitor",
      "networking.k8s.io/v1 NetworkPolicy",
      "policy.sigstore.dev/v1beta1 ClusterImagePolicy",
      "security.istio.io/v1 AuthorizationPolicy",
      "security.istio.io/v1beta1 PeerAuthentication",
      "spire.spiffe.io/v1alpha1 ClusterSPIFFEID",
      "v1 ConfigMap",
      "v1 Namespace",
      "v1 PersistentVolume",
      "v1 PersistentVolumeClaim",
      "v1 Service",
      "v1 ServiceAccount",
    ]);
    const ns = named(objects, "Namespace", "edge");
    assert.equal(ns.metadata.labels!["pod-security.kubernetes.io/enforce"], "restricted");
    assert.equal(ns.metadata.labels!["pod-security.kubernetes.io/enforce-version"], "latest");
    assert.equal(ns.metadata.labels!["istio-injection"], "enabled");
    assert.equal(ns.metadata.labels!["policy.sigstore.dev/include"], "true");
    for (const sa of byKind(objects, "ServiceAccount")) assert.equal((sa as Loose).automountServiceAccountToken, false, sa.metadata.name);
    for (const svc of byKind(objects, "Service")) assert.equal((svc as Loose).spec.type, "ClusterIP", svc.metadata.name);
  });

  it("each CNI gets its own dialect and only that one", () => {
    const netKinds = ["networking.k8s.io/v1 NetworkPolicy", "projectcalico.org/v3 NetworkPolicy", "projectcalico.org/v3 GlobalNetworkPolicy", "cilium.io/v2 CiliumNetworkPolicy"];
    const expected = { kubernetes: ["networking.k8s.io/v1 NetworkPolicy"], calico: ["projectcalico.org/v3 NetworkPolicy"], cilium: ["cilium.io/v2 CiliumNetworkPolicy"] };
    for (const cni of CNIS) {
      const got = kinds(renderCombo({ mesh: "istio", cni, engine: "sigstore" })).filter((k) => netKinds.includes(k));
      assert.deepEqual(got, expected[cni], cni);
    }
  });

  it("each mesh gets its own objects and namespace opt-in; none gets neither", () => {
    const meshKinds = (objects: readonly KubeObject[]) => kinds(objects).filter((k) => k.includes("istio.io") || k.includes("linkerd.io"));
    const istio = renderCombo({ mesh: "istio", cni: "kubernetes", engine: "sigstore" });
    assert.deepEqual(meshKinds(istio), ["security.istio.io/v1 AuthorizationPolicy", "security.istio.io/v1beta1 PeerAuthentication"]);
    assert.equal((named(istio, "PeerAuthentication", "default") as Loose).spec.mtls.mode, "STRICT");

    const linkerd = renderCombo({ mesh: "linkerd", cni: "kubernetes", engine: "sigstore" });
    assert.deepEqual(meshKinds(linkerd), [
      "policy.linkerd.io/v1alpha1 AuthorizationPolicy",
      "policy.linkerd.io/v1alpha1 MeshTLSAuthentication",
      "policy.linkerd.io/v1beta3 Server",
    ]);
    const ns = named(linkerd, "Namespace", "edge");
    assert.equal(ns.metadata.annotations!["linkerd.io/inject"], "enabled");
    assert.equal(ns.metadata.annotations!["config.linkerd.io/default-inbound-policy"], "deny");
    assert.equal(ns.metadata.labels!["istio-injection"], undefined);
    assert.deepEqual((named(linkerd, "MeshTLSAuthentication", "gateway-callers") as Loose).spec.identityRefs, [
      { kind: "ServiceAccount", name: "assistant", namespace: "kiosk" },
      { kind: "Namespace", name: "ops" },
    ]);
    const gw = (named(linkerd, "Deployment", "edgeward-gateway") as Loose).spec.template.metadata.annotations;
    assert.equal(gw["config.linkerd.io/opaque-ports"], "8443");

    const none = renderCombo({ mesh: "none", cni: "kubernetes", engine: "sigstore" });
    assert.deepEqual(meshKinds(none), []);
  });

  it("a hostPath model becomes a read-only PersistentVolume and claim; an existing claim is used as it is", () => {
    const objects = renderCombo(ISTIO_K8S_SIGSTORE);
    const pv = named(objects, "PersistentVolume", "edge-edgeward-model") as Loose;
    assert.deepEqual(pv.spec.accessModes, ["ReadOnlyMany"]);
    assert.deepEqual(pv.spec.hostPath, { path: "/var/lib/edgeward/models", type: "Directory" });
    assert.deepEqual(pv.spec.claimRef, { namespace: "edge", name: "edgeward-model" });
    assert.equal((named(objects, "PersistentVolumeClaim", "edgeward-model") as Loose).spec.volumeName, "edge-edgeward-model");

    const claim = render(edited((v) => (v.model.volume = { persistentVolumeClaim: { claimName: "models" } })), EXAMPLE_POLICY);
    assert.equal(byKind(claim, "PersistentVolume").length, 0);
    assert.equal(byKind(claim, "PersistentVolumeClaim").length, 0);
    const volume = podSpecs(claim).find((p) => p.name === "edgeward-runner")!.spec.volumes.find((x: Loose) => x.name === "model");
    assert.deepEqual(volume, { name: "model", persistentVolumeClaim: { claimName: "models", readOnly: true } });
  });

  it("the gateway's ConfigMap holds a configuration the gateway loads and the policy file verbatim", () => {
    const cm = named(renderCombo(ISTIO_K8S_SIGSTORE), "ConfigMap", "edgeward-gateway") as Loose;
    assert.equal(cm.data["policy.yaml"], EXAMPLE_POLICY.text);
    const raw = parseManifests(`apiVersion: v1\nkind: X\nmetadata: {name: x}\nconfig:\n${cm.data["config.yaml"].replace(/^/gm, "  ")}`, "c")[0]!["config"];
    const config = parseConfig(raw, "/etc/edgeward/config.yaml");
    assert.deepEqual(config.listen, { host: "0.0.0.0", port: 8443 });
    assert.deepEqual(config.trustBundles, { "example.org": "/svid/bundle.pem" });
    assert.deepEqual(config.runners.map((r) => [r.name, r.url, r.models]), [["vllm", "http://edgeward-runner.edge.svc:8000", ["mistral-7b-instruct"]]]);
    // The gateway scopes policies to itself as Istio does: its pod's namespace and labels.
    assert.equal(config.workload.namespace, "edge");
    assert.equal(config.workload.labels["app"], "edgeward-gateway");
    assert.equal(config.workload.rootNamespace, "istio-system");
  });

  it("vault off, monitoring off and falco off leave their objects and holes out", () => {
    const objects = render(
      edited((v) => {
        v.vault = { enabled: false, namespace: "vault", port: 8200 };
        v.monitoring.enabled = false;
        v.falco.enabled = false;
      }),
      EXAMPLE_POLICY,
    );
    assert.equal(byKind(objects, "ServiceMonitor").length, 0);
    assert.equal(objects.some((o) => o.metadata.labels?.["grafana_dashboard"] === "1"), false);
    assert.equal(objects.some((o) => o.metadata.namespace === "falco"), false);
    const gw = (named(objects, "Deployment", "edgeward-gateway") as Loose).spec.template;
    assert.equal(Object.keys(gw.metadata.annotations).some((k) => k.startsWith("vault.hashicorp.com/")), false);
    assert.equal(gw.spec.volumes.some((x: Loose) => x.name === "vault-token"), false);
    assert.equal(objects.some((o) => o.metadata.name === "gateway-to-vault" || o.metadata.name === "prometheus-scrape"), false);
  });
});

describe("render: Pod Security Standard restricted on every container", () => {
  const ALLOWED_VOLUMES = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

  for (const c of COMBOS) {
    it(comboName(c), () => {
      const objects = renderCombo(c);
      const pods = podSpecs(objects);
      assert.deepEqual(pods.map((p) => p.name).sort(), ["edgeward-gateway", "edgeward-runner"]);
      for (const { name, spec } of pods) {
        assert.equal(spec.automountServiceAccountToken, false, name);
        assert.equal(spec.hostNetwork ?? false, false, name);
        assert.equal(spec.securityContext.runAsNonRoot, true, name);
        assert.ok(spec.securityContext.runAsUser > 0, name);
        assert.equal(spec.securityContext.seccompProfile.type, "RuntimeDefault", name);
        for (const v of spec.volumes) {
          const type = Object.keys(v).find((k) => k !== "name")!;
          assert.ok(ALLOWED_VOLUMES.includes(type), `${name} volume ${v.name} is ${type}`);
        }
        for (const ctr of [...(spec.initContainers ?? []), ...spec.containers]) {
          const at = `${name}/${ctr.name}`;
          const sc = ctr.securityContext;
          assert.equal(sc.allowPrivilegeEscalation, false, at);
          assert.equal(sc.privileged, false, at);
          assert.deepEqual(sc.capabilities, { drop: ["ALL"] }, at);
          assert.equal(sc.runAsNonRoot, true, at);
          assert.ok(Number.isInteger(sc.runAsUser) && sc.runAsUser > 0, at);
          assert.equal(sc.seccompProfile.type, "RuntimeDefault", at);
          assert.equal(sc.readOnlyRootFilesystem, true, at);
          for (const kind of ["requests", "limits"]) {
            assert.ok(ctr.resources[kind].cpu !== undefined && ctr.resources[kind].memory !== undefined, `${at} ${kind}`);
          }
          assert.match(ctr.image, /@sha256:[a-f0-9]{64}$/, at);
          // Every writable path is an emptyDir or the decision log; the root filesystem stays read-only.
          assert.ok(ctr.volumeMounts.some((m: Loose) => m.mountPath === "/tmp" || m.name === "svid"), `${at} has a writable scratch directory`);
        }
      }
      const runner = pods.find((p) => p.name === "edgeward-runner")!.spec;
      const ctr = runner.containers[0];
      assert.deepEqual(ctr.volumeMounts.find((m: Loose) => m.name === "model"), { name: "model", mountPath: "/models", readOnly: true });
      assert.equal(runner.volumes.find((x: Loose) => x.name === "model").persistentVolumeClaim.readOnly, true);
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) assert.deepEqual(ctr[probe].httpGet, { path: "/health", port: 8000, scheme: "HTTP" }, probe);
      assert.equal(ctr.resources.limits["nvidia.com/gpu"], "1");
      assert.equal(ctr.resources.requests["nvidia.com/gpu"], "1");
    });
  }

  it("images without a digest are used as given; a GPU count of 0 requests no GPU", () => {
    const objects = render(
      edited((v) => {
        delete v.runner.digest;
        v.runner.gpu.count = 0;
      }),
      EXAMPLE_POLICY,
    );
    const ctr = podSpecs(objects).find((p) => p.name === "edgeward-runner")!.spec.containers[0];
    assert.equal(ctr.image, "registry.example.com/edge/vllm-openai:v0.6.3");
    assert.equal(ctr.resources.limits["nvidia.com/gpu"], undefined);
  });
});

describe("render: Istio policies from the policy file", () => {
  const objects = renderCombo(ISTIO_K8S_SIGSTORE);
  const authz = byKind(objects, "AuthorizationPolicy") as Loose[];

  it("principals are in Istio's form, never spiffe://, everywhere a principal appears", () => {
    const text = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-id, namespace: edge}
spec:
  rules:
    - from:
        - source:
            principals: ["spiffe://example.org/ns/kiosk/sa/assistant"]
            notPrincipals: ["spiffe://example.org/ns/kiosk/sa/intruder"]
      when:
        - key: source.principal
          notValues: ["spiffe://example.org/ns/kiosk/sa/old"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-one, namespace: edge}
spec:
  action: DENY
  rules:
    - from: [{source: {principals: ["spiffe://example.org/ns/kiosk/sa/banned"]}}]
`;
    const rendered = render(exampleValues(), policy(text));
    const all = JSON.stringify(byKind(rendered, "AuthorizationPolicy"));
    assert.equal(all.includes("spiffe://"), false);
    const byId = named(rendered, "AuthorizationPolicy", "by-id") as Loose;
    assert.deepEqual(byId.spec.rules[0].from[0].source, { principals: ["example.org/ns/kiosk/sa/assistant"], notPrincipals: ["example.org/ns/kiosk/sa/intruder"] });
    assert.deepEqual(byId.spec.rules[0].when, [{ key: "source.principal", notValues: ["example.org/ns/kiosk/sa/old"] }]);
    const deny = named(rendered, "AuthorizationPolicy", "deny-one") as Loose;
    assert.equal(deny.spec.action, "DENY");
    assert.deepEqual(deny.spec.rules, [{ from: [{ source: { principals: ["example.org/ns/kiosk/sa/banned"] } }], to: [{ operation: { ports: ["8443"] } }] }]);
    // The example's principals too, and the runner's and Prometheus's.
    assert.equal(JSON.stringify(authz).includes("spiffe://"), false);
  });

  it("ALLOW rules keep who and which port; Edgeward-only and HTTP fields stay in the gateway, said in an annotation", () => {
    const kiosk = named(objects, "AuthorizationPolicy", "kiosk-assistant") as Loose;
    assert.deepEqual(kiosk.spec, {
      selector: { matchLabels: { "app.kubernetes.io/name": "edgeward-gateway" } },
      action: "ALLOW",
      rules: [{ from: [{ source: { principals: ["example.org/ns/kiosk/sa/assistant"] } }], to: [{ operation: { ports: ["8443"] } }] }],
    });
    assert.equal(kiosk.metadata.annotations["edgeward.dev/policy"], "edge/kiosk-assistant");
    const note = kiosk.metadata.annotations["edgeward.dev/note"] as string;
    for (const field of ["to.operation.models", "when.cel", "limits", "to.operation.paths", "to.operation.methods"]) assert.ok(note.includes(field), field);
    assert.deepEqual((named(objects, "AuthorizationPolicy", "ops-list-models") as Loose).spec.rules[0].from, [{ source: { principals: ["example.org/ns/ops/sa/*"] } }]);
  });

  it("a DENY rule that needs the HTTP request, AUDIT policies and policies for other workloads stay in the gateway", () => {
    const names = authz.map((a) => a.metadata.name).sort();
    assert.deepEqual(names, ["allow-nothing", "gateway-to-runner", "kiosk-assistant", "ops-list-models", "prometheus-scrape"]);
    const closed = named(objects, "AuthorizationPolicy", "allow-nothing") as Loose;
    assert.deepEqual(closed.spec, {});
    const gatewayOnly = closed.metadata.annotations["edgeward.dev/gateway-only"] as string;
    assert.ok(gatewayOnly.includes("edge/deny-debug-header"));
    assert.ok(gatewayOnly.includes("edge/audit-embeddings"));

    const text = `apiVersion: edgeward.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: other-gateway, namespace: edge}
spec:
  selector: {matchLabels: {app: somewhere-else}}
  rules: [{from: [{source: {principals: ["example.org/ns/kiosk/sa/assistant"]}}]}]
---
apiVersion: edgeward.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: jwt-only, namespace: edge}
spec:
  rules:
    - from: [{source: {requestPrincipals: ["*"]}}]
    - from: [{source: {principals: ["example.org/ns/kiosk/sa/assistant"]}}]
      to: [{operation: {ports: ["8443"], models: [tiny]}}]
      essential: true
---
apiVersion: edgeward.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-models, namespace: edge}
spec:
  action: DENY
  rules: [{to: [{operation: {models: ["big-*"]}}]}]
`;
    const rendered = render(exampleValues(), policy(text));
    assert.equal(rendered.some((o) => o.metadata.name === "other-gateway" || o.metadata.name === "deny-models"), false);
    const jwt = named(rendered, "AuthorizationPolicy", "jwt-only") as Loose;
    assert.deepEqual(jwt.spec.rules, [{ from: [{ source: { principals: ["example.org/ns/kiosk/sa/assistant"] } }], to: [{ operation: { ports: ["8443"] } }] }]);
    assert.match(jwt.metadata.annotations["edgeward.dev/note"], /essential \(Edgeward only\).*to\.operation\.models \(Edgeward only\)/);
    const closedNote = (named(rendered, "AuthorizationPolicy", "allow-nothing") as Loose).metadata.annotations["edgeward.dev/gateway-only"];
    assert.match(closedNote, /edge\/other-gateway \(its selector does not pick the gateway\)/);
    assert.match(closedNote, /edge\/deny-models \(.*DENY rule 0/);
  });

  it("the runner admits only the gateway's identity, on its port and inference paths; Prometheus only /metrics", () => {
    const runner = named(objects, "AuthorizationPolicy", "gateway-to-runner") as Loose;
    assert.deepEqual(runner.spec.selector, { matchLabels: { "app.kubernetes.io/name": "edgeward-runner" } });
    assert.deepEqual(runner.spec.rules[0].from, [{ source: { principals: ["example.org/ns/edge/sa/edgeward-gateway"] } }]);
    assert.deepEqual(runner.spec.rules[0].to[0].operation.ports, ["8000"]);
    const scrape = named(objects, "AuthorizationPolicy", "prometheus-scrape") as Loose;
    assert.deepEqual(scrape.spec.rules[0].from, [{ source: { principals: ["example.org/ns/monitoring/sa/prometheus-k8s"] } }]);
    assert.deepEqual(scrape.spec.rules[0].to, [{ operation: { ports: ["9464"], methods: ["GET"], paths: ["/metrics"] } }]);
  });

  it("an invalid policy file is refused with the gateway's own error", () => {
    assert.throws(() => render(exampleValues(), policy("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec: {actoin: ALLOW}\n")), (err: unknown) => {
      assert.ok(err instanceof PolicyError);
      assert.match(err.message, /^policy\.yaml:4: unknown field "actoin"/);
      return true;
    });
  });
});

describe("render: callers", () => {
  it("are derived from the ALLOW policies' principals of the trust domain", () => {
    const objects = renderCombo({ mesh: "istio", cni: "calico", engine: "sigstore" });
    const np = named(objects, "NetworkPolicy", "gateway-from-callers") as Loose;
    assert.deepEqual(np.spec.ingress.map((r: Loose) => r.source), [
      { namespaceSelector: "projectcalico.org/name == 'kiosk'", serviceAccounts: { names: ["assistant"] } },
      { namespaceSelector: "projectcalico.org/name == 'ops'" },
    ]);
    const spiffe = byKind(objects, "ClusterSPIFFEID").map((o) => o.metadata.name).sort();
    assert.deepEqual(spiffe, ["edge-edgeward-caller-kiosk-assistant", "edge-edgeward-caller-ops", "edge-edgeward-gateway", "edge-edgeward-runner"]);
  });

  it("a policy that lets in callers render cannot place needs them listed", () => {
    const anyone = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: anyone, namespace: edge}
spec:
  rules: [{from: [{source: {principals: ["*"]}}]}]
`;
    assert.throws(() => render(exampleValues(), policy(anyone)), (err: unknown) => err instanceof CallersError && /principal "\*" does not name one namespace/.test(err.message) && /list the callers in the values file/.test(err.message));
    const listed = edited((v) => (v.callers = [{ namespace: "apps", serviceAccount: "client", podLabels: { app: "client" } }]));
    const objects = render({ ...listed, cni: "kubernetes" }, policy(anyone));
    assert.deepEqual((named(objects, "NetworkPolicy", "gateway-from-callers") as Loose).spec.ingress[0].from, [
      { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "apps" } }, podSelector: { matchLabels: { app: "client" } } },
    ]);
  });
});

describe("render: signed-image admission really verifies", () => {
  const keyless = { issuer: "https://token.actions.githubusercontent.com", subject: "https://github.com/edgeward/edgeward/.github/workflows/release.yml@refs/heads/main" };

  for (const engine of ENGINES) {
    it(`${engine}: every entry's key or keyless identity is in the objects, and uncovered images are refused`, () => {
      const objects = renderCombo({ mesh: "istio", cni: "kubernetes", engine });
      const v = exampleValues();
      const pem = v.admission.images.find((s) => s.key !== undefined)!.key!;
      const json = JSON.stringify(objects);
      assert.ok(json.includes(JSON.stringify(pem).slice(1, -1)), "the public key is rendered");
      assert.ok(json.includes(keyless.subject) && json.includes(keyless.issuer), "the keyless identity is rendered");
      if (engine === "sigstore") {
        const policies = byKind(objects, "ClusterImagePolicy") as Loose[];
        assert.deepEqual(policies.map((p) => p.spec.mode), ["enforce", "enforce"]);
        assert.deepEqual(policies[0].spec.images, [{ glob: "ghcr.io/edgeward/**" }]);
        assert.deepEqual(policies[0].spec.authorities[0].keyless.identities, [keyless]);
        assert.equal(policies[1].spec.authorities[0].key.data, pem);
      } else if (engine === "kyverno") {
        const [policy] = byKind(objects, "ClusterPolicy") as Loose[];
        const verify = policy.spec.rules.find((r: Loose) => r.verifyImages !== undefined).verifyImages;
        assert.deepEqual(verify.map((x: Loose) => x.imageReferences), [["ghcr.io/edgeward/*"], ["registry.example.com/edge/*"]]);
        assert.deepEqual(verify[0].attestors[0].entries[0].keyless, { ...keyless, rekor: { url: "https://rekor.sigstore.dev" } });
        assert.equal(verify[1].attestors[0].entries[0].keys.publicKeys, pem);
        for (const x of verify) assert.equal(x.failureAction, "Enforce");
        const restrict = policy.spec.rules.find((r: Loose) => r.validate !== undefined);
        assert.equal(restrict.validate.pattern.spec.containers[0].image, "ghcr.io/edgeward/* | registry.example.com/edge/*");
        assert.equal(policy.spec.webhookConfiguration.failurePolicy, "Fail");
      } else {
        const [template] = byKind(objects, "ConstraintTemplate") as Loose[];
        const rego = template.spec.targets[0].rego as string;
        assert.match(rego, /external_data\(\{"provider": input\.parameters\.provider/);
        assert.doesNotMatch(rego, /\{\s*true\s*\}/);
        const [constraint] = byKind(objects, "EdgewardSignedImages") as Loose[];
        assert.equal(constraint.spec.enforcementAction, "deny");
        assert.equal(constraint.spec.parameters.provider, "ratify-gatekeeper-provider");
        const [verifier] = byKind(objects, "Verifier") as Loose[];
        const [viaKeyless, viaKey] = verifier.spec.parameters.trustPolicies;
        assert.deepEqual(viaKeyless.keyless, { certificateIdentity: keyless.subject, certificateOIDCIssuer: keyless.issuer, ctLogVerify: true });
        const kmp = named(objects, "KeyManagementProvider", viaKey.keys[0].provider) as Loose;
        assert.deepEqual(kmp.spec, { type: "inline", parameters: { contentType: "key", value: pem } });
      }
      const uncovered = edited((x) => {
        x.admission.engine = engine;
        x.runner.image = "docker.io/vllm/vllm-openai:v0.6.3";
      });
      assert.throws(() => render(uncovered, EXAMPLE_POLICY), (err: unknown) => err instanceof AdmissionError && /no entry covers image "docker\.io\/vllm\/vllm-openai:v0\.6\.3@sha256:/.test(err.message));
    });
  }

  it("a key with transparencyLog: false (offline `edgeward release sign`) is verified without a transparency-log entry by every engine", () => {
    for (const engine of ENGINES) {
      const v = edited((x) => {
        x.admission.engine = engine;
        x.admission.images[1].transparencyLog = false;
      });
      const objects = render(v, EXAMPLE_POLICY);
      if (engine === "sigstore") {
        const [viaKeyless, viaKey] = byKind(objects, "ClusterImagePolicy") as Loose[];
        assert.equal(viaKey.spec.authorities[0].ctlog, undefined, "policy-controller skips the log only when ctlog is absent");
        assert.deepEqual(viaKeyless.spec.authorities[0].ctlog, { url: "https://rekor.sigstore.dev" });
      } else if (engine === "kyverno") {
        const [policy] = byKind(objects, "ClusterPolicy") as Loose[];
        const verify = policy.spec.rules.find((r: Loose) => r.verifyImages !== undefined).verifyImages;
        assert.deepEqual(verify[1].attestors[0].entries[0].keys.rekor, { ignoreTlog: true });
        assert.deepEqual(verify[0].attestors[0].entries[0].keyless.rekor, { url: "https://rekor.sigstore.dev" });
      } else {
        const [verifier] = byKind(objects, "Verifier") as Loose[];
        const [viaKeyless, viaKey] = verifier.spec.parameters.trustPolicies;
        assert.deepEqual([viaKeyless.tLogVerify, viaKey.tLogVerify, viaKey.rekorURL], [true, false, undefined]);
      }
    }
  });

  it("a repository entry covers that repository's tags and digests only", () => {
    const v = edited((x) => {
      x.admission.images = [
        { pattern: "ghcr.io/edgeward/edgeward", keyless },
        { pattern: "registry.example.com/edge/*", key: x.admission.images[1].key },
      ];
    });
    const sig = byKind(render(v, EXAMPLE_POLICY), "ClusterImagePolicy") as Loose[];
    assert.deepEqual(sig[0].spec.images, [{ glob: "ghcr.io/edgeward/edgeward:**" }, { glob: "ghcr.io/edgeward/edgeward@**" }]);
    const evil = edited((x) => {
      x.admission.images[0].pattern = "ghcr.io/edgeward/edgeward";
      x.gateway.image = "ghcr.io/edgeward/edgeward-evil:1";
    });
    assert.throws(() => render(evil, EXAMPLE_POLICY), AdmissionError);
  });
});

describe("render: NetworkPolicy is default deny plus exactly the listed allows", () => {
  const EXAMPLE_ALLOWS = ["allow-dns", "gateway-from-callers", "gateway-from-prometheus", "gateway-to-runner", "gateway-to-vault", "mesh-control-plane", "runner-from-gateway"];

  for (const cni of CNIS) {
    it(cni, () => {
      const objects = renderCombo({ mesh: "istio", cni, engine: "sigstore" });
      const policies = objects.filter((o) => o.kind.endsWith("NetworkPolicy")) as Loose[];
      assert.deepEqual(policies.map((p) => p.metadata.name).sort(), [...EXAMPLE_ALLOWS, "default-deny"].sort());
      const deny = policies.find((p) => p.metadata.name === "default-deny");
      if (cni === "kubernetes") assert.deepEqual(deny.spec, { podSelector: {}, policyTypes: ["Ingress", "Egress"] });
      if (cni === "calico") assert.deepEqual(deny.spec, { order: 2000, selector: "all()", types: ["Ingress", "Egress"] });
      if (cni === "cilium") assert.deepEqual(deny.spec, { endpointSelector: {}, ingress: [{}], egress: [{}] });
      // Every other policy only allows.
      for (const p of policies.filter((x) => x !== deny)) {
        const rules = [...(p.spec.ingress ?? []), ...(p.spec.egress ?? [])];
        assert.ok(rules.length > 0, p.metadata.name);
        if (cni === "calico") for (const r of rules) assert.equal(r.action, "Allow", p.metadata.name);
      }
    });
  }

  it("the allows, in Kubernetes' dialect, open exactly the ports they name", () => {
    const objects = renderCombo(ISTIO_K8S_SIGSTORE) as Loose[];
    const get = (name: string) => objects.find((o) => o.kind === "NetworkPolicy" && o.metadata.name === name).spec;
    assert.deepEqual(get("allow-dns"), {
      podSelector: {},
      policyTypes: ["Egress"],
      egress: [{
        to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } }, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
        ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }],
      }],
    });
    assert.deepEqual(get("gateway-to-runner"), {
      podSelector: { matchLabels: { "app.kubernetes.io/name": "edgeward-gateway" } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": "edgeward-runner" } } }], ports: [{ protocol: "TCP", port: 8000 }] }],
    });
    assert.deepEqual(get("runner-from-gateway").ingress, [{ from: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": "edgeward-gateway" } } }], ports: [{ protocol: "TCP", port: 8000 }] }]);
    assert.deepEqual(get("gateway-from-callers").ingress[0].ports, [{ protocol: "TCP", port: 8443 }]);
    assert.deepEqual(get("gateway-from-prometheus").ingress[0].ports, [{ protocol: "TCP", port: 9464 }]);
  });

  it("without mesh, Vault and monitoring only the four core allows remain", () => {
    const v = edited((x) => {
      x.mesh = "none";
      x.vault = { enabled: false, namespace: "vault", port: 8200 };
      x.monitoring.enabled = false;
    });
    for (const cni of CNIS) {
      const names = render({ ...v, cni }, EXAMPLE_POLICY).filter((o) => o.kind.endsWith("NetworkPolicy")).map((o) => o.metadata.name).sort();
      assert.deepEqual(names, ["allow-dns", "default-deny", "gateway-from-callers", "gateway-to-runner", "runner-from-gateway"], cni);
    }
  });

  it("Cilium selects callers by service account and checks DNS through its proxy", () => {
    const objects = renderCombo({ mesh: "istio", cni: "cilium", engine: "sigstore" }) as Loose[];
    const callers = objects.find((o) => o.metadata.name === "gateway-from-callers").spec;
    assert.deepEqual(callers.ingress[0].fromEndpoints, [
      { matchLabels: { "k8s:io.kubernetes.pod.namespace": "kiosk", "k8s:io.cilium.k8s.policy.serviceaccount": "assistant" } },
      { matchLabels: { "k8s:io.kubernetes.pod.namespace": "ops" } },
    ]);
    const dns = objects.find((o) => o.metadata.name === "allow-dns").spec;
    assert.deepEqual(dns.egress[0].toPorts, [{ ports: [{ port: "53", protocol: "UDP" }, { port: "53", protocol: "TCP" }], rules: { dns: [{ matchPattern: "*" }] } }]);
  });
});

describe("render: bad values files are refused, naming the key", () => {
  const lineOf = (needle: string) => EXAMPLE_VALUES_TEXT.split("\n").findIndex((l) => l.includes(needle)) + 1;
  const CASES: { name: string; edit: (text: string) => string; message: RegExp }[] = [
    { name: "a missing required key", edit: (t) => t.replace(/^namespace: edge .*\n/m, ""), message: /^deploy\.yaml: namespace: is required$/ },
    { name: "a missing nested key", edit: (t) => t.replace("  image: ghcr.io/edgeward/edgeward:0.1.0", "  # no image"), message: /^deploy\.yaml:\d+: gateway\.image: is required$/ },
    { name: "an unknown key", edit: (t) => t.replace("  replicas: 2\n", "  replicas: 2\n  replica: 3\n"), message: new RegExp(`^deploy\\.yaml:${lineOf("replicas: 2") + 1}: gateway: unknown key\\(s\\) "replica"$`) },
    { name: "UID 0", edit: (t) => t.replace("runAsUser: 10002", "runAsUser: 0"), message: /^deploy\.yaml:\d+: runner\.runAsUser: must not be 0 \(root\)$/ },
    { name: "an unknown mesh", edit: (t) => t.replace("mesh: istio ", "mesh: consul "), message: /^deploy\.yaml:\d+: mesh: .*"istio"/ },
    { name: "a malformed digest", edit: (t) => t.replace(/digest: sha256:0a1b[0-9a-f]+/, "digest: sha256:xyz"), message: /^deploy\.yaml:\d+: gateway\.digest: expected sha256:<64 lowercase hex digits>$/ },
    { name: "an image without a registry", edit: (t) => t.replace("image: ghcr.io/edgeward/edgeward:0.1.0", "image: edgeward:0.1.0"), message: /gateway\.image: name the registry/ },
    { name: "a keyless signer without the transparency log", edit: (t) => t.replace("    - pattern: ghcr.io/edgeward/*\n", "    - pattern: ghcr.io/edgeward/*\n      transparencyLog: false\n"), message: /admission\.images\[0\]: keyless signatures are always checked in the transparency log/ },
    { name: "a signer with both key and keyless", edit: (t) => t.replace("    - pattern: ghcr.io/edgeward/*\n", "    - pattern: ghcr.io/edgeward/*\n      key: |\n        -----BEGIN PUBLIC KEY-----\n        AAAA\n        -----END PUBLIC KEY-----\n"), message: /admission\.images\[0\]: set exactly one of key \(PEM\) and keyless/ },
    { name: "Vault without a role", edit: (t) => t.replace(/^ {2}role: .*\n/m, ""), message: /^deploy\.yaml:\d+: vault: vault\.enabled needs address, role and secretPath$/ },
    { name: "a reserved workload label", edit: (t) => t.replace("workloadLabels: {app: edgeward-gateway}", "workloadLabels: {app.kubernetes.io/name: x}"), message: /gateway\.workloadLabels: app\.kubernetes\.io\/name is set by render/ },
    { name: "a model volume of neither kind", edit: (t) => t.replace("    hostPath:\n", "    nfs:\n"), message: /model\.volume: set exactly one of persistentVolumeClaim/ },
    { name: "invalid YAML", edit: (t) => `${t}\nmesh: [\n`, message: /^deploy\.yaml:\d+: invalid YAML/ },
  ];
  for (const c of CASES) {
    it(c.name, () => {
      assert.throws(() => parseValues(c.edit(EXAMPLE_VALUES_TEXT), "deploy.yaml"), (err: unknown) => {
        assert.ok(err instanceof ValuesError, String(err));
        assert.match(err.message, c.message);
        return true;
      });
    });
  }

  it("the error's line is the key's own line", () => {
    const text = EXAMPLE_VALUES_TEXT.replace("runAsUser: 10002", "runAsUser: 0");
    const line = text.split("\n").findIndex((l) => l.includes("runAsUser: 0")) + 1;
    assert.throws(() => parseValues(text, "deploy.yaml"), (err: unknown) => err instanceof ValuesError && err.line === line && err.key === "runner.runAsUser");
  });
});

describe("render → audit: zero findings at --fail-on low", () => {
  for (const c of COMBOS.filter((x) => x.mesh !== "none")) {
    it(comboName(c), () => {
      // Audit what kubectl would get: the YAML stream, read back.
      const objects = parseManifests(stringifyManifests(renderCombo(c)), "rendered.yaml");
      const failing = failingFindings(audit(objects), "low");
      assert.deepEqual(failing.map((f) => `${f.checkId} ${f.object.key} ${f.path}: ${f.message}`), []);
    });
  }

  for (const c of AUTHZ_COMBOS) {
    it(authzComboName(c), () => {
      const objects = parseManifests(stringifyManifests(renderAuthzCombo(c)), "rendered.yaml");
      const failing = failingFindings(audit(objects), "low");
      assert.deepEqual(failing.map((f) => `${f.checkId} ${f.object.key} ${f.path}: ${f.message}`), []);
    });
  }

  it("authz for other workloads only (protectRunner off, clients listed) stays at zero findings too", () => {
    for (const transport of ["grpc", "http"] as const) {
      const v = authzValuesFor({ cni: "calico", engine: "sigstore", transport });
      const values = { ...v, authz: { ...v.authz, protectRunner: false, clients: [{ namespace: "llm", serviceAccount: "vllm" }] } };
      const objects = parseManifests(stringifyManifests(render(values, EXAMPLE_POLICY)), "rendered.yaml");
      assert.deepEqual(failingFindings(audit(objects), "low").map((f) => `${f.checkId} ${f.object.key}`), [], transport);
    }
  });

  it("without a mesh, the audit reports exactly what a mesh would add: mTLS and an AuthorizationPolicy per workload", () => {
    for (const cni of CNIS) {
      for (const engine of ENGINES) {
        const objects = parseManifests(stringifyManifests(render(valuesFor({ mesh: "none", cni, engine }), EXAMPLE_POLICY)), "rendered.yaml");
        const got = failingFindings(audit(objects), "low").map((f) => `${f.checkId} ${f.object.key}`).sort();
        assert.deepEqual(got, [
          "zt.authz-policy Deployment/edge/edgeward-gateway",
          "zt.authz-policy Deployment/edge/edgeward-runner",
          "zt.mtls-strict Deployment/edge/edgeward-gateway",
          "zt.mtls-strict Deployment/edge/edgeward-runner",
        ], `${cni} ${engine}`);
      }
    }
  });
});

describe("render: Istio ext_authz (values authz)", () => {
  const GRPC = { cni: "kubernetes", engine: "sigstore", transport: "grpc" } as const;
  const HTTP = { cni: "kubernetes", engine: "sigstore", transport: "http" } as const;
  const AUTHZ_NAMES = ["authz-callers", "authz-from-sidecars", "edgeward-authz", "edgeward-gateway-authz", "runner-ext-authz", "runner-to-authz"];
  const gatewayConfig = (objects: readonly KubeObject[]) => {
    const cm = named(objects, "ConfigMap", "edgeward-gateway") as Loose;
    const raw = parseManifests(`apiVersion: v1\nkind: X\nmetadata: {name: x}\nconfig:\n${cm.data["config.yaml"].replace(/^/gm, "  ")}`, "c")[0]!["config"];
    return { raw: raw as Loose, config: parseConfig(raw, "/etc/edgeward/config.yaml") };
  };
  const gatewayPorts = (objects: readonly KubeObject[]) => (named(objects, "Deployment", "edgeward-gateway") as Loose).spec.template.spec.containers[0].ports;
  const provider = (objects: readonly KubeObject[]) => (named(objects, "IstioOperator", "edgeward-authz") as Loose).spec.meshConfig.extensionProviders;

  it("is off by default: no provider, no CUSTOM policy, no listener, no port, no holes", () => {
    assert.equal(exampleValues().authz.enabled, false);
    for (const mesh of ["istio", "linkerd", "none"] as const) {
      const objects = renderCombo({ mesh, cni: "kubernetes", engine: "sigstore" });
      assert.deepEqual(objects.filter((o) => AUTHZ_NAMES.includes(o.metadata.name)).map((o) => `${o.kind}/${o.metadata.name}`), [], mesh);
      assert.equal(objects.some((o) => o.kind === "IstioOperator" || (o as Loose).spec?.action === "CUSTOM"), false, mesh);
      assert.equal(gatewayConfig(objects).config.authz, null, mesh);
      assert.deepEqual(gatewayPorts(objects).map((p: Loose) => p.name), ["https", "http-admin"], mesh);
    }
  });

  it("gRPC: the listener, its port and Service, the meshConfig provider, the CUSTOM policy on the runner and who may call it", () => {
    const objects = renderAuthzCombo(GRPC);
    const { raw, config } = gatewayConfig(objects);
    assert.deepEqual(raw.authz, { grpc: "0.0.0.0:9191", principalFrom: "source", maxBodyBytes: 1048576 });
    assert.deepEqual(config.authz, { grpc: { host: "0.0.0.0", port: 9191 }, http: null, pathPrefix: "", principalFrom: "source", maxBodyBytes: 1048576 });
    assert.deepEqual(gatewayPorts(objects).at(-1), { name: "grpc-authz", containerPort: 9191, protocol: "TCP" });
    assert.deepEqual((named(objects, "Service", "edgeward-gateway-authz") as Loose).spec, {
      type: "ClusterIP",
      selector: { "app.kubernetes.io/name": "edgeward-gateway" },
      ports: [{ name: "grpc-authz", port: 9191, targetPort: "grpc-authz", protocol: "TCP", appProtocol: "grpc" }],
    });
    // The callers' Service still carries the mTLS port only.
    assert.deepEqual((named(objects, "Service", "edgeward-gateway") as Loose).spec.ports.map((p: Loose) => p.name), ["https"]);

    const operator = named(objects, "IstioOperator", "edgeward-authz") as Loose;
    assert.equal(operator.apiVersion, "install.istio.io/v1alpha1");
    assert.equal(operator.metadata.namespace, "istio-system");
    assert.equal(operator.metadata.annotations["config.kubernetes.io/local-config"], "true");
    assert.match(operator.metadata.annotations["edgeward.dev/note"], /^Not for kubectl apply: merge spec\.meshConfig\.extensionProviders into the mesh's own IstioOperator .* istio ConfigMap/);
    assert.deepEqual(Object.keys(operator.spec), ["meshConfig"]);
    assert.deepEqual(provider(objects), [{
      name: "edgeward-authz",
      envoyExtAuthzGrpc: {
        service: "edgeward-gateway-authz.edge.svc.cluster.local",
        port: 9191,
        timeout: "0.2s",
        failOpen: false,
        includeRequestBodyInCheck: { maxRequestBytes: 1048576, allowPartialMessage: true, packAsBytes: false },
      },
    }]);

    const custom = named(objects, "AuthorizationPolicy", "runner-ext-authz") as Loose;
    assert.equal(custom.apiVersion, "security.istio.io/v1");
    assert.deepEqual(custom.spec, {
      selector: { matchLabels: { "app.kubernetes.io/name": "edgeward-runner" } },
      action: "CUSTOM",
      provider: { name: "edgeward-authz" },
      rules: [{ to: [{ operation: { ports: ["8000"], paths: ["/v1/*"] } }] }],
    });
    // The provider the CUSTOM policy names is the one the overlay defines.
    assert.equal(custom.spec.provider.name, provider(objects)[0].name);

    assert.deepEqual((named(objects, "AuthorizationPolicy", "authz-callers") as Loose).spec, {
      selector: { matchLabels: { "app.kubernetes.io/name": "edgeward-gateway" } },
      action: "ALLOW",
      rules: [{
        from: [{ source: { principals: ["example.org/ns/edge/sa/edgeward-runner"] } }],
        to: [{ operation: { ports: ["9191"], methods: ["POST"], paths: ["/envoy.service.auth.v3.Authorization/Check"] } }],
      }],
    });
    assert.equal(JSON.stringify(byKind(objects, "AuthorizationPolicy")).includes("spiffe://"), false);

    const np = (name: string) => (named(objects, "NetworkPolicy", name) as Loose).spec;
    assert.deepEqual(np("runner-to-authz"), {
      podSelector: { matchLabels: { "app.kubernetes.io/name": "edgeward-runner" } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": "edgeward-gateway" } } }], ports: [{ protocol: "TCP", port: 9191 }] }],
    });
    assert.deepEqual(np("authz-from-sidecars"), {
      podSelector: { matchLabels: { "app.kubernetes.io/name": "edgeward-gateway" } },
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": "edgeward-runner" } } }], ports: [{ protocol: "TCP", port: 9191 }] }],
    });
    // Callers reach the gateway's mTLS port only, never the authorizer's.
    assert.deepEqual(np("gateway-from-callers").ingress[0].ports, [{ protocol: "TCP", port: 8443 }]);
  });

  it("HTTP: envoyExtAuthzHttp with the prefix and the headers Edgeward reads and sets; the listener serves that prefix", () => {
    const values = edited((v) => {
      v.authz = { ...v.authz, enabled: true, transport: "http", pathPrefix: "/check" };
    });
    const objects = render(values, AUTHZ_POLICY);
    const { raw, config } = gatewayConfig(objects);
    assert.deepEqual(raw.authz, { http: "0.0.0.0:9191", pathPrefix: "/check", maxBodyBytes: 1048576 });
    assert.deepEqual(config.authz?.http, { host: "0.0.0.0", port: 9191 });
    assert.equal(config.authz?.grpc, null);
    assert.deepEqual(gatewayPorts(objects).at(-1), { name: "http-authz", containerPort: 9191, protocol: "TCP" });
    assert.deepEqual((named(objects, "Service", "edgeward-gateway-authz") as Loose).spec.ports, [{ name: "http-authz", port: 9191, targetPort: "http-authz", protocol: "TCP", appProtocol: "http" }]);
    assert.deepEqual(provider(objects), [{
      name: "edgeward-authz",
      envoyExtAuthzHttp: {
        service: "edgeward-gateway-authz.edge.svc.cluster.local",
        port: 9191,
        pathPrefix: "/check",
        timeout: "0.2s",
        failOpen: false,
        includeRequestHeadersInCheck: ["x-forwarded-client-cert", "x-request-id", "content-type", "x-envoy-auth-partial-body"],
        headersToUpstreamOnAllow: ["x-edgeward-decision", "x-edgeward-principal", "x-edgeward-request-id"],
        headersToDownstreamOnDeny: ["content-type", "retry-after", "x-edgeward-decision", "x-edgeward-request-id"],
        includeRequestBodyInCheck: { maxRequestBytes: 1048576, allowPartialMessage: true },
      },
    }]);
    assert.deepEqual((named(objects, "AuthorizationPolicy", "authz-callers") as Loose).spec.rules[0].to, [{ operation: { ports: ["9191"], paths: ["/check/*"] } }]);
    // Without a prefix the service takes the original paths, and so does the ALLOW rule.
    const bare = renderAuthzCombo(HTTP);
    assert.deepEqual(gatewayConfig(bare).raw.authz, { http: "0.0.0.0:9191", maxBodyBytes: 1048576 });
    assert.equal(provider(bare)[0].envoyExtAuthzHttp.pathPrefix, undefined);
    assert.deepEqual((named(bare, "AuthorizationPolicy", "authz-callers") as Loose).spec.rules[0].to, [{ operation: { ports: ["9191"] } }]);
  });

  it("Calico and Cilium select the runner's pods by service account too", () => {
    const calico = renderAuthzCombo({ ...GRPC, cni: "calico" }) as Loose[];
    const calicoIn = calico.find((o) => o.metadata.name === "authz-from-sidecars").spec;
    assert.deepEqual(calicoIn.ingress, [{
      action: "Allow",
      protocol: "TCP",
      source: { selector: "app.kubernetes.io/name == 'edgeward-runner'", serviceAccounts: { names: ["edgeward-runner"] } },
      destination: { ports: [9191] },
    }]);
    assert.deepEqual(calico.find((o) => o.metadata.name === "runner-to-authz").spec.egress[0].destination, {
      selector: "app.kubernetes.io/name == 'edgeward-gateway'",
      serviceAccounts: { names: ["edgeward-gateway"] },
      ports: [9191],
    });
    const cilium = renderAuthzCombo({ ...GRPC, cni: "cilium" }) as Loose[];
    assert.deepEqual(cilium.find((o) => o.metadata.name === "authz-from-sidecars").spec.ingress, [{
      fromEndpoints: [{ matchLabels: { "app.kubernetes.io/name": "edgeward-runner", "k8s:io.kubernetes.pod.namespace": "edge", "k8s:io.cilium.k8s.policy.serviceaccount": "edgeward-runner" } }],
      toPorts: [{ ports: [{ port: "9191", protocol: "TCP" }] }],
    }]);
  });

  it("port, clusterDomain, meshNamespace and the body limit follow the values", () => {
    const values = edited((v) => {
      v.meshNamespace = "mesh-system";
      v.gateway.limits.maxBodyBytes = 65536;
      v.authz = { ...v.authz, enabled: true, port: 9300, clusterDomain: "edge.internal" };
    });
    const objects = render(values, AUTHZ_POLICY);
    assert.equal(named(objects, "IstioOperator", "edgeward-authz").metadata.namespace, "mesh-system");
    assert.deepEqual(provider(objects)[0].envoyExtAuthzGrpc.service, "edgeward-gateway-authz.edge.svc.edge.internal");
    assert.equal(provider(objects)[0].envoyExtAuthzGrpc.port, 9300);
    // The check reads every body the gateway forwards: its limit is the gateway's.
    assert.equal(provider(objects)[0].envoyExtAuthzGrpc.includeRequestBodyInCheck.maxRequestBytes, 65536);
    assert.equal(gatewayConfig(objects).config.authz?.maxBodyBytes, 65536);
    assert.deepEqual(gatewayConfig(objects).config.authz?.grpc, { host: "0.0.0.0", port: 9300 });
    assert.deepEqual((named(objects, "NetworkPolicy", "runner-to-authz") as Loose).spec.egress[0].ports, [{ protocol: "TCP", port: 9300 }]);
    const larger = edited((v) => (v.authz = { ...v.authz, enabled: true, maxBodyBytes: 2097152 }));
    assert.equal(provider(render(larger, AUTHZ_POLICY))[0].envoyExtAuthzGrpc.includeRequestBodyInCheck.maxRequestBytes, 2097152);
  });

  it("protectRunner off: the provider and who may call it, for CUSTOM policies of your own; nothing on the runner", () => {
    const values = edited((v) => {
      v.authz = { ...v.authz, enabled: true, protectRunner: false, clients: [{ namespace: "llm", serviceAccount: "vllm", podLabels: { app: "vllm" } }, { namespace: "rag", serviceAccount: "*" }] };
    });
    // The gateway is no caller of the runner's checks here, so the example policy is enough.
    const objects = render(values, EXAMPLE_POLICY);
    const names = objects.map((o) => o.metadata.name);
    assert.equal(names.includes("runner-ext-authz"), false);
    assert.equal(names.includes("runner-to-authz"), false);
    assert.ok(names.includes("edgeward-authz") && names.includes("edgeward-gateway-authz"));
    assert.deepEqual((named(objects, "AuthorizationPolicy", "authz-callers") as Loose).spec.rules[0].from, [{ source: { principals: ["example.org/ns/llm/sa/vllm", "example.org/ns/rag/sa/*"] } }]);
    assert.deepEqual((named(objects, "NetworkPolicy", "authz-from-sidecars") as Loose).spec.ingress[0].from, [
      { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "llm" } }, podSelector: { matchLabels: { app: "vllm" } } },
      { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "rag" } } },
    ]);
  });

  it("protectRunner: a policy file that admits no request from the gateway is refused, saying why", () => {
    const values = authzValuesFor(GRPC);
    assert.throws(() => render(values, EXAMPLE_POLICY), (err: unknown) => {
      assert.ok(err instanceof AuthzError, String(err));
      assert.equal(err.key, "authz.protectRunner");
      assert.match(err.message, /the caller it names is the gateway \(spiffe:\/\/example\.org\/ns\/edge\/sa\/edgeward-gateway\)/);
      assert.match(err.message, /POST \/v1\/chat\/completions for model mistral-7b-instruct: no ALLOW policy matched/);
      assert.match(err.message, /or set authz\.protectRunner: false$/);
      return true;
    });
    // A rule bound to the runner's port matches gRPC checks (which carry the destination port), never HTTP ones.
    const byPort = { text: `${EXAMPLE_POLICY.text}---\n${`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-forwards, namespace: edge}
spec:
  rules:
    - from: [{source: {principals: ["example.org/ns/edge/sa/edgeward-gateway"]}}]
      to: [{operation: {methods: ["POST"], ports: ["8000"]}}]
`}`, file: "policy.yaml" };
    assert.doesNotThrow(() => render(values, byPort));
    assert.throws(() => render(authzValuesFor(HTTP), byPort), AuthzError);
    // A DENY on the gateway's identity wins over the ALLOW, as in the check.
    const denied = { text: `${AUTHZ_POLICY.text}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-gateway, namespace: edge}\nspec:\n  action: DENY\n  rules: [{from: [{source: {principals: ["example.org/ns/edge/sa/edgeward-gateway"]}}]}]\n`, file: "policy.yaml" };
    assert.throws(() => render(values, denied), /denied by DENY policy edge\/no-gateway/);
  });

  it("the policy rule admitting the gateway's own identity makes it no caller of itself", () => {
    const plain = renderCombo(ISTIO_K8S_SIGSTORE);
    const withAuthz = renderAuthzCombo(GRPC);
    const peers = (objects: readonly KubeObject[]) => (named(objects, "NetworkPolicy", "gateway-from-callers") as Loose).spec.ingress[0].from;
    assert.deepEqual(peers(withAuthz), peers(plain));
    assert.deepEqual(byKind(withAuthz, "ClusterSPIFFEID").map((o) => o.metadata.name).sort(), byKind(plain, "ClusterSPIFFEID").map((o) => o.metadata.name).sort());
    // The same policy file without authz: the gateway's identity is then an ordinary caller, as before.
    assert.ok(byKind(render(exampleValues(), AUTHZ_POLICY), "ClusterSPIFFEID").some((o) => o.metadata.name === "edge-edgeward-caller-edge-edgeward-gateway"));
  });

  it("is deterministic and reads back unchanged", () => {
    for (const c of AUTHZ_COMBOS) {
      const text = stringifyManifests(renderAuthzCombo(c));
      assert.equal(stringifyManifests(renderAuthzCombo(c).reverse()), text, authzComboName(c));
      assert.equal(stringifyManifests(parseManifests(text, "out.yaml")), text, authzComboName(c));
    }
  });

  it("a values file with an authz block parses; the example's commented block is that block", () => {
    assert.ok(EXAMPLE_VALUES_TEXT.includes("\n# authz:\n#   enabled: false\n"), "examples/deploy.yaml documents authz");
    const uncommented = EXAMPLE_VALUES_TEXT.replace(/^# (authz:.*)$/m, "$1").replace(/^# {3}(enabled: )false/m, "  $1true").replace(/^# {3}([a-zA-Z]\w*: .*)$/gm, "  $1");
    const v = parseValues(uncommented, "deploy.yaml");
    assert.deepEqual({ ...v.authz }, { enabled: true, transport: "grpc", port: 9191, protectRunner: true, clients: [], clusterDomain: "cluster.local" });
    assert.doesNotThrow(() => render(v, AUTHZ_POLICY));
  });
});

describe("render: bad authz values are refused, naming the key", () => {
  const withAuthz = (authz: string, edit: (t: string) => string = (t) => t) => `${edit(EXAMPLE_VALUES_TEXT)}\nauthz:\n${authz.replace(/^/gm, "  ")}\n`;
  const authzLine = (text: string, key: string) => text.split("\n").findIndex((l, i, all) => i > all.findIndex((x) => x === "authz:") && l.trimStart().startsWith(`${key}:`)) + 1;
  const CASES: { name: string; text: string; key: string; message: RegExp }[] = [
    { name: "mesh none", text: withAuthz("enabled: true", (t) => t.replace("mesh: istio ", "mesh: none ")), key: "authz.enabled", message: /authz\.enabled: needs mesh: istio .*not mesh: none$/ },
    { name: "mesh linkerd", text: withAuthz("enabled: true", (t) => t.replace("mesh: istio ", "mesh: linkerd ")), key: "authz.enabled", message: /authz\.enabled: needs mesh: istio .*not mesh: linkerd$/ },
    { name: "an unknown transport", text: withAuthz("enabled: true\ntransport: websocket"), key: "authz.transport", message: /authz\.transport: .*"grpc"/ },
    { name: "the gateway's own port", text: withAuthz("enabled: true\nport: 8443"), key: "authz.port", message: /authz\.port: must differ from gateway\.port and gateway\.adminPort$/ },
    { name: "a prefix with gRPC", text: withAuthz("enabled: true\npathPrefix: /check"), key: "authz.pathPrefix", message: /authz\.pathPrefix: set only with transport: http$/ },
    { name: "a prefix with a trailing slash", text: withAuthz("enabled: true\ntransport: http\npathPrefix: /check/"), key: "authz.pathPrefix", message: /authz\.pathPrefix: expected a path such as \/check/ },
    { name: "nothing would call it", text: withAuthz("enabled: true\nprotectRunner: false"), key: "authz.clients", message: /authz\.clients: with protectRunner: false, list the workloads/ },
    { name: "a body limit below the gateway's", text: withAuthz("enabled: true\nmaxBodyBytes: 8192"), key: "authz.maxBodyBytes", message: /authz\.maxBodyBytes: is below the gateway's maxBodyBytes \(1048576\)/ },
    { name: "a default per-caller budget with protectRunner", text: withAuthz("enabled: true", (t) => t.replace("    maxTokens: 1024\n", "    maxTokens: 1024\n    requestsPerMinute: 600\n")), key: "gateway.limits.requestsPerMinute", message: /gateway\.limits\.requestsPerMinute: with authz\.protectRunner .* throttle all callers together/ },
    { name: "an unknown key", text: withAuthz("enabled: true\nprovider: x"), key: "authz", message: /authz: unknown key\(s\) "provider"$/ },
  ];
  for (const c of CASES) {
    it(c.name, () => {
      assert.throws(() => parseValues(c.text, "deploy.yaml"), (err: unknown) => {
        assert.ok(err instanceof ValuesError, String(err));
        assert.match(err.message, /^deploy\.yaml:\d+: /);
        assert.match(err.message, c.message);
        assert.equal(err.key, c.key);
        return true;
      });
    });
  }

  it("the error's line is the authz key's own line", () => {
    const text = withAuthz("enabled: true\ntransport: grpc\npathPrefix: /check");
    assert.throws(() => parseValues(text, "deploy.yaml"), (err: unknown) => err instanceof ValuesError && err.line === authzLine(text, "pathPrefix"));
  });

  it("the same keys are fine while authz is off", () => {
    assert.doesNotThrow(() => parseValues(withAuthz("enabled: false\nport: 8443", (t) => t.replace("mesh: istio ", "mesh: none ")), "deploy.yaml"));
  });
});

describe("examples/k3s: the single-node example renders and audits clean with its documented exceptions", () => {
  it("render → audit --exceptions → nothing at or above low", async () => {
    const out = mkdtempSync(join(tmpdir(), "edgeward-k3s-"));
    try {
      const rendered = await runCli(["render", "--config", "examples/k3s/values.yaml", "-o", out]);
      assert.equal(rendered.code, 0, rendered.stderr);
      const audited = await runCli(["audit", out, "--exceptions", "examples/k3s/audit-exceptions.yaml", "--fail-on", "low"]);
      assert.equal(audited.code, 0, audited.stdout + audited.stderr);
      assert.match(audited.stdout, /0 findings, 4 suppressed/);
      const kyverno = readFileSync(join(out, "clusterpolicy.yaml"), "utf8");
      assert.match(kyverno, /ignoreTlog: true/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
