import { Counter, Histogram, type Registry } from "prom-client";

export type AuthzTransport = "grpc" | "http";

/** The ext_authz service's own metrics, on the gateway's registry (served on the admin listener). */
export interface AuthzMetrics {
  /** Checks answered, by transport and outcome: allow, deny, or error (an internal error, answered with a deny). */
  checks: Counter<"transport" | "decision">;
  duration: Histogram<"transport">;
}

export function createAuthzMetrics(registry: Registry): AuthzMetrics {
  const registers = [registry];
  return {
    checks: new Counter({
      name: "edgeward_authz_checks_total", help: "ext_authz checks answered, by transport (grpc, http) and decision (allow, deny, error).",
      labelNames: ["transport", "decision"], registers,
    }),
    duration: new Histogram({
      name: "edgeward_authz_check_duration_seconds", help: "Time to decide one ext_authz check, the decision log's fsync included.",
      labelNames: ["transport"], buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5], registers,
    }),
  };
}
