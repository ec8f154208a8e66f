import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { audit, ExceptionsError, failingFindings, parseExceptions } from "../../../src/k8s/audit/index.ts";
import { loadFixture } from "./support.ts";

const NOW = new Date("2026-03-01T12:00:00Z");

function entry(fields: string): string {
  return `exceptions:\n  - ${fields.trim().split("\n").join("\n    ")}\n`;
}

describe("exceptions file", () => {
  it("reads entries with a mapping or a Kind/namespace/name object, ids and globs", () => {
    const text = [
      "exceptions:",
      "  - id: zt.image-latest",
      "    object: {kind: Deployment, namespace: llm, name: vllm}",
      "    reason: pinned by Flux image automation",
      "    expires: 2026-03-01",
      "  - id: pss.*",
      "    object: DaemonSet/*/node-agent",
      '    reason: "node agent needs the host"',
      '    expires: "2027-01-31"',
    ].join("\n");
    assert.deepEqual(parseExceptions(text, "ex.yaml", NOW), [
      { id: "zt.image-latest", object: { kind: "Deployment", namespace: "llm", name: "vllm" }, reason: "pinned by Flux image automation", expires: "2026-03-01", source: "ex.yaml", line: 2 },
      { id: "pss.*", object: { kind: "DaemonSet", namespace: "*", name: "node-agent" }, reason: "node agent needs the host", expires: "2027-01-31", source: "ex.yaml", line: 6 },
    ]);
  });

  const rejects: [string, string, RegExp][] = [
    ["an expired entry", "id: zt.image-latest\nobject: Deployment/llm/vllm\nreason: r\nexpires: 2026-02-28", /^ex\.yaml:2: exception for zt\.image-latest expired on 2026-02-28/],
    ["an entry without a reason", "id: zt.image-latest\nobject: Deployment/llm/vllm\nexpires: 2027-01-01", /^ex\.yaml:2: exception for zt\.image-latest has no reason/],
    ["a blank reason", "id: zt.image-latest\nobject: Deployment/llm/vllm\nreason: '  '\nexpires: 2027-01-01", /has no reason/],
    ["an entry without expires", "id: zt.image-latest\nobject: Deployment/llm/vllm\nreason: r", /expires is required/],
    ["an unknown check id", "id: zt.image-lastest\nobject: Deployment/llm/vllm\nreason: r\nexpires: 2027-01-01", /matches no check/],
    ["an entry without an object", "id: zt.image-latest\nreason: r\nexpires: 2027-01-01", /object is required/],
    ["an object without a name", "id: zt.image-latest\nobject: {kind: Deployment}\nreason: r\nexpires: 2027-01-01", /object\.name is required/],
  ];
  for (const [what, fields, message] of rejects) {
    it(`rejects ${what}`, () => {
      assert.throws(() => parseExceptions(entry(fields), "ex.yaml", NOW), (err: unknown) => err instanceof ExceptionsError && message.test(err.message));
    });
  }

  it("rejects a file that is not a list of exceptions", () => {
    assert.throws(() => parseExceptions("exceptions: {}\n", "ex.yaml", NOW), /ex\.yaml:1: `exceptions` must be a list/);
    assert.throws(() => parseExceptions("other: []\n", "ex.yaml", NOW), /expected a list under `exceptions:`/);
    assert.throws(() => parseExceptions("exceptions: [\n", "ex.yaml", NOW), /invalid YAML/);
  });
});

describe("suppression", () => {
  const reference = () => loadFixture("reference-zero-trust-llm-k3s.yaml");

  it("an exception suppresses matching findings; they are still reported, and no longer fail", () => {
    const exceptions = parseExceptions(entry("id: zt.image-latest\nobject: {kind: Deployment, namespace: llm, name: '*'}\nreason: Flux pins it\nexpires: 2026-12-31"), "ex.yaml", NOW);
    const report = audit(reference(), { exceptions });
    const f = report.findings.find((x) => x.checkId === "zt.image-latest");
    assert.deepEqual(f?.suppressed, { by: "exception", reason: "Flux pins it", expires: "2026-12-31", location: "ex.yaml:2" });
    assert.ok(!failingFindings(report, "low").includes(f as never));
  });

  it("an exception can name a namespace-level finding", () => {
    const exceptions = parseExceptions(entry("id: zt.default-deny-*\nobject: Namespace/*/llm\nreason: policies live in another repo\nexpires: 2026-12-31"), "ex.yaml", NOW);
    const report = audit(reference(), { exceptions });
    const suppressed = report.findings.filter((f) => f.suppressed).map((f) => f.checkId);
    assert.deepEqual(suppressed, ["zt.default-deny-ingress", "zt.default-deny-egress"]);
  });

  it("an object written as its key (Kind//name for cluster-scoped ones) matches", () => {
    const exceptions = parseExceptions(entry("id: zt.default-deny-egress\nobject: Namespace//llm\nreason: egress is filtered by the edge firewall\nexpires: 2026-12-31"), "ex.yaml", NOW);
    const report = audit(reference(), { exceptions });
    assert.deepEqual(report.findings.filter((f) => f.suppressed).map((f) => f.checkId), ["zt.default-deny-egress"]);
  });

  it("edgeward.dev/skip on the object or on its pod template suppresses those checks only", () => {
    const objects = reference().map((o) => {
      if (o.kind === "Deployment") {
        const spec = o["spec"] as { template: { metadata: { annotations?: Record<string, string> } } };
        spec.template.metadata.annotations = { "edgeward.dev/skip": "llm.probe-path" };
        return { ...o, metadata: { ...o.metadata, annotations: { "edgeward.dev/skip": "zt.image-latest, pss.run-as-non-root" } } };
      }
      return o;
    });
    const report = audit(objects);
    const suppressed = report.findings.filter((f) => f.suppressed).map((f) => [f.checkId, f.suppressed?.by]);
    assert.deepEqual(suppressed, [
      ["pss.run-as-non-root", "annotation"],
      ["zt.image-latest", "annotation"],
      ["llm.probe-path", "annotation"],
    ]);
    assert.ok(report.findings.some((f) => f.checkId === "pss.allow-privilege-escalation" && f.suppressed === undefined));
  });

  it("a Namespace's annotation suppresses its namespace-level findings", () => {
    const objects = reference().map((o) => (o.kind === "Namespace" ? { ...o, metadata: { ...o.metadata, annotations: { "edgeward.dev/skip": "zt.default-deny-egress" } } } : o));
    const report = audit(objects);
    assert.deepEqual(
      report.findings.filter((f) => f.object.key === "Namespace//llm").map((f) => [f.checkId, f.suppressed?.by ?? null]),
      [
        ["zt.default-deny-ingress", null],
        ["zt.default-deny-egress", "annotation"],
      ],
    );
  });
});
