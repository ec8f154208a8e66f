import { cpuNsBetween, readCpu } from "./proc-stats.ts";
import type { Profile } from "./profile.ts";
import type { RunningTarget } from "./target.ts";

/** How a metric is compared across targets. */
export interface Metric {
  key: string;
  label: string;
  /** Digits after the point in tables. */
  digits: number;
  /** Report the per-round ratio to the minimal mTLS proxy (and to the plain one for plain-HTTP targets). */
  ratio?: boolean;
  /** Report the per-round difference to `direct` (added latency). */
  overDirect?: boolean;
}

export type Measurement = Record<string, number>;

export interface Scenario {
  name: string;
  title: string;
  metrics: Metric[];
  /** A short unmeasured run so connections, JIT and pools are warm. */
  warmup(target: RunningTarget, profile: Profile): Promise<void>;
  run(target: RunningTarget, profile: Profile): Promise<Measurement>;
}

/** Runs `fn` and returns what the target's processes spent on CPU meanwhile (NaN for a target with no process). */
export async function withCpu<T>(target: RunningTarget, fn: () => Promise<T>): Promise<{ value: T; cpuNs: number }> {
  const before = readCpu(target.pids);
  const value = await fn();
  const after = readCpu(target.pids);
  return { value, cpuNs: target.pids.length === 0 ? Number.NaN : cpuNsBetween(before, after) };
}
