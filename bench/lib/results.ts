import type { Measurement, Metric } from "./scenario.ts";
import { median } from "./stats.ts";

/** The names the comparisons are anchored on. */
export const DIRECT = "direct";
export const MINIMAL_MTLS = "minimal-proxy-mtls";
export const MINIMAL_PLAIN = "minimal-proxy-plain";

export interface TargetStatus {
  name: string;
  mtls: boolean;
  /** Why it was not measured, or null. */
  unavailable: string | null;
  /** Resident memory of its processes once started, before any traffic (null for direct or unavailable). */
  rssIdleMB: number | null;
}

export interface ScenarioResult {
  name: string;
  title: string;
  params: Record<string, unknown>;
  metrics: Metric[];
  /** rounds[r][target] = what was measured (or an error message). */
  rounds: Record<string, Measurement | { failed: string }>[];
  /** Median across rounds of each metric, per target. */
  medians: Record<string, Measurement>;
  /** Median of the per-round ratios target/minimal-proxy-mtls (and /minimal-proxy-plain), for `ratio` metrics. */
  ratioToMinimalMtls: Record<string, Measurement>;
  ratioToMinimalPlain: Record<string, Measurement>;
  /** Median of the per-round differences target − direct, for `overDirect` metrics. */
  overDirect: Record<string, Measurement>;
}

function measured(round: Record<string, Measurement | { failed: string }>, target: string): Measurement | null {
  const m = round[target];
  return m === undefined || "failed" in m ? null : (m as Measurement);
}

/** Median over rounds of f(round) for the rounds where f is defined. */
export function perRound(rounds: ScenarioResult["rounds"], f: (round: Record<string, Measurement | { failed: string }>) => number | null): number {
  return median(rounds.map(f).filter((v): v is number => v !== null && Number.isFinite(v)));
}

/** a/b for `key` in each round where both were measured (NaN where not). */
export function roundRatios(rounds: ScenarioResult["rounds"], a: string, b: string, key: string): number[] {
  return rounds.map((r) => {
    const x = measured(r, a)?.[key];
    const y = measured(r, b)?.[key];
    return x === undefined || y === undefined || y === 0 ? Number.NaN : x / y;
  });
}

export function ratioPerRound(rounds: ScenarioResult["rounds"], a: string, b: string, key: string): number {
  return median(roundRatios(rounds, a, b, key));
}

export function differencePerRound(rounds: ScenarioResult["rounds"], a: string, b: string, key: string): number {
  return perRound(rounds, (r) => {
    const x = measured(r, a)?.[key];
    const y = measured(r, b)?.[key];
    return x === undefined || y === undefined ? null : x - y;
  });
}

export function summarize(result: Omit<ScenarioResult, "medians" | "ratioToMinimalMtls" | "ratioToMinimalPlain" | "overDirect">, targets: readonly string[]): ScenarioResult {
  const medians: Record<string, Measurement> = {};
  const ratioToMinimalMtls: Record<string, Measurement> = {};
  const ratioToMinimalPlain: Record<string, Measurement> = {};
  const overDirect: Record<string, Measurement> = {};
  for (const t of targets) {
    const keys = new Set<string>();
    for (const r of result.rounds) for (const k of Object.keys(measured(r, t) ?? {})) keys.add(k);
    medians[t] = Object.fromEntries([...keys].map((k) => [k, perRound(result.rounds, (r) => measured(r, t)?.[k] ?? null)]));
    ratioToMinimalMtls[t] = {};
    ratioToMinimalPlain[t] = {};
    overDirect[t] = {};
    for (const m of result.metrics) {
      if (m.ratio) {
        ratioToMinimalMtls[t]![m.key] = ratioPerRound(result.rounds, t, MINIMAL_MTLS, m.key);
        ratioToMinimalPlain[t]![m.key] = ratioPerRound(result.rounds, t, MINIMAL_PLAIN, m.key);
      }
      if (m.overDirect) overDirect[t]![m.key] = differencePerRound(result.rounds, t, DIRECT, m.key);
    }
  }
  return { ...result, medians, ratioToMinimalMtls, ratioToMinimalPlain, overDirect };
}

export interface Check {
  target: string;
  measured: string;
  goal: string;
  met: boolean | null;
}

export interface MachineDescription {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  date: string;
}

export interface MicroEntry {
  file: string;
  result?: { name: string; rows: Record<string, string | number>[]; notes?: string[] };
  failed?: string;
}

export interface BenchResults {
  machine: MachineDescription;
  config: Record<string, unknown>;
  targets: TargetStatus[];
  scenarios: ScenarioResult[];
  checks: Check[];
  micro: MicroEntry[];
  durationSeconds: number;
}
