import type { Socket } from "node:net";
import type { DecisionLog } from "../decision-log/index.ts";
import type { Budgets } from "../budget/index.ts";
import type { GatewayConfig } from "../config/index.ts";
import type { TrustBundleSet, TrustedPeers } from "../identity/index.ts";
import type { BundleStatus, RevocationList } from "../bundle/index.ts";
import type { PolicySet } from "../policy/index.ts";
import type { RunnerTable } from "../runners/index.ts";
import type { GatewayMetrics, Logger } from "../telemetry/index.ts";
import type { ConnectionTally, InFlight } from "./capacity.ts";
import type { DecisionCore } from "./decision-core.ts";

/** The policy in force: from policy files, or from the active signed bundle (with its revocation list). */
export interface ActivePolicy {
  readonly set: PolicySet;
  /** "sha256:…" of the policy files, "<bundle name>@<revision>" of a bundle; null while no bundle is active. */
  readonly revision: string | null;
  readonly revocations: RevocationList;
}

/** Where the degradation stage comes from when the policy comes from signed bundles. */
export interface PolicyLadder {
  status(nowMs: number): BundleStatus;
  /** The last bundle refused, for /readyz. */
  readonly lastError: { source: string; check: string; message: string } | null;
}

/**
 * Everything a request needs. `policy` is replaced as a whole on reload or bundle activation and read once per
 * request, so a request sees one policy (and one revocation list) throughout.
 */
export interface GatewayState {
  config: GatewayConfig;
  /** Replaced as a whole when the trust bundle files rotate. */
  bundles: TrustBundleSet;
  /** Sidecar mode: the peers allowed to assert an identity with XFCC; null on the mTLS listener. */
  trustedPeers: TrustedPeers | null;
  policy: ActivePolicy;
  /** null when the policy comes from files (no validity window, no ladder). */
  ladder: PolicyLadder | null;
  log: DecisionLog;
  budgets: Budgets;
  runners: RunnerTable;
  metrics: GatewayMetrics;
  logger: Logger;
  clock: () => number;
  /** The stages every request goes through, over this state. */
  core: DecisionCore;
  /** The requests in flight, by caller: capped, and cut on revocation. */
  inFlight: InFlight;
  /** Open connections per caller (mTLS listener). */
  connections: ConnectionTally;
  /** Connections over their caller's connection limit: their first request is refused and the connection closed. */
  refusedConnections: WeakSet<Socket>;
}
