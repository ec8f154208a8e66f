import { apiGroup, objectKey } from "../objects.ts";
import type { KubeObject } from "../objects.ts";
import { asArray, asObject, asString, asStringMap, jsonPath } from "./fields.ts";
import type { Json } from "./fields.ts";
import { compileNetworkPolicies } from "./network-policies.ts";
import type { Direction, NetPolicy } from "./network-policies.ts";
import { istioSelector } from "./selectors.ts";
import type { Labels, Selector } from "./selectors.ts";

/** Istio's default root namespace: policies there apply mesh-wide. */
export const DEFAULT_MESH_ROOT_NAMESPACE = "istio-system";

/** A pod, or the pod template of a workload: what every pod-level check looks at. */
export interface PodTemplate {
  readonly owner: KubeObject;
  readonly key: string;
  /** The owner's namespace; "default" when the manifest leaves it out (as kubectl does without -n). */
  readonly namespace: string;
  /** JSON path of the pod spec in the owner, e.g. "spec.template.spec". */
  readonly specPath: string;
  /** JSON path of the pod metadata in the owner, e.g. "spec.template.metadata". */
  readonly metaPath: string;
  readonly spec: Json;
  readonly labels: Labels;
  readonly annotations: Readonly<Record<string, string>>;
  /** False for Jobs and CronJobs: they run to completion and serve nothing. */
  readonly serving: boolean;
  readonly serviceAccountName: string;
}

export type ContainerGroup = "initContainers" | "containers" | "ephemeralContainers";

export interface ContainerRef {
  readonly pod: PodTemplate;
  readonly container: Json;
  readonly name: string;
  readonly group: ContainerGroup;
  readonly index: number;
  /** JSON path of the container in the owner. */
  readonly path: string;
}

interface TemplateLocation {
  readonly groups: readonly string[];
  readonly kinds: readonly string[];
  readonly template: readonly string[];
  readonly serving: boolean;
}

