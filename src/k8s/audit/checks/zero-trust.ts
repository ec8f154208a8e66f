import { apiGroup } from "../../objects.ts";
import type { KubeObject } from "../../objects.ts";
import type { Check, CheckFinding, Reference, Subject } from "../check.ts";
import { asArray, asObject, asString, asStringMap, asStrings, jsonPath } from "../fields.ts";
import type { Json } from "../fields.ts";
import { allowsDns, allowsEverything } from "../network-policies.ts";
import type { NetPolicy, NetRule } from "../network-policies.ts";
import { containersOf, namespaceOf } from "../object-index.ts";
import type { IstioPolicy, ObjectIndex, PodTemplate } from "../object-index.ts";
import { parseImage } from "../runners.ts";
import { credentialAssignment, credentialShape, isSensitiveName, isTrivialValue } from "../secrets.ts";
import { labelSelector } from "../selectors.ts";

const K8S_NETPOL: Reference = { title: "Kubernetes: Network Policies", url: "https://kubernetes.io/docs/concepts/services-networking/network-policies/" };
const ISTIO_PEER_AUTHN: Reference = { title: "Istio: PeerAuthentication", url: "https://istio.io/latest/docs/reference/config/security/peer_authentication/" };
const ISTIO_AUTHZ: Reference = { title: "Istio: Authorization Policy", url: "https://istio.io/latest/docs/reference/config/security/authorization-policy/" };

export const describePod = (pod: PodTemplate) => `${pod.owner.kind} ${pod.namespace}/${pod.owner.metadata.name}`;
const describeObject = (o: KubeObject) => `${o.kind} ${namespaceOf(o)}/${o.metadata.name}`;

/** The Namespace object when the manifests have it; otherwise the namespace as a subject, anchored at its first pod. */
function namespaceSubject(index: ObjectIndex, ns: string): KubeObject | Subject {
  const o = index.namespaceObject(ns);
  if (o !== undefined) return o;
  const anchor = index.pods.find((p) => p.namespace === ns)?.owner;
  return anchor === undefined ? { kind: "Namespace", name: ns } : { kind: "Namespace", name: ns, anchor };
}

// ---- NetworkPolicy: default deny, egress restriction, DNS ---------------------------------

// A rule broad enough that the policy no longer denies by default: every port, to any peer
// chosen without regard to labels (anyone, a CIDR, a whole namespace).
function isBroad(rule: NetRule): boolean {
  return rule.action === "Allow" && rule.ports === "any" && (rule.peers === "any" || rule.peers.some((p) => p.wide));
}

function defaultDeny(direction: "ingress" | "egress"): Check {
  const Dir = direction === "ingress" ? "Ingress" : "Egress";
  return {
    id: `zt.default-deny-${direction}`,
    severity: "high",
    category: "Network segmentation",
    title: `Every namespace needs a default-deny ${direction} NetworkPolicy`,
    remediation: `Add a NetworkPolicy with podSelector: {} and policyTypes: [${Dir}] and no ${direction} rules (or the Calico/Cilium equivalent) to each namespace, then allow only the flows each workload needs.`,
    references: [K8S_NETPOL, { title: "Kubernetes: default deny all ingress and all egress traffic", url: "https://kubernetes.io/docs/concepts/services-networking/network-policies/#default-deny-all-ingress-and-all-egress-traffic" }],
    aliases: { kubeScore: "pod-networkpolicy", polaris: "missingNetworkPolicy", kubescape: "C-0260" },
    profiles: ["zero-trust"],
    run(index) {
      const out: CheckFinding[] = [];
      for (const ns of index.podNamespaces()) {
        const denies = index.networkPolicies.some((p) => {
          const d = p[direction];
          return d !== undefined && p.selectsWholeNamespace(ns) && !d.rules.some(isBroad);
        });
        if (denies) continue;
        out.push({
          object: namespaceSubject(index, ns),
          path: "",
          message: `namespace ${ns} has no default-deny ${direction} NetworkPolicy: no policy selects every pod for ${Dir} while admitting nothing broadly`,
        });
      }
      return out;
    },
  };
}

