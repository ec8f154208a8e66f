import type { KubeObject } from "../objects.ts";
import { authzAllows } from "./authz.ts";
import { object } from "./context.ts";
import type { RenderContext } from "./context.ts";

/** Linkerd's inbound proxy port: opaque (TLS) traffic between meshed pods arrives on it. */
export const LINKERD_INBOUND_PORT = 4143;

type Protocol = "TCP" | "UDP";

/** A peer of an allow rule; namespace null means the rendered namespace. */
export interface Peer {
  namespace: string | null;
  podLabels?: Record<string, string>;
  /** Calico and Cilium can select by service account; Kubernetes NetworkPolicy cannot. */
  serviceAccount?: string;
}

/** One allow rule of the L3/4 layer, independent of the CNI dialect it is written in. */
export interface Allow {
  name: string;
  direction: "ingress" | "egress";
  /** Pods of the namespace the rule applies to; {} is every pod. */
  target: Record<string, string>;
  peers: Peer[];
  ports: { port: number; protocol: Protocol }[];
}

/**
 * The L3/4 allow list: default deny for every pod of the namespace in both directions,
 * then exactly these holes — callers to the gateway's port, the gateway to the
 * runner's port (and the runner accepting only the gateway), DNS to kube-dns,
 * Prometheus to the admin port, what the chosen mesh's proxies and Vault's agent
 * need to reach their control planes, and (values authz) the sidecars that call the
 * gateway's ext_authz port.
 */
export function allowList(ctx: RenderContext): Allow[] {
  const v = ctx.values;
  const tcp = (...ports: number[]) => ports.map((port) => ({ port, protocol: "TCP" as const }));
  const allows: Allow[] = [
    {
      name: "allow-dns",
      direction: "egress",
      target: {},
      peers: [{ namespace: v.dns.namespace, podLabels: v.dns.podLabels }],
      ports: [{ port: 53, protocol: "UDP" }, { port: 53, protocol: "TCP" }],
    },
    {
      name: "gateway-from-callers",
      direction: "ingress",
      target: ctx.gateway.selector,
      peers: ctx.callers.map((c) => ({
        namespace: c.namespace,
        ...(c.podLabels === undefined ? {} : { podLabels: c.podLabels }),
        ...(c.serviceAccount === "*" ? {} : { serviceAccount: c.serviceAccount }),
      })),
      ports: v.mesh === "linkerd" ? tcp(ctx.gateway.port, LINKERD_INBOUND_PORT) : tcp(ctx.gateway.port),
    },
    { name: "gateway-to-runner", direction: "egress", target: ctx.gateway.selector, peers: [{ namespace: null, podLabels: ctx.runner.selector }], ports: tcp(ctx.runner.port) },
    { name: "runner-from-gateway", direction: "ingress", target: ctx.runner.selector, peers: [{ namespace: null, podLabels: ctx.gateway.selector, serviceAccount: ctx.gateway.name }], ports: tcp(ctx.runner.port) },
  ];
  if (v.monitoring.enabled) {
    allows.push({
      name: "gateway-from-prometheus",
      direction: "ingress",
      target: ctx.gateway.selector,
      peers: [{ namespace: v.monitoring.prometheusNamespace, podLabels: v.monitoring.prometheusPodLabels, serviceAccount: v.monitoring.prometheusServiceAccount }],
      ports: tcp(ctx.gateway.adminPort),
    });
  }
  if (v.mesh === "istio") {
    // Sidecars fetch configuration and certificates from istiod (XDS over mTLS).
    allows.push({ name: "mesh-control-plane", direction: "egress", target: {}, peers: [{ namespace: v.meshNamespace ?? "istio-system", podLabels: { app: "istiod" } }], ports: tcp(15012) });
  } else if (v.mesh === "linkerd") {
    // Proxies reach the identity (8080), destination (8086) and policy (8090) controllers.
    allows.push({ name: "mesh-control-plane", direction: "egress", target: {}, peers: [{ namespace: v.meshNamespace ?? "linkerd" }], ports: tcp(8080, 8086, 8090) });
  }
  if (v.vault.enabled) {
    allows.push({ name: "gateway-to-vault", direction: "egress", target: ctx.gateway.selector, peers: [{ namespace: v.vault.namespace }], ports: tcp(v.vault.port) });
  }
  allows.push(...authzAllows(ctx));
  return allows;
}

export function renderNetworkPolicies(ctx: RenderContext): KubeObject[] {
  const allows = allowList(ctx);
  switch (ctx.values.cni) {
    case "kubernetes":
      return kubernetes(ctx, allows);
    case "calico":
      return calico(ctx, allows);
    case "cilium":
      return cilium(ctx, allows);
  }
}

