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
  /** Connections closed for a connection limit: "total" (at accept) or "principal" (after the handshake). */
  connectionsRefused: Counter<"limit">;
  /** Requests whose client went away before its body was complete. */
  clientAborts: Counter;
  /** Requests in flight ended from outside (revocation, trust bundle change). */
  requestsCut: Counter<"reason">;
  /** Signed policy bundles: activations and refusals, by source and result (a BundleError check when refused). */
  bundleUpdates: Counter<"source" | "result">;
}

/** What the bundle gauges read at scrape time. */
export interface BundleGaugeSource {
  stage(): string;
  revision(): number | null;
  notAfterMs(): number | null;
  tampered(): boolean;
  now(): number;
}

const STAGE_NAMES = ["fresh", "grace", "restricted", "locked"] as const;

/** Gauges of the policy bundle's degradation ladder, computed when Prometheus scrapes (nothing on the request path). */
export function registerBundleGauges(metrics: GatewayMetrics, source: BundleGaugeSource): void {
  const r = [metrics.registry];
  new Gauge({
    name: "edgeward_bundle_stage", help: "Degradation stage of the policy bundle: 1 for the current stage, 0 for the others.", labelNames: ["stage"], registers: r,
    collect() {
      const current = source.stage();
      for (const stage of STAGE_NAMES) this.set({ stage }, stage === current ? 1 : 0);
    },
  });
  new Gauge({
    name: "edgeward_bundle_revision", help: "Revision of the active policy bundle (0 when none is active).", registers: r,
    collect() {
      this.set(source.revision() ?? 0);
    },
  });
  new Gauge({
    name: "edgeward_bundle_expiry_seconds", help: "Seconds until the active bundle's notAfter (negative once past it; absent when none is active).", registers: r,
    collect() {
      const notAfter = source.notAfterMs();
      this.reset();
      if (notAfter !== null) this.set((notAfter - source.now()) / 1000);
    },
  });
  new Gauge({
    name: "edgeward_clock_tampered", help: "1 when the wall clock went back past the tolerance since the last bundle activation.", registers: r,
    collect() {
      this.set(source.tampered() ? 1 : 0);
    },
  });
}

/** 1 while the decision log takes appends, 0 while a failed write keeps it refusing them (read at scrape time). */
export function registerDecisionLogGauge(metrics: GatewayMetrics, writable: () => boolean): void {
  new Gauge({
    name: "edgeward_decision_log_writable", help: "1 while the decision log accepts appends; 0 after a failed write or fsync, until it has recovered.", registers: [metrics.registry],
    collect() {
      this.set(writable() ? 1 : 0);
    },
  });
}

/** The decision-log upload's metrics (registered only when the gateway uploads its log). */
export interface UploadMetrics {
  /** The last record the control plane acknowledged and the node checked against its own. */
  ackedSeq: Gauge;
  /** Failed upload rounds (and failed prunes), by reason. */
  failures: Counter<"reason">;
  /** Batches the control plane acknowledged. */
  batches: Counter;
}

export function registerUploadMetrics(metrics: GatewayMetrics): UploadMetrics {
  const r = [metrics.registry];
  return {
    ackedSeq: new Gauge({ name: "edgeward_upload_acked_seq", help: "Seq of the last decision-log record the control plane acknowledged (and the node checked).", registers: r }),
    failures: new Counter({
      name: "edgeward_upload_failures_total",
      help: "Decision-log upload failures, by reason (unreachable, tls, status, gap, fork, chain, tampered, foreign-chain, refused, ack-mismatch, head-mismatch, log, cursor, prune).",
      labelNames: ["reason"], registers: r,
    }),
    batches: new Counter({ name: "edgeward_upload_batches_total", help: "Decision-log batches the control plane acknowledged.", registers: r }),
  };
}

/** Each runner's health as the gateway sees it (1 up, 0 down), read at scrape time; restarts of the ones it supervises. */
export function registerRunnerMetrics(metrics: GatewayMetrics, runners: () => readonly { name: string; up: boolean }[]): Counter<"runner"> {
  const r = [metrics.registry];
  new Gauge({
    name: "edgeward_runner_up", help: "1 while the runner answers (probed, and marked down when a call cannot reach it), 0 while it is down.", labelNames: ["runner"], registers: r,
    collect() {
      for (const { name, up } of runners()) this.set({ runner: name }, up ? 1 : 0);
    },
  });
  return new Counter({ name: "edgeward_runner_restarts_total", help: "Embedded runners started again after they died.", labelNames: ["runner"], registers: r });
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
    denials: new Counter({ name: "edgeward_denials_total", help: "Requests refused, by reason (identity, revoked, locked, parse, policy, limit, budget, capacity, route, log).", labelNames: ["reason"], registers: r }),
    tlsFailures: new Counter({ name: "edgeward_tls_failures_total", help: "Client connections whose certificate was missing or rejected, by failed check.", labelNames: ["check"], registers: r }),
    duration: new Histogram({
      name: "edgeward_request_duration_seconds", help: "Time from request start to the end of the response.", labelNames: ["route"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120], registers: r,
    }),
    tokens: new Counter({ name: "edgeward_tokens_total", help: "Tokens relayed, by kind (prompt, completion).", labelNames: ["kind"], registers: r }),
    upstreamErrors: new Counter({ name: "edgeward_upstream_errors_total", help: "Runner failures, by runner and kind (connect, timeout, status).", labelNames: ["runner", "kind"], registers: r }),
    inflight: new Gauge({ name: "edgeward_inflight_requests", help: "Requests being handled.", registers: r }),
    connectionsRefused: new Counter({ name: "edgeward_connections_refused_total", help: "Connections closed for a connection limit: total (limits.maxConnections) or principal (limits.maxConnectionsPerPrincipal).", labelNames: ["limit"], registers: r }),
    clientAborts: new Counter({ name: "edgeward_client_aborts_total", help: "Requests whose client closed the connection before its body was complete.", registers: r }),
    requestsCut: new Counter({ name: "edgeward_requests_cut_total", help: "Requests in flight ended by the gateway, by reason (revoked, untrusted).", labelNames: ["reason"], registers: r }),
    bundleUpdates: new Counter({ name: "edgeward_bundle_updates_total", help: "Policy bundles offered, by source (store, file, url) and result (activated, unchanged, or the failed check).", labelNames: ["source", "result"], registers: r }),
  };
}
