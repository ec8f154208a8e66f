import type { DecisionLog } from "../audit/index.ts";
import type { Budgets } from "../budget/index.ts";
import type { GatewayConfig } from "../config/index.ts";
import type { TrustBundleSet } from "../identity/index.ts";
import type { PolicySet } from "../policy/index.ts";
import type { RunnerTable } from "../runners/index.ts";
import type { GatewayMetrics, Logger } from "../telemetry/index.ts";

/** Everything a request needs; `policy` is replaced as a whole on reload, so a request sees one policy throughout. */
export interface GatewayState {
  config: GatewayConfig;
  /** Replaced as a whole when the trust bundle files rotate. */
  bundles: TrustBundleSet;
  policy: { set: PolicySet; revision: string };
  log: DecisionLog;
  budgets: Budgets;
  runners: RunnerTable;
  metrics: GatewayMetrics;
  logger: Logger;
  clock: () => number;
}