function kubernetes(ctx: RenderContext, allows: Allow[]): KubeObject[] {
  const np = (name: string, spec: Record<string, unknown>) => object("networking.k8s.io/v1", "NetworkPolicy", name, ctx.namespace, "network", { spec });
  const out = [np("default-deny", { podSelector: {}, policyTypes: ["Ingress", "Egress"] })];
  for (const a of allows) {
    const peers = dedupe(
      a.peers.map((p) => {
        const peer: Record<string, unknown> = {};
        if (p.namespace !== null) peer["namespaceSelector"] = { matchLabels: { "kubernetes.io/metadata.name": p.namespace } };
        if (p.podLabels !== undefined) peer["podSelector"] = { matchLabels: p.podLabels };
        else if (p.namespace === null) peer["podSelector"] = {};
        return peer;
      }),
    );
    const ports = a.ports.map((p) => ({ protocol: p.protocol, port: p.port }));
    const rule = a.direction === "ingress" ? { from: peers, ports } : { to: peers, ports };
    out.push(np(a.name, { podSelector: selector(a.target), policyTypes: [a.direction === "ingress" ? "Ingress" : "Egress"], [a.direction]: [rule] }));
  }
  return out;
}

function calicoSelector(labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {});
  return entries.length === 0 ? "all()" : entries.map(([k, v]) => `${k} == '${v}'`).join(" && ");
}

function calico(ctx: RenderContext, allows: Allow[]): KubeObject[] {
  const np = (name: string, spec: Record<string, unknown>) => object("projectcalico.org/v3", "NetworkPolicy", name, ctx.namespace, "network", { spec });
  // No rules: it only puts every pod under policy, so whatever no allow matches is dropped.
  const out = [np("default-deny", { order: 2000, selector: "all()", types: ["Ingress", "Egress"] })];
  for (const a of allows) {
    const rules = a.peers.flatMap((p) => {
      const peer: Record<string, unknown> = {};
      if (p.namespace !== null) peer["namespaceSelector"] = `projectcalico.org/name == '${p.namespace}'`;
      if (p.podLabels !== undefined) peer["selector"] = calicoSelector(p.podLabels);
      if (p.serviceAccount !== undefined) peer["serviceAccounts"] = { names: [p.serviceAccount] };
      if (Object.keys(peer).length === 0) peer["selector"] = "all()";
      return protocols(a).map((protocol) => ({
        action: "Allow",
        protocol,
        ...(a.direction === "ingress"
          ? { source: peer, destination: { ports: portsFor(a, protocol) } }
          : { destination: { ...peer, ports: portsFor(a, protocol) } }),
      }));
    });
    out.push(np(a.name, { order: 100, selector: calicoSelector(a.target), types: [a.direction === "ingress" ? "Ingress" : "Egress"], [a.direction]: rules }));
  }
  return out;
}

function cilium(ctx: RenderContext, allows: Allow[]): KubeObject[] {
  const cnp = (name: string, spec: Record<string, unknown>) => object("cilium.io/v2", "CiliumNetworkPolicy", name, ctx.namespace, "network", { spec });
  // An empty rule in each direction puts every endpoint of the namespace into default deny.
  const out = [cnp("default-deny", { endpointSelector: {}, ingress: [{}], egress: [{}] })];
  for (const a of allows) {
    const endpoints = dedupe(
      a.peers.map((p) => {
        const labels: Record<string, string> = { ...(p.podLabels ?? {}) };
        labels["k8s:io.kubernetes.pod.namespace"] = p.namespace ?? ctx.namespace;
        if (p.serviceAccount !== undefined) labels["k8s:io.cilium.k8s.policy.serviceaccount"] = p.serviceAccount;
        return { matchLabels: labels };
      }),
    );
    const toPorts: Record<string, unknown>[] = [{ ports: a.ports.map((p) => ({ port: String(p.port), protocol: p.protocol })) }];
    // DNS through Cilium's proxy: lookups are visible (and could be narrowed to names).
    if (a.name === "allow-dns") toPorts[0]!["rules"] = { dns: [{ matchPattern: "*" }] };
    const rule = a.direction === "ingress" ? { fromEndpoints: endpoints, toPorts } : { toEndpoints: endpoints, toPorts };
    out.push(cnp(a.name, { endpointSelector: selector(a.target), [a.direction]: [rule] }));
  }
  return out;
}

function selector(labels: Record<string, string>): Record<string, unknown> {
  return Object.keys(labels).length === 0 ? {} : { matchLabels: labels };
}

function protocols(a: Allow): Protocol[] {
  return [...new Set(a.ports.map((p) => p.protocol))];
}

function portsFor(a: Allow, protocol: Protocol): number[] {
  return a.ports.filter((p) => p.protocol === protocol).map((p) => p.port);
}

function dedupe<T>(items: T[]): T[] {
  const seen = new Set<string>();
  return items.filter((i) => {
    const key = JSON.stringify(i);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
