import { severityRank } from "../check.ts";
import type { AuditReport, Finding } from "../index.ts";
import type { OutputOptions } from "./json.ts";

// XML 1.0 forbids most control characters even when escaped.
function xml(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

function caseName(f: Finding): string {
  return f.path === "" ? f.object.key : `${f.object.key} ${f.path}`;
}

/**
 * JUnit XML: a test suite per check, a test case per finding. Findings at or above
 * --fail-on are failures, suppressed ones are skipped, the rest pass with the finding
 * in system-out, so the suite is red exactly when the exit status is 1. A check with
 * no findings is one passing case.
 */
export function formatJunit(report: AuditReport, options: OutputOptions): string {
  const suites: string[] = [];
  let tests = 0;
  let failures = 0;
  let skipped = 0;
  for (const check of report.checks) {
    const findings = report.findings.filter((f) => f.checkId === check.id);
    const cases: string[] = [];
    let suiteFailures = 0;
    let suiteSkipped = 0;
    for (const f of findings) {
      const where = f.source ? `${f.source.file}:${f.source.line}` : f.object.key;
      const attrs = `classname="${xml(check.id)}" name="${xml(caseName(f))}"`;
      if (f.suppressed) {
        suiteSkipped++;
        cases.push(`    <testcase ${attrs}>\n      <skipped message="${xml(`suppressed by ${f.suppressed.by}: ${f.suppressed.reason}`)}"/>\n    </testcase>`);
      } else if (severityRank(f.severity) >= severityRank(options.failOn)) {
        suiteFailures++;
        cases.push(`    <testcase ${attrs}>\n      <failure message="${xml(f.message)}" type="${f.severity}">${xml(`${where}\n${f.message}\n\n${check.remediation}`)}</failure>\n    </testcase>`);
      } else {
        cases.push(`    <testcase ${attrs}>\n      <system-out>${xml(`${f.severity} (below --fail-on ${options.failOn}): ${where}\n${f.message}`)}</system-out>\n    </testcase>`);
      }
    }
    if (cases.length === 0) cases.push(`    <testcase classname="${xml(check.id)}" name="no findings"/>`);
    tests += cases.length;
    failures += suiteFailures;
    skipped += suiteSkipped;
    suites.push(
      `  <testsuite name="${xml(check.id)}" tests="${cases.length}" failures="${suiteFailures}" errors="0" skipped="${suiteSkipped}">\n` +
        `    <properties>\n      <property name="severity" value="${check.severity}"/>\n      <property name="title" value="${xml(check.title)}"/>\n    </properties>\n` +
        `${cases.join("\n")}\n  </testsuite>`,
    );
  }
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<testsuites name="edgeward audit" tests="${tests}" failures="${failures}" errors="0" skipped="${skipped}">\n` +
    `${suites.join("\n")}\n</testsuites>\n`
  );
}
