import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { audit, parseExceptions } from "../../../src/k8s/audit/index.ts";
import { formatJson } from "../../../src/k8s/audit/output/json.ts";
import { formatJunit } from "../../../src/k8s/audit/output/junit.ts";
import { formatText } from "../../../src/k8s/audit/output/text.ts";
import { loadFixture } from "./support.ts";

const OPTIONS = { failOn: "high", toolVersion: "0.1.0" } as const;

function report() {
  const exceptions = parseExceptions(
    "exceptions:\n  - id: llm.probe-path\n    object: Deployment/llm/vllm\n    reason: probe fixed upstream <soon> & tracked\n    expires: 2026-12-31\n",
    "ex.yaml",
    new Date("2026-01-01T00:00:00Z"),
  );
  return audit(loadFixture("reference-zero-trust-llm-k3s.yaml"), { exceptions });
}

describe("JSON output", () => {
  it("is versioned and carries the summary and every finding", () => {
    const doc = JSON.parse(formatJson(report(), OPTIONS));
    assert.equal(doc.version, 1);
    assert.deepEqual(doc.tool, { name: "edgeward", version: "0.1.0" });
    assert.deepEqual(doc.profiles, ["pss-restricted", "zero-trust", "llm-serving"]);
    assert.equal(doc.failOn, "high");
    assert.equal(doc.objects, 8);
    assert.deepEqual(doc.summary, { findings: 12, suppressed: 1, bySeverity: { low: 0, medium: 6, high: 5, critical: 1 }, failing: 6 });
    assert.deepEqual(doc.findings[0], {
      checkId: "zt.default-deny-ingress",
      severity: "high",
      category: "Network segmentation",
      title: "Every namespace needs a default-deny ingress NetworkPolicy",
      object: { apiVersion: "v1", kind: "Namespace", name: "llm", key: "Namespace//llm" },
      path: "",
      message: "namespace llm has no default-deny ingress NetworkPolicy: no policy selects every pod for Ingress while admitting nothing broadly",
      source: { file: "reference-zero-trust-llm-k3s.yaml", line: 4 },
    });
    const suppressed = doc.findings.filter((f: { suppressed?: unknown }) => f.suppressed);
    assert.deepEqual(suppressed.map((f: { checkId: string }) => f.checkId), ["llm.probe-path"]);
  });
});

describe("text output", () => {
  it("groups findings by object and ends with the verdict", () => {
    const text = formatText(report(), OPTIONS);
    assert.match(text, /^reference-zero-trust-llm-k3s\.yaml:4 {2}Namespace llm\n {2}HIGH {7}zt\.default-deny-ingress/);
    assert.match(text, /\n {2}suppressed +llm\.probe-path +spec\.template\.spec\.containers\[0\]\.readinessProbe\.httpGet\.path\n/);
    assert.match(text, /exception: probe fixed upstream <soon> & tracked \(until 2026-12-31, ex\.yaml:2\)\n/);
    assert.match(text, /\n8 objects audited \(pss-restricted, zero-trust, llm-serving\): 12 findings \(1 critical, 5 high, 6 medium\), 1 suppressed\nFAIL: 6 at or above high\n$/);
  });

  it("says PASS when nothing reaches --fail-on", () => {
    assert.equal(formatText(audit(loadFixture("clean/hardened-llm.yaml")), { ...OPTIONS, failOn: "low" }), "17 objects audited (pss-restricted, zero-trust, llm-serving): 0 findings\nPASS: nothing at or above low\n");
  });
});

describe("JUnit output", () => {
  const xml = formatJunit(report(), OPTIONS);

  it("has one suite per check and counts that match the exit status", () => {
    assert.match(xml, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites name="edgeward audit" tests="\d+" failures="6" errors="0" skipped="1">\n/);
    assert.equal((xml.match(/<testsuite /g) ?? []).length, 40);
    assert.match(xml, /<testsuite name="zt\.image-latest" tests="1" failures="1" errors="0" skipped="0">/);
    assert.match(xml, /<testsuite name="pss\.privileged" tests="1" failures="0" errors="0" skipped="0">[\s\S]*?<testcase classname="pss\.privileged" name="no findings"\/>/);
  });

  it("keeps below-threshold findings out of the failures and escapes XML", () => {
    assert.match(xml, /<testcase classname="pss\.run-as-non-root" name="Deployment\/llm\/vllm spec\.template\.spec\.securityContext\.runAsNonRoot">\n {6}<system-out>medium \(below --fail-on high\)/);
    assert.match(xml, /<skipped message="suppressed by exception: probe fixed upstream &lt;soon&gt; &amp; tracked"\/>/);
    assert.ok(!/<[^>]*<soon>/.test(xml));
  });
});
