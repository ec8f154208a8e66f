import { apiGroup } from "../objects.ts";
import type { KubeObject } from "../objects.ts";
import { asArray, asObject, asPortNumber, asString, asStrings, jsonPath } from "./fields.ts";
import type { Json } from "./fields.ts";
import type { PodTemplate } from "./object-index.ts";
import { calicoSelector, ciliumSelector, labelSelector, MATCH_ALL } from "./selectors.ts";
import type { Labels, Selector } from "./selectors.ts";

/**
 * NetworkPolicies in three dialects (Kubernetes `networking.k8s.io/v1`, Calico
 * `projectcalico.org/v3`, Cilium `cilium.io/v2`) compiled to one model: which pods
 * a policy selects, whether it isolates them per direction, and each rule's action,
 * peers and ports. Checks reason over this model only.
 */

export type Dialect = "kubernetes" | "calico" | "cilium";

/** A source (ingress) or destination (egress) a rule names. */
export interface Peer {
  readonly describe: string;
  /** Whether a known pod is among the endpoints this peer names. */
  matches(pod: PodTemplate): boolean;
  /** Matches endpoints whatever their labels: CIDRs, entities, FQDNs, empty selectors. */
  readonly wide: boolean;
  /** Matches everything on its side: 0.0.0.0/0, every namespace, Cilium's `all`/`world`. */
  readonly universal: boolean;
  /** Names the cluster DNS (kube-dns / CoreDNS pods, or kube-system). */
  readonly dns: boolean;
}

export interface PortSpec {
  /** A number, a named port, or undefined for "every port of the protocol". */
  readonly port: number | string | undefined;
  readonly endPort?: number;
  readonly protocol?: string;
}

export interface NetRule {
  /** JSON path of the rule in the policy. */
  readonly path: string;
  readonly action: "Allow" | "Deny" | "Pass" | "Log";
  /** "any" when the rule does not restrict the peer; [] when it names none (allows nothing). */
  readonly peers: readonly Peer[] | "any";
  readonly ports: readonly PortSpec[] | "any";
}

export interface Direction {
  /** JSON path of the rule list (e.g. "spec.egress"), for findings about a missing rule. */
  readonly path: string;
  readonly rules: readonly NetRule[];
}

export interface NetPolicy {
  readonly object: KubeObject;
  readonly dialect: Dialect;
  /** The namespace a namespaced policy applies in; null for cluster-wide ones. */
  readonly namespace: string | null;
  /** JSON path of the policy body ("spec", or "specs[1]" for a multi-rule Cilium policy). */
  readonly base: string;
  selects(pod: PodTemplate): boolean;
  /** Whether it selects every pod of the namespace, whatever their labels. */
  selectsWholeNamespace(ns: string): boolean;
  /** Present when the policy isolates the pods it selects for ingress. */
  readonly ingress?: Direction;
  readonly egress?: Direction;
}

export interface NetworkContext {
  namespaceLabels(ns: string): Labels;
  serviceAccountLabels(ns: string, name: string): Labels;
  podsOfService(ns: string, name: string): PodTemplate[];
}

const DNS_LABELS: readonly [string, string][] = [
  ["k8s-app", "kube-dns"],
  ["k8s-app", "coredns"],
  ["app.kubernetes.io/name", "coredns"],
  ["app.kubernetes.io/name", "kube-dns"],
];

const KUBE_SYSTEM_LABELS: Labels = { "kubernetes.io/metadata.name": "kube-system", "projectcalico.org/name": "kube-system" };

/**
 * Whether pods matching `selector` in namespaces matching `namespaces` include the
 * cluster DNS. A kube-dns selector without a namespace selector only reaches the
 * policy's own namespace, a classic mistake, so it does not count there.
 */
function namesDns(selector: Selector, namespaces: Selector | "same", policyNamespace: string | null): boolean {
  const inKubeSystem = namespaces === "same" ? policyNamespace === null || policyNamespace === "kube-system" : namespaces.matches(KUBE_SYSTEM_LABELS);
  return inKubeSystem && DNS_LABELS.some(([k, v]) => selector.matches({ [k]: v }));
}