const egressUnrestricted: Check = {
  id: "zt.egress-unrestricted",
  severity: "high",
  category: "Network segmentation",
  title: "Egress rules must name their destinations and ports",
  remediation: "Replace the rule with rules naming the destinations (pod/namespace selectors, or specific CIDRs) and ports each workload needs.",
  references: [K8S_NETPOL],
  aliases: {},
  profiles: ["zero-trust"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const p of index.networkPolicies) {
      for (const rule of p.egress?.rules ?? []) {
        if (!allowsEverything(rule)) continue;
        const to = rule.peers === "any" ? "any destination" : rule.peers.filter((x) => x.universal).map((x) => x.describe).join(", ");
        out.push({ object: p.object, path: rule.path, message: `egress rule allows ${to} on every port` });
      }
    }
    return out;
  },
};

// The policy to add the missing rule to: the namespace's default deny when there is one.
function primaryPolicy(pod: PodTemplate, policies: NetPolicy[]): NetPolicy {
  return policies.find((p) => p.selectsWholeNamespace(pod.namespace)) ?? (policies[0] as NetPolicy);
}

const egressDns: Check = {
  id: "zt.egress-dns",
  severity: "medium",
  category: "Network segmentation",
  title: "Restricted egress must allow DNS explicitly",
  remediation: "Add an egress rule to the cluster DNS: namespaceSelector kubernetes.io/metadata.name=kube-system plus podSelector k8s-app=kube-dns, ports 53/UDP and 53/TCP.",
  references: [K8S_NETPOL, { title: "Kubernetes: DNS for Services and Pods", url: "https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/" }],
  aliases: {},
  profiles: ["zero-trust"],
  run(index) {
    const byPolicy = new Map<NetPolicy, PodTemplate[]>();
    for (const pod of index.pods) {
      if (pod.spec["hostNetwork"] === true) continue;
      const isolating = index.isolating(pod, "egress");
      if (isolating.length === 0) continue;
      if (isolating.some(({ rules }) => rules.rules.some(allowsDns))) continue;
      const primary = primaryPolicy(pod, isolating.map((i) => i.policy));
      byPolicy.set(primary, [...(byPolicy.get(primary) ?? []), pod]);
    }
    return [...byPolicy].map(([policy, pods]) => ({
      object: policy.object,
      path: policy.egress?.path ?? jsonPath(policy.base, "egress"),
      message: `egress of ${pods.map(describePod).join(", ")} is restricted but no rule allows DNS (port 53, or the cluster DNS pods)`,
    }));
  },
};

// ---- Istio: mTLS and authorization ---------------------------------------------------------

function mtlsMode(p: IstioPolicy): string {
  const mode = asString(asObject(p.spec["mtls"])?.["mode"]);
  return mode === undefined || mode === "" ? "UNSET" : mode;
}

function annotation(index: ObjectIndex, pod: PodTemplate, key: string): string | undefined {
  return pod.annotations[key] ?? asStringMap(index.namespaceObject(pod.namespace)?.metadata.annotations)[key];
}

// Linkerd meshes by injection and enforces mTLS-only inbound with this default policy.
function linkerdStrict(index: ObjectIndex, pod: PodTemplate): boolean {
  if (annotation(index, pod, "linkerd.io/inject") !== "enabled") return false;
  const policy = annotation(index, pod, "config.linkerd.io/default-inbound-policy");
  return policy === "all-authenticated" || policy === "deny";
}

function optsOutOfIstio(pod: PodTemplate): string | undefined {
  if (pod.annotations["sidecar.istio.io/inject"] === "false") return jsonPath(pod.metaPath, "annotations", "sidecar.istio.io/inject");
  if (pod.labels["sidecar.istio.io/inject"] === "false") return jsonPath(pod.metaPath, "labels", "sidecar.istio.io/inject");
  return undefined;
}

