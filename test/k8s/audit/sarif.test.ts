import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { Ajv } from "ajv";
import addFormatsModule from "ajv-formats";
import { audit, parseExceptions } from "../../../src/k8s/audit/index.ts";
import { formatSarif } from "../../../src/k8s/audit/output/sarif.ts";
import { loadFixture } from "./support.ts";

// ajv-formats is CommonJS; its default export arrives wrapped under Node's ESM interop.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv;

/**
 * The official SARIF 2.1.0 schema (oasis-tcs/sarif-spec, sarif-2.1/schema/sarif-schema-2.1.0.json),
 * vendored verbatim. It is written for JSON Schema draft-04, which Ajv 8 does not ship; the only
 * draft-04 construct it uses is the top-level `id`, so it is read as `$id` under draft-07.
 */
function sarifValidator() {
  const schema = JSON.parse(readFileSync(new URL("./schemas/sarif-schema-2.1.0.json", import.meta.url), "utf8")) as Record<string, unknown>;
  const { $schema: _draft04, id, ...rest } = schema;
  const ajv = new Ajv({ allErrors: true, strict: false });
  addFormats(ajv);
  return ajv.compile({ $id: id as string, ...rest });
}

const validate = sarifValidator();

function sarifOf(fixture: string, exceptionsYaml?: string) {
  const exceptions = exceptionsYaml ? parseExceptions(exceptionsYaml, "exceptions.yaml", new Date("2026-01-01T00:00:00Z")) : [];
  const report = audit(loadFixture(fixture), { exceptions });
  return JSON.parse(formatSarif(report, { failOn: "high", toolVersion: "0.1.0" })) as {
    runs: [{ tool: { driver: { rules: { id: string; helpUri: string; defaultConfiguration: { level: string } }[] } }; results: Record<string, unknown>[] }];
  };
}

describe("SARIF output", () => {
  it("the schema rejects what it should (the validator is live)", () => {
    assert.equal(validate({ version: "2.1.0", runs: [{ tool: { driver: {} } }] }), false);
    assert.equal(validate({ version: "2.0.0", runs: [] }), false);
  });

  it("validates against the SARIF 2.1.0 schema, findings and suppressions included", () => {
    const log = sarifOf(
      "reference-zero-trust-llm-k3s.yaml",
      "exceptions:\n  - id: zt.image-latest\n    object: Deployment/llm/vllm\n    reason: pinned at deploy time by Flux\n    expires: 2026-12-31\n",
    );
    const ok = validate(log);
    assert.ok(ok, JSON.stringify(validate.errors, null, 2));
    assert.ok(log.runs[0].results.some((r) => Array.isArray(r["suppressions"])));
  });

  it("validates for a clean run with no results", () => {
    const log = sarifOf("clean/hardened-llm.yaml");
    assert.ok(validate(log), JSON.stringify(validate.errors, null, 2));
    assert.deepEqual(log.runs[0].results, []);
  });

  it("lists every check that ran as a rule with a help URI and a level from its severity", () => {
    const log = sarifOf("clean/hardened-llm.yaml");
    const rules = log.runs[0].tool.driver.rules;
    assert.equal(rules.length, 40);
    for (const r of rules) assert.match(r.helpUri, /^https:\/\//);
    assert.equal(rules.find((r) => r.id === "pss.privileged")?.defaultConfiguration.level, "error");
    assert.equal(rules.find((r) => r.id === "pss.run-as-non-root")?.defaultConfiguration.level, "warning");
    assert.equal(rules.find((r) => r.id === "llm.probe-missing")?.defaultConfiguration.level, "note");
  });

  it("locates a result by file and line, and logically by object key and JSON path", () => {
    const log = sarifOf("reference-zero-trust-llm-k3s.yaml");
    const r = log.runs[0].results.find((x) => x["ruleId"] === "zt.spiffe-principal");
    assert.deepEqual(r?.["locations"], [
      {
        physicalLocation: { artifactLocation: { uri: "reference-zero-trust-llm-k3s.yaml" }, region: { startLine: 73 } },
        logicalLocations: [
          {
            name: "spec.rules[0].from[0].source.principals[0]",
            fullyQualifiedName: "AuthorizationPolicy/llm/vllm-allow-gateway:spec.rules[0].from[0].source.principals[0]",
            kind: "property",
          },
        ],
      },
    ]);
    assert.equal(r?.["level"], "error");
  });
});