function namespaceNamed(ns: string): Selector {
  return { matches: (l) => l["kubernetes.io/metadata.name"] === ns, everything: false, text: ns };
}

function isUniversalCidr(cidr: string): boolean {
  return cidr === "0.0.0.0/0" || cidr === "::/0";
}

function cidrPeer(cidr: string, except: string[]): Peer {
  return {
    describe: except.length ? `${cidr} except ${except.join(", ")}` : cidr,
    matches: () => false,
    wide: true,
    universal: isUniversalCidr(cidr),
    dns: false,
  };
}

/** A pod peer: pods matching `selector` in namespaces matching `namespaces` ("same" = the policy's own). */
function podPeer(ctx: NetworkContext, policyNamespace: string | null, selector: Selector, namespaces: Selector | "same", describe: string): Peer {
  return {
    describe,
    matches: (pod) => {
      const nsOk = namespaces === "same" ? policyNamespace === null || pod.namespace === policyNamespace : namespaces.matches(ctx.namespaceLabels(pod.namespace));
      return nsOk && selector.matches(pod.labels);
    },
    wide: selector.everything,
    universal: selector.everything && namespaces !== "same" && namespaces.everything,
    dns: namesDns(selector, namespaces, policyNamespace),
  };
}

const UNKNOWN_PEER: Peer = { describe: "(unrecognised peer)", matches: () => false, wide: true, universal: false, dns: false };

// ---- Kubernetes ---------------------------------------------------------------------

function policyTypes(spec: Json): { ingress: boolean; egress: boolean } {
  const declared = asStrings(spec["policyTypes"]);
  if (Array.isArray(spec["policyTypes"]) && declared.length > 0) {
    return { ingress: declared.includes("Ingress"), egress: declared.includes("Egress") };
  }
  // Unset: Ingress always, Egress when the policy has egress rules.
  return { ingress: true, egress: asArray(spec["egress"]).length > 0 };
}

function k8sPorts(v: unknown): PortSpec[] | "any" {
  const list = asArray(v);
  if (list.length === 0) return "any";
  return list.map((p) => {
    const o = asObject(p) ?? {};
    const port = asPortNumber(o["port"]) ?? asString(o["port"]);
    const endPort = asPortNumber(o["endPort"]);
    const protocol = asString(o["protocol"]) ?? "TCP";
    return { port, protocol, ...(endPort !== undefined ? { endPort } : {}) };
  });
}

function k8sPeer(ctx: NetworkContext, ns: string, v: unknown): Peer {
  const o = asObject(v);
  if (o === undefined) return UNKNOWN_PEER;
  const ipBlock = asObject(o["ipBlock"]);
  if (ipBlock !== undefined) return cidrPeer(asString(ipBlock["cidr"]) ?? "", asStrings(ipBlock["except"]));
  const hasPods = o["podSelector"] !== undefined && o["podSelector"] !== null;
  const hasNs = o["namespaceSelector"] !== undefined && o["namespaceSelector"] !== null;
  if (!hasPods && !hasNs) return UNKNOWN_PEER;
  const pods = hasPods ? labelSelector(o["podSelector"]) : MATCH_ALL;
  const namespaces = hasNs ? labelSelector(o["namespaceSelector"]) : "same";
  const describe = [hasNs ? `namespaceSelector ${(namespaces as Selector).text}` : "", hasPods ? `podSelector ${pods.text}` : ""].filter(Boolean).join(" + ");
  return podPeer(ctx, ns, pods, namespaces, describe);
}

function k8sDirection(ctx: NetworkContext, ns: string, spec: Json, dir: "ingress" | "egress"): Direction {
  const peerKey = dir === "ingress" ? "from" : "to";
  const rules = asArray(spec[dir]).map((r, i): NetRule => {
    const rule = asObject(r) ?? {};
    const peers = asArray(rule[peerKey]);
    return {
      path: jsonPath("spec", dir, i),
      action: "Allow",
      peers: peers.length === 0 ? "any" : peers.map((p) => k8sPeer(ctx, ns, p)),
      ports: k8sPorts(rule["ports"]),
    };
  });
  return { path: jsonPath("spec", dir), rules };
}