const mtlsStrict: Check = {
  id: "zt.mtls-strict",
  severity: "high",
  category: "Workload identity",
  title: "Every serving workload must accept mutual TLS only (PeerAuthentication STRICT)",
  remediation: "Apply a PeerAuthentication with mtls.mode: STRICT mesh-wide (in the root namespace, no selector) or in the workload's namespace, and remove PERMISSIVE/DISABLE overrides.",
  references: [ISTIO_PEER_AUTHN, { title: "Istio: Mutual TLS Migration", url: "https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/" }],
  aliases: {},
  profiles: ["zero-trust"],
  run(index) {
    const out: CheckFinding[] = [];
    const weak = new Map<IstioPolicy, PodTemplate[]>();
    for (const pod of index.pods) {
      if (!pod.serving || pod.spec["hostNetwork"] === true) continue;
      if (linkerdStrict(index, pod)) continue;
      const optOut = optsOutOfIstio(pod);
      if (optOut !== undefined) {
        out.push({ object: pod.owner, path: optOut, message: `${describePod(pod)} opts out of the Istio sidecar, so no PeerAuthentication applies and it accepts plaintext` });
        continue;
      }
      const levels = index.peerAuthenticationChain(pod);
      // Port-level overrides only exist on workload-selecting policies.
      for (const p of levels[0] ?? []) {
        const ports = asObject(p.spec["portLevelMtls"]) ?? {};
        for (const [port, v] of Object.entries(ports)) {
          const mode = asString(asObject(v)?.["mode"]);
          if (mode === "PERMISSIVE" || mode === "DISABLE") {
            out.push({ object: p.object, path: jsonPath("spec", "portLevelMtls", port, "mode"), message: `port ${port} of ${describePod(pod)} accepts ${mode === "DISABLE" ? "plaintext only" : "plaintext"} (mode ${mode})` });
          }
        }
      }
      let decided: IstioPolicy | undefined;
      for (const level of levels) {
        const set = level.filter((p) => mtlsMode(p) !== "UNSET");
        if (set.length === 0) continue;
        // Istio uses the oldest of several; the manifests do not say which, so any weak one counts.
        decided = set.find((p) => mtlsMode(p) !== "STRICT") ?? set[0];
        break;
      }
      if (decided === undefined) {
        const message =
          index.peerAuthentications.length === 0
            ? `nothing requires mutual TLS for ${describePod(pod)}: no Istio PeerAuthentication, and no Linkerd all-authenticated inbound policy, in these manifests`
            : `no PeerAuthentication sets mtls.mode STRICT for ${describePod(pod)} (mesh-wide in ${index.meshRootNamespace}, its namespace, or its labels); Istio's default is PERMISSIVE`;
        out.push({ object: pod.owner, path: "", message });
      } else if (mtlsMode(decided) !== "STRICT") {
        weak.set(decided, [...(weak.get(decided) ?? []), pod]);
      }
    }
    for (const [p, pods] of weak) {
      out.push({ object: p.object, path: jsonPath("spec", "mtls", "mode"), message: `mtls.mode ${mtlsMode(p)} applies to ${pods.map(describePod).join(", ")}: they accept plaintext` });
    }
    return out;
  },
};

function istioAction(p: IstioPolicy): string {
  return asString(p.spec["action"]) ?? "ALLOW";
}

const authzSelecting: Check = {
  id: "zt.authz-policy",
  severity: "high",
  category: "Authorization",
  title: "Every serving workload must be selected by an ALLOW (or CUSTOM) AuthorizationPolicy",
  remediation: "Add an Istio AuthorizationPolicy selecting the workload (or its namespace) that allows only the callers it serves; with an ALLOW policy in place, everything else is denied.",
  references: [ISTIO_AUTHZ, { title: "Istio security best practices: use default-deny patterns", url: "https://istio.io/latest/docs/ops/best-practices/security/#use-default-deny-patterns" }],
  aliases: {},
  profiles: ["zero-trust"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const pod of index.pods) {
      if (!pod.serving || pod.spec["hostNetwork"] === true) continue;
      if (annotation(index, pod, "linkerd.io/inject") === "enabled" && annotation(index, pod, "config.linkerd.io/default-inbound-policy") === "deny") continue;
      const policies = index.authorizationPoliciesFor(pod);
      if (policies.some((p) => istioAction(p) === "ALLOW" || istioAction(p) === "CUSTOM")) continue;
      const deny = policies.filter((p) => istioAction(p) === "DENY");
      out.push({
        object: pod.owner,
        path: "",
        message: `no ALLOW AuthorizationPolicy selects ${describePod(pod)}${deny.length ? ` (only DENY: ${deny.map((p) => p.object.metadata.name).join(", ")})` : ""}, so nothing limits which peers may call it`,
      });
    }
    return out;
  },
};

const authzAllowAll: Check = {
  id: "zt.authz-allow-all",
  severity: "high",
  category: "Authorization",
  title: "ALLOW AuthorizationPolicies must not contain a rule that matches every request",
  remediation: "Give the rule a `from` (principals or namespaces), a `to` (methods, paths) or a `when` condition; an empty rule allows everything.",
  references: [ISTIO_AUTHZ],
  aliases: {},
  profiles: ["zero-trust"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const p of index.authorizationPolicies) {
      if (istioAction(p) !== "ALLOW") continue;
      asArray(p.spec["rules"]).forEach((r, i) => {
        const rule = asObject(r);
        if (rule === undefined) return;
        if (asArray(rule["from"]).length === 0 && asArray(rule["to"]).length === 0 && asArray(rule["when"]).length === 0) {
          out.push({ object: p.object, path: jsonPath("spec", "rules", i), message: "this rule has no from, to or when, so it allows every request" });
        }
      });
    }
    return out;
  },
};

