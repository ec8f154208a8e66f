import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** The gateway's Prometheus metrics, on a registry of its own (served on the admin listener only). */
export interface GatewayMetrics {
  registry: Registry;
  requests: Counter<"route" | "code">;
  decisions: Counter<"decision">;
  denials: Counter<"reason">;
  tlsFailures: Counter<"check">;
  duration: Histogram<"route">;
  tokens: Counter<"kind">;
  upstreamErrors: Counter<"runner" | "kind">;
  inflight: Gauge;
}

export function createGatewayMetrics(): GatewayMetrics {
  const registry = new Registry();
  // Event-loop delay is sampled every 100 ms rather than the default 10 ms: an idle edge box should stay idle.
  collectDefaultMetrics({ register: registry, prefix: "edgeward_", eventLoopMonitoringPrecision: 100 });
  const r = [registry];
  return {
    registry,
    requests: new Counter({ name: "edgeward_requests_total", help: "Requests answered, by route and HTTP status.", labelNames: ["route", "code"], registers: r }),
    decisions: new Counter({ name: "edgeward_decisions_total", help: "Authorization decisions recorded.", labelNames: ["decision"], registers: r }),
    denials: new Counter({ name: "edgeward_denials_total", help: "Requests refused, by reason (identity, policy, budget, limit, log).", labelNames: ["reason"], registers: r }),
    tlsFailures: new Counter({ name: "edgeward_tls_failures_total", help: "Client connections whose certificate was missing or rejected, by failed check.", labelNames: ["check"], registers: r }),
    duration: new Histogram({
      name: "edgeward_request_duration_seconds", help: "Time from request start to the end of the response.", labelNames: ["route"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120], registers: r,
    }),
    tokens: new Counter({ name: "edgeward_tokens_total", help: "Tokens relayed, by kind (prompt, completion).", labelNames: ["kind"], registers: r }),
    upstreamErrors: new Counter({ name: "edgeward_upstream_errors_total", help: "Runner failures, by runner and kind (connect, timeout, status).", labelNames: ["runner", "kind"], registers: r }),
    inflight: new Gauge({ name: "edgeward_inflight_requests", help: "Requests being handled.", registers: r }),
  };
}