function compileKubernetes(ctx: NetworkContext, o: KubeObject, ns: string): NetPolicy {
  const spec = asObject(o["spec"]) ?? {};
  const selector = labelSelector(spec["podSelector"]);
  const types = policyTypes(spec);
  return {
    object: o,
    dialect: "kubernetes",
    namespace: ns,
    base: "spec",
    selects: (pod) => pod.namespace === ns && selector.matches(pod.labels),
    selectsWholeNamespace: (n) => n === ns && selector.everything,
    ...(types.ingress ? { ingress: k8sDirection(ctx, ns, spec, "ingress") } : {}),
    ...(types.egress ? { egress: k8sDirection(ctx, ns, spec, "egress") } : {}),
  };
}

// ---- Calico -------------------------------------------------------------------------

/** Calico exposes a pod's namespace and service account as pseudo-labels its selectors can use. */
function calicoPodLabels(pod: PodTemplate): Labels {
  return {
    ...pod.labels,
    "projectcalico.org/namespace": pod.namespace,
    "projectcalico.org/orchestrator": "k8s",
    "projectcalico.org/serviceaccount": pod.serviceAccountName,
  };
}

function calicoNamespaceLabels(ctx: NetworkContext, ns: string): Labels {
  return { ...ctx.namespaceLabels(ns), "projectcalico.org/name": ns };
}

function calicoPorts(v: unknown, protocol: string | undefined): PortSpec[] | "any" {
  const list = asArray(v);
  if (list.length === 0) return "any";
  return list.map((p) => {
    const n = asPortNumber(p);
    if (n !== undefined) return { port: n, ...(protocol ? { protocol } : {}) };
    const s = typeof p === "string" ? p : "";
    const range = /^(\d+):(\d+)$/.exec(s);
    if (range) return { port: Number(range[1]), endPort: Number(range[2]), ...(protocol ? { protocol } : {}) };
    return { port: s, ...(protocol ? { protocol } : {}) };
  });
}

function calicoPeer(ctx: NetworkContext, policyNamespace: string | null, entity: Json | undefined): Peer[] | "any" {
  if (entity === undefined) return "any";
  const peers: Peer[] = [];
  const nets = asStrings(entity["nets"]);
  for (const net of nets) peers.push(cidrPeer(net, []));
  const hasSelector = typeof entity["selector"] === "string";
  const hasNs = typeof entity["namespaceSelector"] === "string";
  const accounts = asObject(entity["serviceAccounts"]);
  const service = asObject(entity["services"]);
  if (hasSelector || hasNs || accounts !== undefined) {
    const sel = hasSelector ? calicoSelector(entity["selector"]) : MATCH_ALL;
    const nsSel = hasNs ? calicoSelector(entity["namespaceSelector"]) : undefined;
    const accountNames = asStrings(accounts?.["names"]);
    const accountSel = accounts === undefined ? MATCH_ALL : calicoSelector(accounts["selector"]);
    const sameNamespace = nsSel === undefined && policyNamespace !== null;
    const accountText = accounts === undefined ? "" : `serviceAccounts ${[...accountNames, ...(typeof accounts["selector"] === "string" ? [`"${accountSel.text}"`] : [])].join(", ")}`;
    const describe = [hasNs ? `namespaceSelector "${nsSel?.text}"` : "", hasSelector ? `selector "${sel.text}"` : "", accountText].filter(Boolean).join(" + ");
    const labelAgnostic = sel.everything && accounts === undefined;
    peers.push({
      describe,
      matches: (pod) => {
        if (sameNamespace && pod.namespace !== policyNamespace) return false;
        if (nsSel !== undefined && !nsSel.matches(calicoNamespaceLabels(ctx, pod.namespace))) return false;
        if (accounts !== undefined) {
          if (accountNames.length > 0 && !accountNames.includes(pod.serviceAccountName)) return false;
          if (!accountSel.matches(ctx.serviceAccountLabels(pod.namespace, pod.serviceAccountName))) return false;
        }
        return sel.matches(calicoPodLabels(pod));
      },
      wide: labelAgnostic,
      universal: labelAgnostic && !sameNamespace && (nsSel === undefined || nsSel.everything),
      dns: namesDns(sel, nsSel ?? "same", policyNamespace),
    });
  }
  if (service !== undefined) {
    const name = asString(service["name"]) ?? "";
    const ns = asString(service["namespace"]) ?? policyNamespace ?? "default";
    peers.push({
      describe: `service ${ns}/${name}`,
      matches: (pod) => ctx.podsOfService(ns, name).includes(pod),
      wide: false,
      universal: false,
      dns: (ns === "kube-system" && name === "kube-dns") || name === "coredns",
    });
  }
  if (peers.length === 0) {
    // Only negative matches (notNets, notSelector) or ports: the rule still admits (almost) anyone.
    return "any";
  }
  return peers;
}