const spiffePrincipal: Check = {
  id: "zt.spiffe-principal",
  severity: "high",
  category: "Authorization",
  title: "Istio principals are written without spiffe:// (those with it never match)",
  remediation: 'Write principals as "<trust-domain>/ns/<namespace>/sa/<service-account>"; Istio adds the spiffe:// scheme itself.',
  references: [ISTIO_AUTHZ, { title: "Istio: Source.principals", url: "https://istio.io/latest/docs/reference/config/security/authorization-policy/#Source" }],
  aliases: {},
  profiles: ["zero-trust"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const p of index.authorizationPolicies) {
      const action = istioAction(p);
      const effect = action === "DENY" ? "so this DENY rule never blocks that caller" : action === "ALLOW" ? "so this rule never allows that caller" : "so it never matches";
      asArray(p.spec["rules"]).forEach((r, i) => {
        asArray(asObject(r)?.["from"]).forEach((f, j) => {
          const source = asObject(asObject(f)?.["source"]);
          for (const field of ["principals", "notPrincipals"] as const) {
            asArray(source?.[field]).forEach((v, k) => {
              if (typeof v === "string" && v.startsWith("spiffe://")) {
                out.push({
                  object: p.object,
                  path: jsonPath("spec", "rules", i, "from", j, "source", field, k),
                  message: `Istio matches ${field} as "${v.slice("spiffe://".length)}"; "${v}" never matches, ${effect}`,
                });
              }
            });
          }
        });
      });
    }
    return out;
  },
};

// ---- Service account tokens ---------------------------------------------------------------

const automountToken: Check = {
  id: "zt.automount-token",
  severity: "medium",
  category: "Workload identity",
  title: "Service account tokens must not be mounted into pods that do not call the API server",
  remediation: "Set automountServiceAccountToken: false on the ServiceAccount (or the pod); bind a Role first if the workload really calls the Kubernetes API.",
  references: [
    { title: "Kubernetes: Opt out of API credential automounting", url: "https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/#opt-out-of-api-credential-automounting" },
  ],
  aliases: { polaris: "automountServiceAccountToken", kubescape: "C-0034" },
  profiles: ["zero-trust"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const sa of index.ofKind("", "ServiceAccount")) {
      const ns = namespaceOf(sa);
      if (sa["automountServiceAccountToken"] === false || index.serviceAccountIsBound(ns, sa.metadata.name)) continue;
      out.push({ object: sa, path: "automountServiceAccountToken", message: `ServiceAccount ${ns}/${sa.metadata.name} has no RoleBinding in these manifests but its token is mounted into every pod using it` });
    }
    for (const pod of index.pods) {
      const own = pod.spec["automountServiceAccountToken"];
      if (own === false || index.serviceAccountIsBound(pod.namespace, pod.serviceAccountName)) continue;
      const sa = index.serviceAccount(pod.namespace, pod.serviceAccountName);
      // With the pod unset, a ServiceAccount in the manifests decides; its own finding covers it.
      if (own !== true && sa !== undefined) continue;
      out.push({
        object: pod.owner,
        path: jsonPath(pod.specPath, "automountServiceAccountToken"),
        message: `${describePod(pod)} mounts the token of ServiceAccount ${pod.serviceAccountName}, which no RoleBinding in these manifests grants anything`,
      });
    }
    return out;
  },
};

// ---- Secrets in clear -----------------------------------------------------------------------

const secretInEnv: Check = {
  id: "zt.secret-in-env",
  severity: "high",
  category: "Secrets",
  title: "Credentials must not be written as literal environment values",
  remediation: "Move the value into a Secret (or Vault) and reference it with env[].valueFrom.secretKeyRef.",
  references: [{ title: "Kubernetes: Secrets good practices", url: "https://kubernetes.io/docs/concepts/security/secrets-good-practices/" }],
  aliases: { kubescape: "C-0012" },
  profiles: ["zero-trust"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const pod of index.pods) {
      for (const c of containersOf(pod)) {
        asArray(c.container["env"]).forEach((e, i) => {
          const env = asObject(e);
          const name = asString(env?.["name"]) ?? "";
          const value = env?.["value"];
          if (typeof value !== "string" || env?.["valueFrom"] !== undefined) return;
          const shape = credentialShape(value);
          if (shape === undefined && !(isSensitiveName(name) && !isTrivialValue(value))) return;
          out.push({
            object: pod.owner,
            path: jsonPath(c.path, "env", i, "value"),
            message: `container "${c.name}" sets ${name} to a literal ${shape ?? "credential"}`,
          });
        });
      }
    }
    return out;
  },
};

