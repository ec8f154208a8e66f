import type { KubeObject } from "../objects.ts";
import { authzServices } from "./authz.ts";
import { object } from "./context.ts";
import type { RenderContext } from "./context.ts";

/**
 * ClusterIP Services only — nothing is exposed outside the cluster. The gateway's
 * port is TLS end to end (the gateway terminates mTLS itself), so it is named
 * "https" for the mesh to treat it as TLS. The admin port (metrics) has a Service of
 * its own, selected only by the ServiceMonitor; the runner is reachable by name. With
 * values authz, the ext_authz port has one too (authz.ts).
 */
export function renderServices(ctx: RenderContext): KubeObject[] {
  const service = (name: string, component: string, selector: Record<string, string>, ports: Record<string, unknown>[], labels: Record<string, string> = {}) =>
    object("v1", "Service", name, ctx.namespace, component, { spec: { type: "ClusterIP", selector, ports } }, { labels });
  return [
    service(ctx.gateway.name, "gateway", ctx.gateway.selector, [
      { name: "https", port: ctx.gateway.port, targetPort: "https", protocol: "TCP" },
    ]),
    service(ctx.gateway.metricsService, "metrics", ctx.gateway.selector, [
      { name: "http-metrics", port: ctx.gateway.adminPort, targetPort: "http-admin", protocol: "TCP", appProtocol: "http" },
    ]),
    service(ctx.runner.name, "runner", ctx.runner.selector, [
      { name: "http", port: ctx.runner.port, targetPort: "http", protocol: "TCP", appProtocol: "http" },
    ]),
    ...authzServices(ctx),
  ];
}
