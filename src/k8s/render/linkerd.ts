import type { KubeObject } from "../objects.ts";
import { object } from "./context.ts";
import type { RenderContext } from "./context.ts";

const POLICY_GROUP = "policy.linkerd.io";

/**
 * The Linkerd layer: the namespace's default inbound policy is "deny" (namespace.ts),
 * and each port the workloads serve is a Server that only the listed mesh identities
 * may reach: the callers on the gateway's TLS port, the gateway on the runner's port,
 * Prometheus on the admin port. Linkerd authorizes by mesh identity (service
 * accounts) per port; like Istio it cannot see inside the gateway's TLS, so request
 * rules stay with the gateway. Kubelet probes are authorized by Linkerd itself.
 */
export function renderLinkerd(ctx: RenderContext): KubeObject[] {
  if (ctx.values.mesh !== "linkerd") return [];
  const ns = ctx.namespace;
  const out: KubeObject[] = [];
  const server = (name: string, selector: Record<string, string>, port: string, proxyProtocol: string) =>
    object(`${POLICY_GROUP}/v1beta3`, "Server", name, ns, "mesh", { spec: { podSelector: { matchLabels: selector }, port, proxyProtocol } });
  const authn = (name: string, identityRefs: Record<string, string>[]) =>
    object(`${POLICY_GROUP}/v1alpha1`, "MeshTLSAuthentication", name, ns, "mesh", { spec: { identityRefs } });
  const authz = (name: string, serverName: string, authnName: string) =>
    object(`${POLICY_GROUP}/v1alpha1`, "AuthorizationPolicy", name, ns, "mesh", {
      spec: {
        targetRef: { group: POLICY_GROUP, kind: "Server", name: serverName },
        requiredAuthenticationRefs: [{ group: POLICY_GROUP, kind: "MeshTLSAuthentication", name: authnName }],
      },
    });

  const callerRefs = ctx.callers.map((c): Record<string, string> =>
    c.serviceAccount === "*" ? { kind: "Namespace", name: c.namespace } : { kind: "ServiceAccount", name: c.serviceAccount, namespace: c.namespace },
  );
  out.push(server("gateway-api", ctx.gateway.selector, "https", "TLS"));
  out.push(authn("gateway-callers", callerRefs));
  out.push(authz("gateway-callers", "gateway-api", "gateway-callers"));

  out.push(server("runner-api", ctx.runner.selector, "http", "HTTP/1"));
  out.push(authn("runner-clients", [{ kind: "ServiceAccount", name: ctx.gateway.name, namespace: ns }]));
  out.push(authz("runner-clients", "runner-api", "runner-clients"));

  if (ctx.values.monitoring.enabled) {
    const m = ctx.values.monitoring;
    out.push(server("gateway-admin", ctx.gateway.selector, "http-admin", "HTTP/1"));
    out.push(authn("prometheus", [{ kind: "ServiceAccount", name: m.prometheusServiceAccount, namespace: m.prometheusNamespace }]));
    out.push(authz("prometheus", "gateway-admin", "prometheus"));
  }
  return out;
}