const secretInConfigMap: Check = {
  id: "zt.secret-in-configmap",
  severity: "high",
  category: "Secrets",
  title: "Credentials must not be stored in ConfigMaps",
  remediation: "Move the credential into a Secret (or Vault) and mount or reference it from there; ConfigMaps are readable by anyone who can read config.",
  references: [{ title: "Kubernetes: ConfigMaps", url: "https://kubernetes.io/docs/concepts/configuration/configmap/" }],
  aliases: { kubescape: "C-0012" },
  profiles: ["zero-trust"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const cm of index.ofKind("", "ConfigMap")) {
      for (const [key, value] of Object.entries(asObject(cm["data"]) ?? {})) {
        if (typeof value !== "string") continue;
        const shape = credentialShape(value);
        const assigned = shape === undefined ? credentialAssignment(value) : undefined;
        const named = isSensitiveName(key) && !isTrivialValue(value) && !value.includes("\n");
        if (shape === undefined && assigned === undefined && !named) continue;
        const what = shape ?? (named ? `a literal value for ${key}` : `a literal value for "${assigned}"`);
        out.push({ object: cm, path: jsonPath("data", key), message: `ConfigMap ${namespaceOf(cm)}/${cm.metadata.name} key ${JSON.stringify(key)} contains ${what}` });
      }
    }
    return out;
  },
};

// ---- Images -----------------------------------------------------------------------------------

function eachImage(index: ObjectIndex, fn: (image: string, path: string, pod: PodTemplate, container: string) => CheckFinding | undefined): CheckFinding[] {
  const out: CheckFinding[] = [];
  for (const pod of index.pods) {
    for (const c of containersOf(pod)) {
      const image = asString(c.container["image"]);
      if (image === undefined || image.trim() === "") continue;
      const f = fn(image, jsonPath(c.path, "image"), pod, c.name);
      if (f) out.push(f);
    }
  }
  return out;
}

const imageLatest: Check = {
  id: "zt.image-latest",
  severity: "high",
  category: "Supply chain",
  title: "Images must not use the :latest tag or no tag",
  remediation: "Pin the image to a release tag and its digest: registry/repo:1.2.3@sha256:….",
  references: [{ title: "Kubernetes: Images (image names, tags and digests)", url: "https://kubernetes.io/docs/concepts/containers/images/#image-names" }],
  aliases: { kubeScore: "container-image-tag", polaris: "tagNotSpecified", trivy: "KSV013" },
  profiles: ["zero-trust"],
  run: (index) =>
    eachImage(index, (image, path, pod, container) => {
      const ref = parseImage(image);
      if (ref.digest !== undefined || (ref.tag !== undefined && ref.tag !== "latest")) return undefined;
      return { object: pod.owner, path, message: `container "${container}" runs ${JSON.stringify(image)}, ${ref.tag === undefined ? "with no tag (:latest)" : "tagged :latest"}: what runs changes whenever the tag moves` };
    }),
};

const imageDigest: Check = {
  id: "zt.image-digest",
  severity: "medium",
  category: "Supply chain",
  title: "Images must be pinned by digest",
  remediation: "Append the image's digest (registry/repo:tag@sha256:…) so the admitted and verified image is the one that runs.",
  references: [{ title: "Kubernetes: Images (image names, tags and digests)", url: "https://kubernetes.io/docs/concepts/containers/images/#image-names" }],
  aliases: {},
  profiles: ["zero-trust"],
  run: (index) =>
    eachImage(index, (image, path, pod, container) => {
      const ref = parseImage(image);
      // Untagged and :latest images are zt.image-latest's.
      if (ref.digest !== undefined || ref.tag === undefined || ref.tag === "latest") return undefined;
      return { object: pod.owner, path, message: `container "${container}" runs ${JSON.stringify(image)} by tag only; a tag can be moved to another image` };
    }),
};

