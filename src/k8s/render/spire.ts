import type { KubeObject } from "../objects.ts";
import { object } from "./context.ts";
import type { RenderContext } from "./context.ts";

export const HELPER_CONFIG_MAP = "edgeward-spiffe-helper";
export const HELPER_HEALTH_PORT = 8081;
export const WORKLOAD_API_DIR = "/spiffe-workload-api";
export const SVID_DIR = "/svid";
export const SVID_FILE = "svid.pem";
export const KEY_FILE = "svid_key.pem";
export const BUNDLE_FILE = "bundle.pem";

/**
 * SPIRE registration through spire-controller-manager: one ClusterSPIFFEID per
 * workload (gateway, runner) and per caller, each issuing
 * spiffe://<trust domain>/ns/<namespace>/sa/<service account> — the form the
 * policy's principals use. The trust domain is written out rather than templated,
 * so a SPIRE server of another trust domain fails visibly instead of issuing IDs
 * no policy names. A caller limited to one service account also gets a `k8s:sa`
 * selector, so the other pods of its namespace get no SVID from this entry.
 */
export function renderSpire(ctx: RenderContext): KubeObject[] {
  const template = `spiffe://${ctx.trustDomain}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}`;
  const className = ctx.values.spire.className;
  const spec = (body: Record<string, unknown>) => ({
    spiffeIDTemplate: template,
    ...(className === undefined ? {} : { className }),
    ...body,
  });
  const inNamespace = (ns: string) => ({ matchLabels: { "kubernetes.io/metadata.name": ns } });
  const out: KubeObject[] = [
    object("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID", `${ctx.namespace}-edgeward-gateway`, null, "gateway", {
      spec: spec({
        namespaceSelector: inNamespace(ctx.namespace),
        podSelector: { matchLabels: ctx.gateway.selector },
        // Callers verify the gateway by SPIFFE ID; the DNS names let them dial it by Service name too.
        dnsNameTemplates: [
          `${ctx.gateway.name}.{{ .PodMeta.Namespace }}.svc`,
          `${ctx.gateway.name}.{{ .PodMeta.Namespace }}.svc.cluster.local`,
        ],
      }),
    }),
    object("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID", `${ctx.namespace}-edgeward-runner`, null, "runner", {
      spec: spec({ namespaceSelector: inNamespace(ctx.namespace), podSelector: { matchLabels: ctx.runner.selector } }),
    }),
  ];
  for (const c of ctx.callers) {
    const name = `${ctx.namespace}-edgeward-caller-${c.namespace}${c.serviceAccount === "*" ? "" : `-${c.serviceAccount.replaceAll(".", "-")}`}`;
    out.push(
      object("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID", name, null, "caller", {
        spec: spec({
          namespaceSelector: inNamespace(c.namespace),
          ...(c.podLabels === undefined ? {} : { podSelector: { matchLabels: c.podLabels } }),
          ...(c.serviceAccount === "*" ? {} : { workloadSelectorTemplates: [`k8s:sa:${c.serviceAccount}`] }),
        }),
      }),
    );
  }
  out.push(
    object("v1", "ConfigMap", HELPER_CONFIG_MAP, ctx.namespace, "gateway", {
      data: {
        "helper.conf": [
          `agent_address = "${WORKLOAD_API_DIR}/spire-agent.sock"`,
          `cert_dir = "${SVID_DIR}"`,
          `svid_file_name = "${SVID_FILE}"`,
          `svid_key_file_name = "${KEY_FILE}"`,
          `svid_bundle_file_name = "${BUNDLE_FILE}"`,
          // The gateway refuses a key file that group or others can read.
          `cert_file_mode = 0644`,
          `key_file_mode = 0600`,
          `daemon_mode = true`,
          `health_checks {`,
          `  listener_enabled = true`,
          `  bind_port = ${HELPER_HEALTH_PORT}`,
          `  liveness_path = "/live"`,
          `  readiness_path = "/ready"`,
          `}`,
          ``,
        ].join("\n"),
      },
    }),
  );
  return out;
}