// Where each workload kind keeps its pods. Pods themselves are their own template.
const TEMPLATES: readonly TemplateLocation[] = [
  { groups: ["apps", "extensions"], kinds: ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"], template: ["spec", "template"], serving: true },
  { groups: [""], kinds: ["ReplicationController"], template: ["spec", "template"], serving: true },
  { groups: ["argoproj.io"], kinds: ["Rollout"], template: ["spec", "template"], serving: true },
  { groups: ["batch"], kinds: ["Job"], template: ["spec", "template"], serving: false },
  { groups: ["batch"], kinds: ["CronJob"], template: ["spec", "jobTemplate", "spec", "template"], serving: false },
];

export function namespaceOf(o: KubeObject): string {
  const ns = o.metadata.namespace;
  return typeof ns === "string" && ns !== "" ? ns : "default";
}

function podTemplateOf(o: KubeObject): PodTemplate | undefined {
  const group = apiGroup(o);
  let metaPath: string;
  let specPath: string;
  let meta: unknown;
  let spec: unknown;
  let serving: boolean;
  if (o.kind === "Pod" && group === "") {
    metaPath = "metadata";
    specPath = "spec";
    meta = o.metadata;
    spec = o["spec"];
    serving = true;
  } else {
    const loc = TEMPLATES.find((t) => t.kinds.includes(o.kind) && t.groups.includes(group));
    if (loc === undefined) return undefined;
    let template: unknown = o;
    for (const k of loc.template) template = asObject(template)?.[k];
    metaPath = jsonPath(loc.template.join("."), "metadata");
    specPath = jsonPath(loc.template.join("."), "spec");
    meta = asObject(template)?.["metadata"];
    spec = asObject(template)?.["spec"];
    serving = loc.serving;
  }
  const s = asObject(spec) ?? {};
  return {
    owner: o,
    key: objectKey(o),
    namespace: namespaceOf(o),
    specPath,
    metaPath,
    spec: s,
    labels: asStringMap(asObject(meta)?.["labels"]),
    annotations: asStringMap(asObject(meta)?.["annotations"]),
    serving,
    serviceAccountName: asString(s["serviceAccountName"]) || asString(s["serviceAccount"]) || "default",
  };
}

export function containersOf(pod: PodTemplate): ContainerRef[] {
  const out: ContainerRef[] = [];
  // The order pod-security-admission visits them in.
  for (const group of ["initContainers", "containers", "ephemeralContainers"] as const) {
    asArray(pod.spec[group]).forEach((c, index) => {
      const container = asObject(c);
      if (container === undefined) return;
      out.push({
        pod,
        container,
        name: asString(container["name"]) ?? `#${index}`,
        group,
        index,
        path: jsonPath(pod.specPath, group, index),
      });
    });
  }
  return out;
}

/** An Istio policy (PeerAuthentication or AuthorizationPolicy) and the workloads it can apply to. */
export interface IstioPolicy {
  readonly object: KubeObject;
  readonly namespace: string;
  readonly spec: Json;
  /** "mesh" (root namespace, no selector), "namespace" (no selector) or "workload". */
  readonly scope: "mesh" | "namespace" | "workload";
  readonly selector: Selector;
}

function isIstioSecurity(o: KubeObject, kind: string): boolean {
  return o.kind === kind && apiGroup(o) === "security.istio.io";
}

export interface ObjectIndexOptions {
  readonly meshRootNamespace?: string;
}

/**
 * Every object of one audit and the relations the checks need: which pods exist
 * (from Pods and every workload's template), which NetworkPolicies (Kubernetes,
 * Calico, Cilium) isolate and admit them, which Istio policies cover them, which
 * Services select them. Built once; checks only read it.
 */
export class ObjectIndex {
  readonly objects: readonly KubeObject[];
  readonly pods: readonly PodTemplate[];
  readonly meshRootNamespace: string;
  readonly networkPolicies: readonly NetPolicy[];
  readonly peerAuthentications: readonly IstioPolicy[];
  readonly authorizationPolicies: readonly IstioPolicy[];
  private readonly namespaceObjects = new Map<string, KubeObject>();
  private readonly serviceAccounts = new Map<string, KubeObject>();
  private readonly boundAccounts = new Set<string>();
  private readonly boundNamespaces = new Set<string>();
  private boundEverywhere = false;

  constructor(objects: readonly KubeObject[], options: ObjectIndexOptions = {}) {
    this.objects = objects;
    this.meshRootNamespace = options.meshRootNamespace ?? DEFAULT_MESH_ROOT_NAMESPACE;
    const pods: PodTemplate[] = [];
    for (const o of objects) {
      const pod = podTemplateOf(o);
      if (pod !== undefined) pods.push(pod);
      if (o.kind === "Namespace" && apiGroup(o) === "") this.namespaceObjects.set(o.metadata.name, o);
      if (o.kind === "ServiceAccount" && apiGroup(o) === "") this.serviceAccounts.set(`${namespaceOf(o)}/${o.metadata.name}`, o);
      if ((o.kind === "RoleBinding" || o.kind === "ClusterRoleBinding") && apiGroup(o) === "rbac.authorization.k8s.io") this.addBinding(o);
    }
    this.pods = pods;
    this.networkPolicies = compileNetworkPolicies(objects, this);
    const istio = (kind: string): IstioPolicy[] =>
      objects
        .filter((o) => isIstioSecurity(o, kind))
        .map((o) => {
          const namespace = namespaceOf(o);
          const spec = asObject(o["spec"]) ?? {};
          const selector = istioSelector(spec["selector"]);
          const scope = !selector.everything ? "workload" : namespace === this.meshRootNamespace ? "mesh" : "namespace";
          return { object: o, namespace, spec, scope, selector };
        });
    this.peerAuthentications = istio("PeerAuthentication");
    this.authorizationPolicies = istio("AuthorizationPolicy");
  }

  private addBinding(o: KubeObject): void {
    for (const s of asArray(o["subjects"])) {
      const subject = asObject(s);
      if (subject === undefined) continue;
      const kind = asString(subject["kind"]);
      const name = asString(subject["name"]) ?? "";
      if (kind === "ServiceAccount") {
        this.boundAccounts.add(`${asString(subject["namespace"]) || namespaceOf(o)}/${name}`);
      } else if (kind === "Group" && name === "system:serviceaccounts") {
        this.boundEverywhere = true;
      } else if (kind === "Group" && name.startsWith("system:serviceaccounts:")) {
        this.boundNamespaces.add(name.slice("system:serviceaccounts:".length));
      }
    }
  }

  /** The namespace's labels, including the `kubernetes.io/metadata.name` label every namespace carries. */
  namespaceLabels(ns: string): Labels {
    const o = this.namespaceObjects.get(ns);
    return {
      ...(o === undefined ? {} : asStringMap(o.metadata.labels)),
      "kubernetes.io/metadata.name": ns,
    };
  }

  namespaceObject(ns: string): KubeObject | undefined {
    return this.namespaceObjects.get(ns);
  }

  /** Namespaces that run pods, sorted. */
  podNamespaces(): string[] {
    return [...new Set(this.pods.map((p) => p.namespace))].sort();
  }

  /** A ServiceAccount's labels (Calico selects by them); none when it is not in the manifests. */
  serviceAccountLabels(ns: string, name: string): Labels {
    return asStringMap(this.serviceAccounts.get(`${ns}/${name}`)?.metadata.labels);
  }

  serviceAccount(ns: string, name: string): KubeObject | undefined {
    return this.serviceAccounts.get(`${ns}/${name}`);
  }

  /** Whether a RoleBinding or ClusterRoleBinding in these manifests grants the account anything (so it needs its token). */
  serviceAccountIsBound(ns: string, name: string): boolean {
    return this.boundEverywhere || this.boundNamespaces.has(ns) || this.boundAccounts.has(`${ns}/${name}`);
  }

  ofKind(group: string, ...kinds: string[]): KubeObject[] {
    return this.objects.filter((o) => kinds.includes(o.kind) && apiGroup(o) === group);
  }

  /** Services (core group) whose selector selects the pod. */
  servicesSelecting(pod: PodTemplate): KubeObject[] {
    return this.ofKind("", "Service").filter((s) => namespaceOf(s) === pod.namespace && this.serviceSelects(s, pod));
  }

  /** A Service without a selector selects no pods (its endpoints are managed by hand). */
  serviceSelects(service: KubeObject, pod: PodTemplate): boolean {
    const selector = asStringMap(asObject(service["spec"])?.["selector"]);
    const pairs = Object.entries(selector);
    if (pairs.length === 0 || namespaceOf(service) !== pod.namespace) return false;
    return pairs.every(([k, v]) => pod.labels[k] === v);
  }

  podsOfService(ns: string, name: string): PodTemplate[] {
    const service = this.ofKind("", "Service").find((s) => namespaceOf(s) === ns && s.metadata.name === name);
    return service === undefined ? [] : this.pods.filter((p) => this.serviceSelects(service, p));
  }

  /** The NetworkPolicies that select the pod and isolate it in `direction`. */
  isolating(pod: PodTemplate, direction: "ingress" | "egress"): { policy: NetPolicy; rules: Direction }[] {
    const out: { policy: NetPolicy; rules: Direction }[] = [];
    for (const policy of this.networkPolicies) {
      const rules = policy[direction];
      if (rules !== undefined && policy.selects(pod)) out.push({ policy, rules });
    }
    return out;
  }

  /**
   * The PeerAuthentications that decide the pod's mTLS mode, most specific level
   * first as Istio resolves them: workload selector, then namespace, then mesh.
   */
  peerAuthenticationChain(pod: PodTemplate): IstioPolicy[][] {
    // Istio ignores selector PeerAuthentications in the root namespace.
    const workload = this.peerAuthentications.filter(
      (p) => p.scope === "workload" && p.namespace === pod.namespace && p.namespace !== this.meshRootNamespace && p.selector.matches(pod.labels),
    );
    const namespace = this.peerAuthentications.filter((p) => p.scope === "namespace" && p.namespace === pod.namespace);
    const mesh = this.peerAuthentications.filter((p) => p.scope === "mesh");
    return [workload, namespace, mesh];
  }

  /**
   * Istio AuthorizationPolicies that apply to the pod: by selector, namespace-wide, or from
   * the root namespace, where a policy applies mesh-wide and its selector matches workloads
   * in every namespace.
   */
  authorizationPoliciesFor(pod: PodTemplate): IstioPolicy[] {
    return this.authorizationPolicies.filter((p) => {
      if (p.scope === "mesh") return !hasTargetRefs(p.spec);
      if (p.namespace === this.meshRootNamespace && !hasTargetRefs(p.spec)) return p.selector.matches(pod.labels);
      if (p.namespace !== pod.namespace) return false;
      if (hasTargetRefs(p.spec)) return this.targetRefsSelect(p, pod);
      return p.scope === "namespace" || p.selector.matches(pod.labels);
    });
  }

  // Ambient mode: a policy bound to a Service (through its waypoint) covers the Service's pods.
  private targetRefsSelect(p: IstioPolicy, pod: PodTemplate): boolean {
    const refs = [p.spec["targetRef"], ...asArray(p.spec["targetRefs"])];
    return refs.some((r) => {
      const ref = asObject(r);
      if (ref === undefined || asString(ref["kind"]) !== "Service") return false;
      const name = asString(ref["name"]) ?? "";
      return this.podsOfService(p.namespace, name).includes(pod);
    });
  }
}

function hasTargetRefs(spec: Json): boolean {
  return asObject(spec["targetRef"]) !== undefined || asArray(spec["targetRefs"]).length > 0;
}