// ---- Signed-image admission -------------------------------------------------------------------

const VERIFY_NAME = /verif|sign|cosign|notary|notation|attest|ratify|provenance|trusted/i;

function regoSources(o: KubeObject): { rego: string; path: string }[] {
  const out: { rego: string; path: string }[] = [];
  asArray(asObject(o["spec"])?.["targets"]).forEach((t, i) => {
    const target = asObject(t);
    const rego = asString(target?.["rego"]);
    if (rego !== undefined) out.push({ rego, path: jsonPath("spec", "targets", i, "rego") });
    asArray(target?.["code"]).forEach((c, j) => {
      const r = asString(asObject(asObject(c)?.["source"])?.["rego"]);
      if (r !== undefined) out.push({ rego: r, path: jsonPath("spec", "targets", i, "code", j, "source", "rego") });
    });
  });
  return out;
}

/**
 * Verification rules in Rego that hold unconditionally: `cosign_verified(image) { true }`,
 * `verified(img) if true`, `signature_valid(x) := true`, `default verified := true`.
 * Only rules whose name says they verify something count, so helpers are left alone.
 */
export function alwaysTrueRules(rego: string): string[] {
  const code = rego.replace(/#[^\n]*/g, "");
  const head = String.raw`^[ \t]*(?:default[ \t]+)?([A-Za-z_][\w]*)[ \t]*(?:\([^)\n]*\))?[ \t]*`;
  const forms = [
    new RegExp(`${head}(?:(?::=|=)[ \\t]*true[ \\t]*)?(?:if[ \\t]*)?\\{\\s*true\\s*\\}`, "gm"),
    new RegExp(`${head}(?::=|=)[ \\t]*true[ \\t]*$`, "gm"),
    new RegExp(`${head}if[ \\t]+true[ \\t]*$`, "gm"),
  ];
  const names = new Set<string>();
  for (const re of forms) {
    for (let m = re.exec(code); m !== null; m = re.exec(code)) {
      const name = m[1] as string;
      if (VERIFY_NAME.test(name)) names.add(name);
    }
  }
  return [...names].sort();
}

function isGatekeeperImageTemplate(o: KubeObject): boolean {
  return o.kind === "ConstraintTemplate" && apiGroup(o) === "templates.gatekeeper.sh" && regoSources(o).some(({ rego }) => /external_data|cosign|ratify|notation|signature|verif/i.test(rego));
}

function kyvernoVerifyRules(o: KubeObject): { rule: Json; path: string }[] {
  if (apiGroup(o) !== "kyverno.io" || (o.kind !== "ClusterPolicy" && o.kind !== "Policy")) return [];
  const out: { rule: Json; path: string }[] = [];
  asArray(asObject(o["spec"])?.["rules"]).forEach((r, i) => {
    asArray(asObject(r)?.["verifyImages"]).forEach((v, j) => {
      const rule = asObject(v);
      if (rule) out.push({ rule, path: jsonPath("spec", "rules", i, "verifyImages", j) });
    });
  });
  return out;
}

const isSigstorePolicy = (o: KubeObject) => o.kind === "ClusterImagePolicy" && apiGroup(o) === "policy.sigstore.dev";
const isKyvernoImagePolicy = (o: KubeObject) => o.kind === "ImageValidatingPolicy" && apiGroup(o) === "policies.kyverno.io";

function admissionObjects(index: ObjectIndex): KubeObject[] {
  return index.objects.filter((o) => isSigstorePolicy(o) || isKyvernoImagePolicy(o) || kyvernoVerifyRules(o).length > 0 || isGatekeeperImageTemplate(o));
}

const ADMISSION_REFS: readonly [Reference, ...Reference[]] = [
  { title: "Sigstore policy-controller: ClusterImagePolicy", url: "https://docs.sigstore.dev/policy-controller/overview/" },
  { title: "Kyverno: Verify Images", url: "https://kyverno.io/docs/policy-types/cluster-policy/verify-images/" },
  { title: "Ratify with Gatekeeper", url: "https://ratify.dev/docs/quickstarts/quickstart-manual" },
];

const admissionMissing: Check = {
  id: "zt.image-admission-missing",
  severity: "medium",
  category: "Supply chain",
  title: "Image signatures must be verified at admission",
  remediation: "Deploy signed-image admission: a Sigstore policy-controller ClusterImagePolicy, a Kyverno verifyImages policy, or a Gatekeeper ConstraintTemplate that calls Ratify.",
  references: ADMISSION_REFS,
  aliases: {},
  profiles: ["zero-trust"],
  run(index) {
    if (index.pods.length === 0) return [];
    const admission = admissionObjects(index);
    if (admission.length === 0) {
      const anchor = index.pods[0]?.owner;
      return [{ object: { kind: "Cluster", name: "cluster", ...(anchor ? { anchor } : {}) }, path: "", message: "no signed-image admission policy (ClusterImagePolicy, Kyverno verifyImages, or a Gatekeeper/Ratify ConstraintTemplate) in these manifests: any image is admitted" }];
    }
    // policy-controller only acts in namespaces that opt in.
    if (!admission.every(isSigstorePolicy)) return [];
    const out: CheckFinding[] = [];
    for (const ns of index.podNamespaces()) {
      const o = index.namespaceObject(ns);
      if (o === undefined || asStringMap(o.metadata.labels)["policy.sigstore.dev/include"] === "true") continue;
      out.push({ object: o, path: jsonPath("metadata", "labels", "policy.sigstore.dev/include"), message: `namespace ${ns} is not labelled policy.sigstore.dev/include: "true", so the policy-controller admits its images unverified` });
    }
    return out;
  },
};

// A Kyverno attestor entry that names something to verify against.
function attestorVerifies(a: unknown): boolean {
  const entries = asArray(asObject(a)?.["entries"]);
  return entries.some((e) => {
    const entry = asObject(e) ?? {};
    const keys = asObject(entry["keys"]);
    const certs = asObject(entry["certificates"]);
    return (
      (keys !== undefined && [keys["publicKeys"], keys["kms"], keys["secret"]].some((v) => v !== undefined && v !== null && v !== "")) ||
      (certs !== undefined && [certs["cert"], certs["certChain"]].some((v) => typeof v === "string" && v !== "")) ||
      asObject(entry["keyless"]) !== undefined ||
      asObject(entry["attestor"]) !== undefined
    );
  });
}

const admissionPlaceholder: Check = {
  id: "zt.image-admission-placeholder",
  severity: "critical",
  category: "Supply chain",
  title: "Signed-image admission must really verify (no always-true placeholder)",
  remediation: "Replace the placeholder with a real verification: keys or keyless identities in the ClusterImagePolicy authorities or Kyverno attestors, or a Gatekeeper rule calling the Ratify external-data provider; run it in enforce mode.",
  references: ADMISSION_REFS,
  aliases: {},
  profiles: ["zero-trust"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const o of index.objects) {
      if (o.kind === "ConstraintTemplate" && apiGroup(o) === "templates.gatekeeper.sh") {
        for (const { rego, path } of regoSources(o)) {
          const rules = alwaysTrueRules(rego);
          if (rules.length) out.push({ object: o, path, message: `Rego rule${rules.length > 1 ? "s" : ""} ${rules.join(", ")} always hold${rules.length > 1 ? "" : "s"} (body is just true): every image passes verification` });
        }
      } else if (isSigstorePolicy(o)) {
        const spec = asObject(o["spec"]) ?? {};
        const authorities = asArray(spec["authorities"]);
        if (authorities.length === 0) out.push({ object: o, path: jsonPath("spec", "authorities"), message: "ClusterImagePolicy has no authorities: it verifies nothing" });
        authorities.forEach((a, i) => {
          if (asString(asObject(asObject(a)?.["static"])?.["action"]) === "pass") {
            out.push({ object: o, path: jsonPath("spec", "authorities", i, "static", "action"), message: "authority static action pass admits every image without verification" });
          }
        });
        if (spec["mode"] === "warn") out.push({ object: o, path: jsonPath("spec", "mode"), message: "mode warn admits images that fail verification" });
      } else if (isKyvernoImagePolicy(o)) {
        if (asArray(asObject(o["spec"])?.["attestors"]).length === 0) out.push({ object: o, path: jsonPath("spec", "attestors"), message: "ImageValidatingPolicy has no attestors: it verifies nothing" });
      } else {
        const rules = kyvernoVerifyRules(o);
        const specAction = asString(asObject(o["spec"])?.["validationFailureAction"]);
        for (const { rule, path } of rules) {
          const legacyKey = typeof rule["key"] === "string" && rule["key"] !== "";
          const attestations = asArray(rule["attestations"]).some((a) => asArray(asObject(a)?.["attestors"]).some(attestorVerifies));
          if (!legacyKey && !attestations && !asArray(rule["attestors"]).some(attestorVerifies)) {
            out.push({ object: o, path: jsonPath(path, "attestors"), message: "verifyImages has no attestor with keys, certificates or keyless identities: it verifies nothing" });
          }
          const ruleAction = asString(rule["failureAction"]);
          const action = ruleAction ?? specAction ?? "Audit";
          if (action.toLowerCase() === "audit") {
            const where = ruleAction !== undefined ? jsonPath(path, "failureAction") : specAction !== undefined ? jsonPath("spec", "validationFailureAction") : jsonPath(path, "failureAction");
            out.push({ object: o, path: where, message: `verifyImages runs in Audit mode${ruleAction === undefined && specAction === undefined ? " (Kyverno's default)" : ""}: unsigned images are admitted and only reported` });
          }
        }
      }
    }
    return out;
  },
};

