import { SEVERITIES } from "../check.ts";
import type { AuditReport, Finding } from "../index.ts";
import type { OutputOptions } from "./json.ts";
import { summarize } from "./summary.ts";

function heading(f: Finding): string {
  const where = f.source ? `${f.source.file}:${f.source.line}  ` : "";
  const o = f.object;
  return `${where}${o.kind} ${o.namespace !== undefined ? `${o.namespace}/` : ""}${o.name}`;
}

/** The report for people: findings grouped by object, in input order, then a summary line. */
export function formatText(report: AuditReport, options: OutputOptions): string {
  const lines: string[] = [];
  const idWidth = Math.max(0, ...report.findings.map((f) => f.checkId.length));
  let current: string | undefined;
  for (const f of report.findings) {
    const h = heading(f);
    if (h !== current) {
      if (current !== undefined) lines.push("");
      lines.push(h);
      current = h;
    }
    const label = f.suppressed ? "suppressed" : f.severity.toUpperCase();
    lines.push(`  ${label.padEnd(10)} ${f.checkId.padEnd(idWidth)}  ${f.path === "" ? "(object)" : f.path}`);
    lines.push(`  ${"".padEnd(10)} ${f.message}`);
    if (f.suppressed) {
      const until = f.suppressed.expires ? ` (until ${f.suppressed.expires}, ${f.suppressed.location})` : "";
      lines.push(`  ${"".padEnd(10)} ${f.suppressed.by}: ${f.suppressed.reason}${until}`);
    }
  }
  const s = summarize(report, options.failOn);
  const counts = [...SEVERITIES].reverse().filter((sev) => s.bySeverity[sev] > 0).map((sev) => `${s.bySeverity[sev]} ${sev}`);
  if (lines.length) lines.push("");
  lines.push(
    `${report.objects} object${report.objects === 1 ? "" : "s"} audited (${report.profiles.join(", ")}): ` +
      `${s.findings} finding${s.findings === 1 ? "" : "s"}${counts.length ? ` (${counts.join(", ")})` : ""}` +
      `${s.suppressed ? `, ${s.suppressed} suppressed` : ""}`,
  );
  lines.push(s.failing > 0 ? `FAIL: ${s.failing} at or above ${options.failOn}` : `PASS: nothing at or above ${options.failOn}`);
  return `${lines.join("\n")}\n`;
}