function calicoTypes(spec: Json): { ingress: boolean; egress: boolean } {
  const declared = asStrings(spec["types"]);
  if (Array.isArray(spec["types"]) && declared.length > 0) return { ingress: declared.includes("Ingress"), egress: declared.includes("Egress") };
  const hasEgress = asArray(spec["egress"]).length > 0;
  const hasIngress = asArray(spec["ingress"]).length > 0;
  return { ingress: hasIngress || !hasEgress, egress: hasEgress };
}

function calicoAction(v: unknown): NetRule["action"] {
  return v === "Deny" || v === "Pass" || v === "Log" ? v : "Allow";
}

function calicoDirection(ctx: NetworkContext, ns: string | null, spec: Json, dir: "ingress" | "egress"): Direction {
  const rules = asArray(spec[dir]).map((r, i): NetRule => {
    const rule = asObject(r) ?? {};
    const source = asObject(rule["source"]);
    const destination = asObject(rule["destination"]);
    const protocol = asString(rule["protocol"]) ?? (typeof rule["protocol"] === "number" ? String(rule["protocol"]) : undefined);
    return {
      path: jsonPath("spec", dir, i),
      action: calicoAction(rule["action"]),
      peers: calicoPeer(ctx, ns, dir === "ingress" ? source : destination),
      ports: calicoPorts(destination?.["ports"], protocol),
    };
  });
  return { path: jsonPath("spec", dir), rules };
}

function compileCalico(ctx: NetworkContext, o: KubeObject, ns: string | null): NetPolicy {
  const spec = asObject(o["spec"]) ?? {};
  const selector = calicoSelector(spec["selector"]);
  const nsSelector = ns === null && typeof spec["namespaceSelector"] === "string" ? calicoSelector(spec["namespaceSelector"]) : undefined;
  const accountSelector = typeof spec["serviceAccountSelector"] === "string" ? calicoSelector(spec["serviceAccountSelector"]) : undefined;
  const types = calicoTypes(spec);
  const nsOk = (podNs: string) => (ns !== null ? podNs === ns : nsSelector === undefined || nsSelector.matches(calicoNamespaceLabels(ctx, podNs)));
  return {
    object: o,
    dialect: "calico",
    namespace: ns,
    base: "spec",
    selects: (pod) =>
      nsOk(pod.namespace) &&
      selector.matches(calicoPodLabels(pod)) &&
      (accountSelector === undefined || accountSelector.matches(ctx.serviceAccountLabels(pod.namespace, pod.serviceAccountName))),
    selectsWholeNamespace: (n) => nsOk(n) && selector.everything && (accountSelector === undefined || accountSelector.everything),
    ...(types.ingress ? { ingress: calicoDirection(ctx, ns, spec, "ingress") } : {}),
    ...(types.egress ? { egress: calicoDirection(ctx, ns, spec, "egress") } : {}),
  };
}

