import type { Severity } from "../check.ts";
import type { AuditReport } from "../index.ts";
import { summarize } from "./summary.ts";

export interface OutputOptions {
  readonly failOn: Severity;
  readonly toolVersion: string;
}

/**
 * The machine-readable report. `version` changes only when a field changes meaning or
 * goes away; new fields may appear within a version.
 */
export function formatJson(report: AuditReport, options: OutputOptions): string {
  const doc = {
    version: report.version,
    tool: { name: "edgeward", version: options.toolVersion },
    profiles: report.profiles,
    failOn: options.failOn,
    objects: report.objects,
    summary: summarize(report, options.failOn),
    findings: report.findings,
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}
