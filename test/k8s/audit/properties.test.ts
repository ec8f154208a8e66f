import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ALL_CHECKS, audit, SEVERITIES } from "../../../src/k8s/audit/index.ts";
import { formatJson } from "../../../src/k8s/audit/output/json.ts";
import { formatJunit } from "../../../src/k8s/audit/output/junit.ts";
import { formatSarif } from "../../../src/k8s/audit/output/sarif.ts";
import { formatText } from "../../../src/k8s/audit/output/text.ts";
import { calicoSelector } from "../../../src/k8s/audit/selectors.ts";
import type { KubeObject } from "../../../src/k8s/objects.ts";

// Field names the checks look for, so random objects reach deep into their code paths.
const KEYS = [
  "spec", "template", "jobTemplate", "metadata", "labels", "annotations", "containers", "initContainers", "ephemeralContainers",
  "securityContext", "capabilities", "add", "drop", "runAsNonRoot", "runAsUser", "privileged", "seccompProfile", "type",
  "appArmorProfile", "seLinuxOptions", "windowsOptions", "hostProcess", "procMount", "sysctls", "name", "value", "valueFrom",
  "hostNetwork", "hostUsers", "os", "volumes", "hostPath", "nfs", "emptyDir", "persistentVolumeClaim", "readOnly", "volumeMounts",
  "mountPath", "ports", "port", "hostPort", "containerPort", "targetPort", "endPort", "protocol", "image", "args", "command", "env",
  "resources", "requests", "limits", "nvidia.com/gpu", "readinessProbe", "livenessProbe", "httpGet", "path", "host", "tcpSocket",
  "lifecycle", "preStop", "podSelector", "namespaceSelector", "matchLabels", "matchExpressions", "key", "operator", "values",
  "policyTypes", "types", "ingress", "egress", "from", "to", "ipBlock", "cidr", "except", "selector", "action", "source",
  "destination", "nets", "serviceAccounts", "services", "endpointSelector", "specs", "fromEndpoints", "toEndpoints", "toPorts",
  "toEntities", "fromCIDRSet", "toFQDNs", "ingressDeny", "enableDefaultDeny", "mtls", "mode", "portLevelMtls", "rules",
  "principals", "notPrincipals", "targetRefs", "kind", "subjects", "automountServiceAccountToken", "serviceAccountName", "data",
  "targets", "rego", "code", "verifyImages", "attestors", "entries", "keys", "failureAction", "validationFailureAction",
  "authorities", "static", "endpoints", "externalIPs", "any", "matchNames",
];

const scalar = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom("ALL", "true", "Unconfined", "RuntimeDefault", "0.0.0.0/0", "STRICT", "PERMISSIVE", "spiffe://td/ns/a/sa/b", "vllm/vllm-openai:latest", "ollama/ollama", "llama-server", "serve", "runner", "--port", "8000", "/health", "all()", "app == 'x' && has(y)", "!(", "{", "cosign_verified(i) { true }", "LoadBalancer", "metrics", "DB_PASSWORD", "-----BEGIN PRIVATE KEY-----", "edgeward", "windows", "53", "http"),
  fc.integer({ min: -1, max: 70000 }),
  fc.boolean(),
  fc.constant(null),
);

const { value } = fc.letrec<{ value: unknown; object: Record<string, unknown>; list: unknown[] }>((tie) => ({
  value: fc.oneof({ depthSize: "small", withCrossShrink: true }, scalar, tie("object"), tie("list")),
  object: fc.dictionary(fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 6 })), tie("value"), { maxKeys: 5 }),
  list: fc.array(tie("value"), { maxLength: 3 }),
}));

const stringMap = fc.dictionary(
  fc.constantFrom("app", "k8s-app", "edgeward.dev/skip", "sidecar.istio.io/inject", "linkerd.io/inject", "container.apparmor.security.beta.kubernetes.io/a", "policy.sigstore.dev/include"),
  fc.constantFrom("x", "web", "kube-dns", "pss.*,zt.image-latest", "false", "enabled", "unconfined", "true", ""),
  { maxKeys: 3 },
);

const kinds: [string, string][] = [
  ["v1", "Pod"], ["apps/v1", "Deployment"], ["apps/v1", "StatefulSet"], ["apps/v1", "DaemonSet"], ["batch/v1", "Job"], ["batch/v1", "CronJob"],
  ["v1", "Service"], ["v1", "ServiceAccount"], ["v1", "ConfigMap"], ["v1", "Namespace"], ["rbac.authorization.k8s.io/v1", "RoleBinding"],
  ["networking.k8s.io/v1", "NetworkPolicy"], ["projectcalico.org/v3", "NetworkPolicy"], ["projectcalico.org/v3", "GlobalNetworkPolicy"],
  ["cilium.io/v2", "CiliumNetworkPolicy"], ["cilium.io/v2", "CiliumClusterwideNetworkPolicy"], ["security.istio.io/v1", "PeerAuthentication"],
  ["security.istio.io/v1", "AuthorizationPolicy"], ["templates.gatekeeper.sh/v1", "ConstraintTemplate"], ["kyverno.io/v1", "ClusterPolicy"],
  ["policy.sigstore.dev/v1beta1", "ClusterImagePolicy"], ["monitoring.coreos.com/v1", "ServiceMonitor"], ["example.com/v1", "Widget"],
];

const manifest: fc.Arbitrary<KubeObject> = fc
  .record({
    type: fc.constantFrom(...kinds),
    name: fc.constantFrom("a", "web", "vllm", "default"),
    namespace: fc.option(fc.constantFrom("app", "llm", "istio-system", "kube-system"), { nil: undefined }),
    labels: fc.option(stringMap, { nil: undefined }),
    annotations: fc.option(stringMap, { nil: undefined }),
    body: fc.dictionary(fc.constantFrom("spec", "specs", "data", "subjects", "automountServiceAccountToken"), value, { maxKeys: 3 }),
  })
  .map(({ type, name, namespace, labels, annotations, body }) => ({
    ...body,
    apiVersion: type[0],
    kind: type[1],
    metadata: { name, ...(namespace ? { namespace } : {}), ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) },
  }));

const ids = new Set(ALL_CHECKS.map((c) => c.id));

describe("audit on arbitrary manifests", () => {
  it("never throws, and every finding is well formed", () => {
    fc.assert(
      fc.property(fc.array(manifest, { maxLength: 8 }), (objects) => {
        const report = audit(objects);
        for (const f of report.findings) {
          assert.ok(ids.has(f.checkId));
          assert.ok((SEVERITIES as readonly string[]).includes(f.severity));
          assert.equal(typeof f.path, "string");
          assert.ok(f.message.length > 0);
        }
        for (const format of [formatText, formatJson, formatSarif, formatJunit]) format(report, { failOn: "low", toolVersion: "0" });
      }),
      { numRuns: 400 },
    );
  });

  it("Calico selectors of any text compile without throwing", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 })), (text, labels) => {
        calicoSelector(text).matches(labels);
      }),
      { numRuns: 500 },
    );
  });
});