// ---- Cilium -------------------------------------------------------------------------

// Entities that admit anything from outside a namespace's own pods.
const UNIVERSAL_ENTITIES = new Set(["all", "world", "cluster"]);

function ciliumEndpointPeer(ns: string | null, v: unknown): Peer {
  const { selector, namespace } = ciliumSelector(v);
  const podNamespace = namespace ?? ns;
  return {
    describe: `endpoints ${namespace ? `${namespace}/` : ""}${selector.text}`,
    matches: (pod) => (podNamespace === null || pod.namespace === podNamespace) && selector.matches(pod.labels),
    wide: selector.everything,
    universal: selector.everything && podNamespace === null,
    dns: namesDns(selector, podNamespace === null ? MATCH_ALL : namespaceNamed(podNamespace), ns),
  };
}

function ciliumPorts(v: unknown): PortSpec[] | "any" {
  const list = asArray(v);
  if (list.length === 0) return "any";
  const out: PortSpec[] = [];
  for (const pr of list) {
    const ports = asArray(asObject(pr)?.["ports"]);
    if (ports.length === 0) return "any";
    for (const p of ports) {
      const o = asObject(p) ?? {};
      const n = asPortNumber(o["port"]);
      const endPort = asPortNumber(o["endPort"]);
      const protocol = asString(o["protocol"]);
      out.push({
        port: n === 0 ? undefined : (n ?? asString(o["port"])),
        ...(endPort !== undefined ? { endPort } : {}),
        ...(protocol && protocol !== "ANY" ? { protocol } : {}),
      });
    }
  }
  return out;
}

function ciliumRule(ns: string | null, r: unknown, dir: "ingress" | "egress", path: string, action: NetRule["action"]): NetRule {
  const rule = asObject(r) ?? {};
  const p = dir === "ingress" ? "from" : "to";
  const peers: Peer[] = [];
  let named = false;
  for (const e of asArray(rule[`${p}Endpoints`])) {
    named = true;
    peers.push(ciliumEndpointPeer(ns, e));
  }
  for (const c of asStrings(rule[`${p}CIDR`])) {
    named = true;
    peers.push(cidrPeer(c, []));
  }
  for (const c of asArray(rule[`${p}CIDRSet`])) {
    named = true;
    const o = asObject(c) ?? {};
    peers.push(cidrPeer(asString(o["cidr"]) ?? asString(o["cidrGroupRef"]) ?? "", asStrings(o["except"])));
  }
  for (const e of asStrings(rule[`${p}Entities`])) {
    named = true;
    peers.push({
      describe: `entity ${e}`,
      matches: () => e === "all" || e === "cluster",
      wide: true,
      universal: UNIVERSAL_ENTITIES.has(e),
      dns: false,
    });
  }
  for (const key of [`${p}FQDNs`, `${p}Services`, `${p}Groups`, `${p}Nodes`]) {
    for (const _ of asArray(rule[key])) {
      named = true;
      peers.push({ ...UNKNOWN_PEER, describe: key });
    }
  }
  const toPorts = rule["toPorts"];
  const ports = ciliumPorts(toPorts);
  // A rule with ports and no peers is an L4-only rule: it admits any peer on those ports.
  // A rule with neither (`- {}`) admits nothing; it only switches default deny on.
  const peerSpec: Peer[] | "any" = named ? peers : asArray(toPorts).length > 0 ? "any" : [];
  return { path, action, peers: peerSpec, ports };
}

