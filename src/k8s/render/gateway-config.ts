import { createHash } from "node:crypto";
import { stringify } from "yaml";
import { parseConfig } from "../../config/load.ts";
import type { ConfigInput } from "../../config/schema.ts";
import type { KubeObject } from "../objects.ts";
import { authzConfig } from "./authz.ts";
import { gatewayWorkload, object } from "./context.ts";
import type { RenderContext } from "./context.ts";
import { BUNDLE_FILE, KEY_FILE, SVID_DIR, SVID_FILE } from "./spire.ts";

export const GATEWAY_CONFIG_MAP = "edgeward-gateway";
export const GATEWAY_CONFIG_PATH = "/etc/edgeward/config.yaml";
const POLICY_PATH = "/etc/edgeward/policy.yaml";
/** Where the gateway writes its decision log. */
export const DECISION_LOG_DIR = "/var/lib/edgeward";

/**
 * The gateway's configuration (src/config/schema.ts) for running in the pod: both
 * listeners on all interfaces (NetworkPolicy and the mesh decide who reaches them),
 * the SVID and trust bundle that spiffe-helper keeps fresh, the policy file next to
 * it, the runner by its Service name, and (values authz) the ext_authz listener.
 */
export function gatewayConfig(ctx: RenderContext): ConfigInput {
  const g = ctx.values.gateway;
  const config: ConfigInput = {
    listen: `0.0.0.0:${g.port}`,
    admin: `0.0.0.0:${g.adminPort}`,
    tls: { cert: `${SVID_DIR}/${SVID_FILE}`, key: `${SVID_DIR}/${KEY_FILE}` },
    trustBundles: { [ctx.trustDomain]: `${SVID_DIR}/${BUNDLE_FILE}` },
    policy: POLICY_PATH,
    runners: [
      {
        name: ctx.values.runner.name,
        url: `http://${ctx.runner.name}.${ctx.namespace}.svc:${ctx.runner.port}`,
        models: ctx.values.runner.models,
      },
    ],
    decisionLog: `${DECISION_LOG_DIR}/decisions.log`,
    // The gateway scopes policies to itself as Istio does: by the pod's own namespace and labels.
    workload: gatewayWorkload(ctx),
    logLevel: g.logLevel,
  };
  if (g.limits !== undefined) config.limits = { ...g.limits };
  const authz = authzConfig(ctx);
  if (authz !== undefined) config.authz = authz;
  // Fail here, not in the pod: the rendered configuration must load.
  parseConfig(config, GATEWAY_CONFIG_PATH);
  return config;
}

function configData(ctx: RenderContext): Record<string, string> {
  return {
    "config.yaml": stringify(gatewayConfig(ctx), { lineWidth: 0 }),
    // Verbatim, comments included: the gateway enforces exactly the file the mesh policy came from.
    "policy.yaml": ctx.policy.text.endsWith("\n") ? ctx.policy.text : `${ctx.policy.text}\n`,
  };
}

/** A digest of the ConfigMap's data, put on the pod template so that changes roll the pods. */
export function configChecksum(ctx: RenderContext): string {
  const data = configData(ctx);
  const h = createHash("sha256");
  for (const key of Object.keys(data).sort()) h.update(`${key}\0${data[key]}\0`);
  return h.digest("hex");
}

export function renderGatewayConfig(ctx: RenderContext): KubeObject[] {
  return [object("v1", "ConfigMap", GATEWAY_CONFIG_MAP, ctx.namespace, "gateway", { data: configData(ctx) })];
}
