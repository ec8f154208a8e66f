import { createHash } from "node:crypto";
import type { Check, Severity } from "../check.ts";
import type { AuditReport, Finding } from "../index.ts";
import type { OutputOptions } from "./json.ts";

/** SARIF has three levels; critical and high are both errors. */
export function sarifLevel(s: Severity): "error" | "warning" | "note" {
  return s === "critical" || s === "high" ? "error" : s === "medium" ? "warning" : "note";
}

// GitHub code scanning orders security results by this CVSS-like score.
const SECURITY_SEVERITY: Record<Severity, string> = { critical: "9.5", high: "8.0", medium: "5.5", low: "3.0" };

function ruleName(id: string): string {
  return id
    .split(/[.-]/)
    .map((w) => (w === "" ? "" : (w[0] as string).toUpperCase() + w.slice(1)))
    .join("");
}

function rule(check: Check) {
  const aliases = Object.entries(check.aliases).map(([tool, id]) => `${tool}:${id}`);
  return {
    id: check.id,
    name: ruleName(check.id),
    shortDescription: { text: check.title },
    fullDescription: { text: `${check.title}. ${check.remediation}` },
    helpUri: check.references[0].url,
    help: {
      text: `${check.remediation}\n\nReferences:\n${check.references.map((r) => `- ${r.title}: ${r.url}`).join("\n")}`,
      markdown: `${check.remediation}\n\n**References**\n\n${check.references.map((r) => `- [${r.title}](${r.url})`).join("\n")}`,
    },
    defaultConfiguration: { level: sarifLevel(check.severity) },
    properties: {
      tags: ["security", "kubernetes", check.category, ...check.profiles],
      precision: "high",
      "security-severity": SECURITY_SEVERITY[check.severity],
      ...(aliases.length ? { aliases } : {}),
    },
  };
}

function artifactUri(file: string): string {
  return file
    .split(/[\\/]/)
    .map((seg) => encodeURIComponent(seg))
    .join("/");
}

function result(f: Finding, ruleIndex: number) {
  const qualified = f.path === "" ? f.object.key : `${f.object.key}:${f.path}`;
  return {
    ruleId: f.checkId,
    ruleIndex,
    level: sarifLevel(f.severity),
    message: { text: f.message },
    locations: [
      {
        ...(f.source
          ? { physicalLocation: { artifactLocation: { uri: artifactUri(f.source.file) }, region: { startLine: Math.max(1, f.source.line) } } }
          : {}),
        logicalLocations: [{ name: f.path === "" ? f.object.name : f.path, fullyQualifiedName: qualified, kind: f.path === "" ? "object" : "property" }],
      },
    ],
    partialFingerprints: {
      "edgewardFinding/v1": createHash("sha256").update(`${f.checkId}\n${f.object.key}\n${f.path}`).digest("hex").slice(0, 32),
    },
    ...(f.suppressed
      ? {
          suppressions: [
            {
              // An annotation lives in the manifest itself; an exceptions file is kept beside it.
              kind: f.suppressed.by === "annotation" ? "inSource" : "external",
              status: "accepted",
              justification: f.suppressed.expires ? `${f.suppressed.reason} (until ${f.suppressed.expires})` : f.suppressed.reason,
            },
          ],
        }
      : {}),
  };
}

/** SARIF 2.1.0: one run, the checks as rules, one result per finding (suppressed ones carry `suppressions`). */
export function formatSarif(report: AuditReport, options: OutputOptions): string {
  const ruleIndex = new Map(report.checks.map((c, i) => [c.id, i]));
  const doc = {
    $schema: "https://json.schemastore.org/sarif-2.1.0.json",
    version: "2.1.0",
    runs: [
      {
        tool: { driver: { name: "edgeward", semanticVersion: options.toolVersion, version: options.toolVersion, rules: report.checks.map(rule) } },
        automationDetails: { id: `edgeward-audit/${report.profiles.join("+")}/` },
        results: report.findings.map((f) => result(f, ruleIndex.get(f.checkId) ?? -1)),
        properties: { failOn: options.failOn, objects: report.objects },
      },
    ],
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}