function compileCiliumSpec(o: KubeObject, ns: string | null, spec: Json, base: string): NetPolicy | undefined {
  if (spec["endpointSelector"] === undefined) return undefined; // nodeSelector policies are for hosts, not pods
  const { selector, namespace } = ciliumSelector(spec["endpointSelector"]);
  const podNamespace = namespace ?? ns;
  const defaultDeny = asObject(spec["enableDefaultDeny"]) ?? {};
  const direction = (dir: "ingress" | "egress"): Direction | undefined => {
    const allow = spec[dir];
    const deny = spec[`${dir}Deny`];
    if (!Array.isArray(allow) && !Array.isArray(deny)) return undefined;
    if (defaultDeny[dir] === false) return undefined;
    const rules = [
      ...asArray(deny).map((r, i) => ciliumRule(ns, r, dir, jsonPath(base, `${dir}Deny`, i), "Deny")),
      ...asArray(allow).map((r, i) => ciliumRule(ns, r, dir, jsonPath(base, dir, i), "Allow")),
    ];
    return { path: jsonPath(base, dir), rules };
  };
  const ingress = direction("ingress");
  const egress = direction("egress");
  return {
    object: o,
    dialect: "cilium",
    namespace: ns,
    base,
    selects: (pod) => (podNamespace === null || pod.namespace === podNamespace) && selector.matches(pod.labels),
    selectsWholeNamespace: (n) => (podNamespace === null || n === podNamespace) && selector.everything,
    ...(ingress ? { ingress } : {}),
    ...(egress ? { egress } : {}),
  };
}

function compileCilium(o: KubeObject, ns: string | null): NetPolicy[] {
  const out: NetPolicy[] = [];
  const spec = asObject(o["spec"]);
  if (spec !== undefined) {
    const p = compileCiliumSpec(o, ns, spec, "spec");
    if (p) out.push(p);
  }
  asArray(o["specs"]).forEach((s, i) => {
    const sp = asObject(s);
    const p = sp && compileCiliumSpec(o, ns, sp, jsonPath("specs", i));
    if (p) out.push(p);
  });
  return out;
}

// -------------------------------------------------------------------------------------

/** Every network policy among the objects, in the order given. */
export function compileNetworkPolicies(objects: readonly KubeObject[], ctx: NetworkContext): NetPolicy[] {
  const out: NetPolicy[] = [];
  for (const o of objects) {
    const group = apiGroup(o);
    const ns = typeof o.metadata.namespace === "string" && o.metadata.namespace !== "" ? o.metadata.namespace : "default";
    if (group === "networking.k8s.io" && o.kind === "NetworkPolicy") out.push(compileKubernetes(ctx, o, ns));
    else if ((group === "projectcalico.org" || group === "crd.projectcalico.org") && o.kind === "NetworkPolicy") out.push(compileCalico(ctx, o, ns));
    else if ((group === "projectcalico.org" || group === "crd.projectcalico.org") && o.kind === "GlobalNetworkPolicy") out.push(compileCalico(ctx, o, null));
    else if (group === "cilium.io" && o.kind === "CiliumNetworkPolicy") out.push(...compileCilium(o, ns));
    else if (group === "cilium.io" && o.kind === "CiliumClusterwideNetworkPolicy") out.push(...compileCilium(o, null));
  }
  return out;
}

/** Whether a port list admits `port` (by number, or by name as given in `names`). */
export function portsAdmit(ports: readonly PortSpec[] | "any", port: number, names: readonly string[] = []): boolean {
  if (ports === "any") return true;
  return ports.some((p) => {
    if (p.port === undefined) return true;
    if (typeof p.port === "number") return p.endPort !== undefined ? port >= p.port && port <= p.endPort : p.port === port;
    return names.includes(p.port);
  });
}

/** A rule that admits every peer on every port: the opposite of a default deny. */
export function allowsEverything(rule: NetRule): boolean {
  return rule.action === "Allow" && rule.ports === "any" && (rule.peers === "any" || rule.peers.some((p) => p.universal));
}

/** A rule that lets pods resolve names: port 53 to anyone, or any port to the cluster DNS. */
export function allowsDns(rule: NetRule): boolean {
  if (rule.action !== "Allow") return false;
  if (rule.peers !== "any" && rule.peers.length === 0) return false;
  if (rule.ports !== "any") return portsAdmit(rule.ports, 53, ["dns", "dns-tcp", "domain"]);
  return rule.peers === "any" || rule.peers.some((p) => p.dns || p.universal);
}