// ---- Metrics exposed publicly ----------------------------------------------------------------

const METRICS_NAME = /(^|[-_])(metrics|prom|prometheus|admin|debug|pprof|stats|monitoring|telemetry|management|actuator)($|[-_])/i;

function isPublicService(s: KubeObject): boolean {
  const spec = asObject(s["spec"]) ?? {};
  return spec["type"] === "LoadBalancer" || spec["type"] === "NodePort" || asArray(spec["externalIPs"]).length > 0;
}

/** Service port names (and target port names) that a ServiceMonitor scrapes on this Service. */
function scrapedPorts(index: ObjectIndex, service: KubeObject): Set<string> {
  const out = new Set<string>();
  for (const sm of index.ofKind("monitoring.coreos.com", "ServiceMonitor")) {
    const spec = asObject(sm["spec"]) ?? {};
    const nsSel = asObject(spec["namespaceSelector"]);
    const namespaces = asStrings(nsSel?.["matchNames"]);
    const inScope = nsSel?.["any"] === true || (namespaces.length ? namespaces.includes(namespaceOf(service)) : namespaceOf(sm) === namespaceOf(service));
    if (!inScope || !labelSelector(spec["selector"]).matches(asStringMap(service.metadata.labels))) continue;
    for (const e of asArray(spec["endpoints"])) {
      const endpoint = asObject(e) ?? {};
      for (const k of ["port", "targetPort"]) {
        const v = endpoint[k];
        if (typeof v === "string" || typeof v === "number") out.add(String(v));
      }
    }
  }
  return out;
}

