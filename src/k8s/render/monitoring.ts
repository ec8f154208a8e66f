import type { KubeObject } from "../objects.ts";
import { object } from "./context.ts";
import type { RenderContext } from "./context.ts";

/**
 * Prometheus scrapes the gateway's admin port through a ServiceMonitor selecting the
 * metrics Service. Under Istio's STRICT mTLS the scrape itself is mTLS: Prometheus
 * presents the workload certificate Istio's sidecar writes for it (the istio.io
 * "Prometheus with mTLS" setup: /etc/prom-certs). A Grafana dashboard for the
 * gateway's metrics is shipped as a ConfigMap the Grafana sidecar picks up.
 */
export function renderMonitoring(ctx: RenderContext): KubeObject[] {
  const m = ctx.values.monitoring;
  if (!m.enabled) return [];
  const endpoint: Record<string, unknown> = { port: "http-metrics", path: "/metrics", interval: "30s", scrapeTimeout: "10s" };
  if (ctx.values.mesh === "istio") {
    endpoint["scheme"] = "https";
    endpoint["tlsConfig"] = {
      caFile: "/etc/prom-certs/root-cert.pem",
      certFile: "/etc/prom-certs/cert-chain.pem",
      keyFile: "/etc/prom-certs/key.pem",
      // Istio certificates carry SPIFFE IDs, not the Service's DNS name.
      insecureSkipVerify: true,
    };
  } else {
    endpoint["scheme"] = "http";
  }
  return [
    object("monitoring.coreos.com/v1", "ServiceMonitor", ctx.gateway.name, ctx.namespace, "metrics", {
      spec: {
        selector: { matchLabels: { "app.kubernetes.io/part-of": "edgeward", "app.kubernetes.io/component": "metrics" } },
        namespaceSelector: { matchNames: [ctx.namespace] },
        endpoints: [endpoint],
      },
    }, { labels: m.serviceMonitorLabels }),
    object("v1", "ConfigMap", `edgeward-${ctx.namespace}-dashboard`, m.dashboardNamespace ?? m.prometheusNamespace, "metrics", {
      data: { [`edgeward-${ctx.namespace}.json`]: `${JSON.stringify(dashboard(ctx), null, 2)}\n` },
    }, { labels: { grafana_dashboard: "1" } }),
  ];
}

interface Panel {
  title: string;
  type: "timeseries" | "stat" | "state-timeline";
  unit: string;
  targets: { expr: string; legendFormat: string }[];
  description: string;
}

function dashboard(ctx: RenderContext): Record<string, unknown> {
  const sel = `namespace="${ctx.namespace}"`;
  const panels: Panel[] = [
    {
      title: "Requests by route and status",
      type: "timeseries",
      unit: "reqps",
      description: "edgeward_requests_total: requests answered, per second.",
      targets: [{ expr: `sum by (route, code) (rate(edgeward_requests_total{${sel}}[5m]))`, legendFormat: "{{route}} {{code}}" }],
    },
    {
      title: "Denials by reason",
      type: "timeseries",
      unit: "reqps",
      description: "edgeward_denials_total: refused requests per second (identity, revoked, locked, policy, budget, limit, log).",
      targets: [{ expr: `sum by (reason) (rate(edgeward_denials_total{${sel}}[5m]))`, legendFormat: "{{reason}}" }],
    },
    {
      title: "Request duration (p50, p95, p99)",
      type: "timeseries",
      unit: "s",
      description: "edgeward_request_duration_seconds: from request start to the end of the response.",
      targets: [0.5, 0.95, 0.99].map((q) => ({
        expr: `histogram_quantile(${q}, sum by (le) (rate(edgeward_request_duration_seconds_bucket{${sel}}[5m])))`,
        legendFormat: `p${Math.round(q * 100)}`,
      })),
    },
    {
      title: "Policy bundle stage",
      type: "state-timeline",
      unit: "none",
      description: "edgeward_bundle_stage: 1 for the stage each gateway is in (fresh, grace, restricted, locked).",
      targets: [{ expr: `max by (stage) (edgeward_bundle_stage{${sel}}) > 0`, legendFormat: "{{stage}}" }],
    },
    {
      title: "Tokens relayed",
      type: "timeseries",
      unit: "short",
      description: "edgeward_tokens_total: prompt and completion tokens per second.",
      targets: [{ expr: `sum by (kind) (rate(edgeward_tokens_total{${sel}}[5m]))`, legendFormat: "{{kind}}" }],
    },
  ];
  return {
    uid: `edgeward-${ctx.namespace}`.slice(0, 40),
    title: `Edgeward gateway (${ctx.namespace})`,
    tags: ["edgeward"],
    timezone: "browser",
    schemaVersion: 39,
    version: 1,
    refresh: "30s",
    time: { from: "now-6h", to: "now" },
    templating: { list: [{ name: "datasource", type: "datasource", query: "prometheus", label: "Data source" }] },
    panels: panels.map((p, i) => ({
      id: i + 1,
      title: p.title,
      description: p.description,
      type: p.type,
      datasource: { type: "prometheus", uid: "${datasource}" },
      gridPos: { x: (i % 2) * 12, y: Math.floor(i / 2) * 8, w: 12, h: 8 },
      fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
      targets: p.targets.map((t, j) => ({ refId: String.fromCharCode(65 + j), datasource: { type: "prometheus", uid: "${datasource}" }, ...t })),
    })),
  };
}
