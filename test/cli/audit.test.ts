import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { runCli } from "../support/processes.ts";

const FIXTURES = fileURLToPath(new URL("../k8s/audit/fixtures/", import.meta.url));
const REFERENCE = "reference.yaml";
const CLEAN = "clean.yaml";

/** `edgeward ARGS…` with `input` on standard input. */
function runWithStdin(args: string[], input: string, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli(args, { cwd, stdin: input });
}

describe("edgeward audit", () => {
  let cwd: string;
  before(() => {
    cwd = mkdtempSync(join(tmpdir(), "edgeward-cli-audit-"));
    copyFileSync(join(FIXTURES, "reference-zero-trust-llm-k3s.yaml"), join(cwd, REFERENCE));
    copyFileSync(join(FIXTURES, "clean/hardened-llm.yaml"), join(cwd, CLEAN));
    copyFileSync(join(FIXTURES, "pss-restricted/run-as-non-root.fail.yaml"), join(cwd, "medium-only.yaml"));
  });
  after(() => rmSync(cwd, { recursive: true, force: true }));

  describe("exit status", () => {
    it("0 for clean manifests, even at --fail-on low", async () => {
      const r = await runCli(["audit", CLEAN, "--fail-on", "low"], { cwd });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /0 findings\nPASS: nothing at or above low\n$/);
      assert.equal(r.stderr, "");
    });

    it("1 when a finding reaches --fail-on (default high)", async () => {
      const r = await runCli(["audit", REFERENCE], { cwd });
      assert.equal(r.code, 1);
      assert.match(r.stdout, /FAIL: 6 at or above high\n$/);
    });

    it("0 when every finding is below --fail-on, 1 once it is lowered", async () => {
      const below = await runCli(["audit", "medium-only.yaml", "--profile", "pss-restricted"], { cwd });
      assert.equal(below.code, 0, below.stdout);
      assert.match(below.stdout, /3 findings \(3 medium\)\nPASS: nothing at or above high\n$/);
      const at = await runCli(["audit", "medium-only.yaml", "--profile", "pss-restricted", "--fail-on", "medium"], { cwd });
      assert.equal(at.code, 1);
    });

    const usage: [string, string[], RegExp][] = [
      ["no input", ["audit"], /^audit: a FILE, DIR or - is required\nusage:/],
      ["an unknown option", ["audit", CLEAN, "--frobnicate"], /^audit: Unknown option '--frobnicate'/],
      ["an unknown output format", ["audit", CLEAN, "-o", "xml"], /^audit: --output must be one of text, json, sarif, junit\n/],
      ["an unknown severity", ["audit", CLEAN, "--fail-on", "severe"], /^audit: --fail-on must be one of low, medium, high, critical\n/],
      ["an unknown profile", ["audit", CLEAN, "--profile", "cis"], /^audit: unknown profile "cis" \(one of pss-restricted, zero-trust, llm-serving\)\n/],
      ["a missing file", ["audit", "nope.yaml"], /^audit: nope\.yaml: cannot read: ENOENT\n$/],
    ];
    for (const [what, args, stderr] of usage) {
      it(`2 for ${what}`, async () => {
        const r = await runCli(args, { cwd });
        assert.equal(r.code, 2);
        assert.equal(r.stdout, "");
        assert.match(r.stderr, stderr);
      });
    }

    it("2 for a manifest that does not parse, naming file and line", async () => {
      writeFileSync(join(cwd, "broken.yaml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n");
      const r = await runCli(["audit", "broken.yaml"], { cwd });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^audit: broken\.yaml:\d+: invalid YAML/);
    });
  });

  describe("output formats", () => {
    it("-o json is the versioned report", async () => {
      const r = await runCli(["audit", REFERENCE, "-o", "json"], { cwd });
      assert.equal(r.code, 1);
      const doc = JSON.parse(r.stdout);
      assert.equal(doc.version, 1);
      assert.equal(doc.summary.failing, 6);
      assert.equal(doc.findings.length, 13);
    });

    it("--output sarif is SARIF 2.1.0", async () => {
      const r = await runCli(["audit", REFERENCE, "--output", "sarif"], { cwd });
      const doc = JSON.parse(r.stdout);
      assert.equal(doc.version, "2.1.0");
      assert.equal(doc.runs[0].tool.driver.name, "edgeward");
      assert.equal(doc.runs[0].results.length, 13);
    });

    it("-o junit is JUnit XML", async () => {
      const r = await runCli(["audit", REFERENCE, "-o", "junit"], { cwd });
      assert.equal(r.code, 1);
      assert.match(r.stdout, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites name="edgeward audit" tests="\d+" failures="6"/);
    });
  });

  describe("inputs", () => {
    it("- reads the stream from standard input (helm template | edgeward audit -)", async () => {
      const text = readFileSync(join(cwd, REFERENCE), "utf8");
      const r = await runWithStdin(["audit", "-", "-o", "json"], `---\n# Source: chart/templates/all.yaml\n${text}`, cwd);
      assert.equal(r.code, 1, r.stderr);
      const doc = JSON.parse(r.stdout);
      assert.equal(doc.findings.length, 13);
      assert.equal(doc.findings[0].source.file, "-");
    });

    it("a directory is read recursively, *.yaml and *.yml in sorted order", async () => {
      const dir = join(cwd, "manifests");
      mkdirSync(join(dir, "a-sub"), { recursive: true });
      mkdirSync(join(dir, ".hidden"), { recursive: true });
      const pod = (name: string) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: app}\nspec:\n  containers: [{name: c, image: "busybox"}]\n`;
      writeFileSync(join(dir, "b.yaml"), pod("b"));
      writeFileSync(join(dir, "a-sub", "z.yml"), pod("z"));
      writeFileSync(join(dir, "c.txt"), "not: a manifest: at all: [\n");
      writeFileSync(join(dir, ".hidden", "x.yaml"), "broken: [\n");
      const r = await runCli(["audit", "manifests", "-o", "json", "--profile", "zero-trust"], { cwd });
      const files = [...new Set(JSON.parse(r.stdout).findings.map((f: { source?: { file: string } }) => f.source?.file))];
      assert.deepEqual(files, [join("manifests", "a-sub", "z.yml"), join("manifests", "b.yaml")]);
    });

    it("in a directory, YAML that is not a Kubernetes manifest (a config, a chart's values) is skipped with a note; a broken manifest still stops it", async () => {
      const dir = join(cwd, "mixed");
      mkdirSync(dir, { recursive: true });
      copyFileSync(fileURLToPath(new URL("../../examples/edgeward.yaml", import.meta.url)), join(dir, "edgeward.yaml"));
      writeFileSync(join(dir, "Chart.yaml"), "apiVersion: v2\nname: demo\nversion: 0.1.0\n");
      copyFileSync(join(FIXTURES, "clean/hardened-llm.yaml"), join(dir, "llm.yaml"));
      const r = await runCli(["audit", "mixed", "--fail-on", "low"], { cwd });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.stderr, [
        `audit: skipped ${join("mixed", "Chart.yaml")}: not a Kubernetes manifest (no document has apiVersion and kind)`,
        `audit: skipped ${join("mixed", "edgeward.yaml")}: not a Kubernetes manifest (no document has apiVersion and kind)`,
        "",
      ].join("\n"));
      writeFileSync(join(dir, "z-broken.yaml"), "apiVersion: v1\nkind: Pod\n");
      const broken = await runCli(["audit", "mixed"], { cwd });
      assert.equal(broken.code, 2);
      assert.match(broken.stderr, /z-broken\.yaml:1: Pod: missing metadata/);
    });

    it("an empty directory is an error", async () => {
      mkdirSync(join(cwd, "empty"), { recursive: true });
      const r = await runCli(["audit", "empty"], { cwd });
      assert.equal(r.code, 2);
      assert.equal(r.stderr, "audit: empty: no *.yaml or *.yml files\n");
    });
  });

  describe("exemptions", () => {
    it("an exceptions file suppresses findings (reported, not failing)", async () => {
      writeFileSync(
        join(cwd, "exceptions.yaml"),
        [
          "exceptions:",
          "  - id: zt.*",
          "    object: {kind: '*', namespace: '*', name: '*'}",
          "    reason: mesh and admission are managed by the platform team",
          "    expires: 2999-12-31",
          "  - id: llm.*",
          "    object: Deployment/llm/vllm",
          "    reason: runner hardening tracked in LLM-42",
          "    expires: 2999-12-31",
        ].join("\n"),
      );
      const r = await runCli(["audit", REFERENCE, "--exceptions", "exceptions.yaml", "-o", "json"], { cwd });
      assert.equal(r.code, 0, r.stdout);
      const doc = JSON.parse(r.stdout);
      assert.deepEqual({ findings: doc.summary.findings, suppressed: doc.summary.suppressed }, { findings: 4, suppressed: 9 });
    });

    it("an expired exception is itself an error", async () => {
      writeFileSync(join(cwd, "expired.yaml"), "exceptions:\n  - id: zt.image-latest\n    object: Deployment/llm/vllm\n    reason: temporary\n    expires: 2020-01-31\n");
      const r = await runCli(["audit", REFERENCE, "--exceptions", "expired.yaml"], { cwd });
      assert.equal(r.code, 2);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr, "audit: expired.yaml:2: exception for zt.image-latest expired on 2020-01-31: renew it with a new date or fix the finding\n");
    });

    it("an exception without a reason is an error", async () => {
      writeFileSync(join(cwd, "no-reason.yaml"), "exceptions:\n  - id: zt.image-latest\n    object: Deployment/llm/vllm\n    expires: 2999-01-31\n");
      const r = await runCli(["audit", REFERENCE, "--exceptions", "no-reason.yaml"], { cwd });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^audit: no-reason\.yaml:2: exception for zt\.image-latest has no reason/);
    });

    it("edgeward.dev/skip on an object suppresses the named checks", async () => {
      const text = readFileSync(join(cwd, REFERENCE), "utf8").replace(
        "  name: vllm\n  namespace: llm\n  labels:\n",
        "  name: vllm\n  namespace: llm\n  annotations:\n    edgeward.dev/skip: zt.image-latest,llm.runner-exposed\n  labels:\n",
      );
      writeFileSync(join(cwd, "skipped.yaml"), text);
      const r = await runCli(["audit", "skipped.yaml", "-o", "json"], { cwd });
      const doc = JSON.parse(r.stdout);
      assert.deepEqual(
        doc.findings.filter((f: { suppressed?: unknown }) => f.suppressed).map((f: { checkId: string; suppressed: { by: string } }) => [f.checkId, f.suppressed.by]),
        [
          ["zt.image-latest", "annotation"],
          ["llm.runner-exposed", "annotation"],
        ],
      );
      assert.equal(doc.summary.failing, 4);
    });
  });

  it("--list-checks lists every check with its severity and profile", async () => {
    const r = await runCli(["audit", "--list-checks"], { cwd });
    assert.equal(r.code, 0);
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 40);
    assert.match(lines[0] ?? "", /^pss\.host-process +critical +pss-restricted +Windows HostProcess containers are forbidden$/);
  });

  it("is listed in edgeward --help", async () => {
    const r = await runCli(["--help"], { cwd });
    assert.match(r.stdout, /\n {2}audit +audit FILE\|DIR\|- /);
  });
});