const metricsPublic: Check = {
  id: "zt.metrics-public",
  severity: "high",
  category: "Network exposure",
  title: "Metrics and admin ports must not be exposed outside the cluster",
  remediation: "Serve metrics on a ClusterIP Service (scraped in-cluster, ideally over mTLS) and remove the port from the LoadBalancer/NodePort Service.",
  references: [{ title: "Kubernetes: Service types", url: "https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types" }],
  aliases: {},
  profiles: ["zero-trust"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const s of index.ofKind("", "Service")) {
      if (!isPublicService(s)) continue;
      const scraped = scrapedPorts(index, s);
      const spec = asObject(s["spec"]) ?? {};
      asArray(spec["ports"]).forEach((p, i) => {
        const port = asObject(p) ?? {};
        const name = asString(port["name"]) ?? "";
        const target = port["targetPort"];
        const reasons: string[] = [];
        if (METRICS_NAME.test(name)) reasons.push(`is named ${JSON.stringify(name)}`);
        else if (typeof target === "string" && METRICS_NAME.test(target)) reasons.push(`targets port ${JSON.stringify(target)}`);
        if (scraped.has(name) || (target !== undefined && scraped.has(String(target)))) reasons.push("is scraped by a ServiceMonitor");
        if (reasons.length === 0) return;
        out.push({ object: s, path: jsonPath("spec", "ports", i), message: `${String(spec["type"] ?? "Service")} ${describeObject(s)} exposes port ${String(port["port"] ?? "?")} which ${reasons.join(" and ")}` });
      });
    }
    return out;
  },
};

export const ZERO_TRUST_CHECKS: readonly Check[] = [
  defaultDeny("ingress"),
  defaultDeny("egress"),
  egressUnrestricted,
  egressDns,
  mtlsStrict,
  authzSelecting,
  authzAllowAll,
  spiffePrincipal,
  automountToken,
  secretInEnv,
  secretInConfigMap,
  imageLatest,
  imageDigest,
  admissionMissing,
  admissionPlaceholder,
  metricsPublic,
];
