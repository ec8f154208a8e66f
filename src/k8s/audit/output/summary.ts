import { SEVERITIES, severityRank } from "../check.ts";
import type { Severity } from "../check.ts";
import type { AuditReport } from "../index.ts";

export interface Summary {
  /** Findings not suppressed. */
  readonly findings: number;
  readonly suppressed: number;
  readonly bySeverity: Readonly<Record<Severity, number>>;
  /** Findings not suppressed at or above --fail-on: the ones that make the exit status 1. */
  readonly failing: number;
}

export function summarize(report: AuditReport, failOn: Severity): Summary {
  const bySeverity = Object.fromEntries(SEVERITIES.map((s) => [s, 0])) as Record<Severity, number>;
  let findings = 0;
  let suppressed = 0;
  let failing = 0;
  for (const f of report.findings) {
    if (f.suppressed !== undefined) {
      suppressed++;
      continue;
    }
    findings++;
    bySeverity[f.severity]++;
    if (severityRank(f.severity) >= severityRank(failOn)) failing++;
  }
  return { findings, suppressed, bySeverity, failing };
}
