import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { evaluate } from "../../src/policy/index.ts";
import { doc, EDGEWARD, input, policies } from "./fixtures.ts";

// Rules naming exact principals are looked up by the caller's principal; the others are tried for
// every caller. These tests pin that the lookup never changes a decision or its reason.

const WEB = "spiffe://td.example/ns/app/sa/web";
const API = "spiffe://td.example/ns/app/sa/api";
const allowFrom = (...principals: string[]) => ({ from: [{ source: { principals } }] });

describe("rules looked up by exact principal", () => {
  it("keeps file order between exact and pattern rules of one policy", () => {
    const set = policies(doc([allowFrom(API), allowFrom("*/sa/web"), allowFrom(WEB)], { action: "ALLOW", name: "mixed" }));
    assert.equal(evaluate(set, input()).rule, 1);
    assert.equal(evaluate(set, input({ source: { principal: API } })).rule, 0);
  });

  it("keeps file order across policies", () => {
    const set = policies(
      doc([allowFrom(WEB)], { action: "ALLOW", name: "a" }),
      doc([{ from: [{ source: { namespaces: ["app"] } }] }], { action: "ALLOW", name: "b" }),
      doc([allowFrom(WEB)], { action: "ALLOW", name: "c" }),
    );
    assert.equal(evaluate(set, input()).policy, "default/a");
    assert.equal(evaluate(set, input({ source: { principal: API } })).policy, "default/b");
  });

  it("matches either spelling of the principal, and never an unauthenticated caller", () => {
    const set = policies(doc([allowFrom("td.example/ns/app/sa/web")], { action: "ALLOW" }));
    assert.equal(evaluate(set, input()).decision, "ALLOW");
    assert.equal(evaluate(set, input({ source: { principal: "td.example/ns/app/sa/web" } })).decision, "ALLOW");
    assert.equal(evaluate(set, input({ source: { principal: null } })).decision, "DENY");
    assert.equal(evaluate(set, input({ source: { principal: "spiffe://" } })).decision, "DENY");
  });

  it("explains the first failed CEL condition of a pattern rule after skipping other callers' rules", () => {
    const set = policies(
      doc([{ ...allowFrom(API), when: [{ cel: "request.headers['x-missing'] == 'a'" }] }], { apiVersion: EDGEWARD, action: "ALLOW", name: "api" }),
      doc([{ ...allowFrom("*/sa/web"), when: [{ cel: "request.headers['x-absent'] == 'b'" }] }], { apiVersion: EDGEWARD, action: "ALLOW", name: "web" }),
    );
    const decision = evaluate(set, input());
    assert.equal(decision.decision, "DENY");
    assert.match(decision.reason, /CEL condition in default\/web rule 0 failed/);
  });
});

// A prefix no caller has makes a rule's principals a pattern: the same matches, without the lookup.
const UNINDEXED = "\u0000never*";

const principal = fc.constantFrom(WEB, API, "td.example/ns/ops/sa/web", "spiffe://other.example/ns/app/sa/web");
const source = fc.oneof(
  fc.record({ principals: fc.uniqueArray(principal, { minLength: 1, maxLength: 3 }) }),
  fc.record({ principals: fc.uniqueArray(fc.constantFrom("*", "td.example/*", "*/sa/web"), { minLength: 1, maxLength: 2 }) }),
  fc.record({ namespaces: fc.constantFrom(["app"], ["ops"]) }),
);
const rule = fc.record(
  {
    from: fc.array(source, { minLength: 1, maxLength: 2 }).map((s) => s.map((x) => ({ source: x }))),
    to: fc.constantFrom([{ operation: { models: ["tiny"] } }], [{ operation: { methods: ["GET"] } }]),
    when: fc.constantFrom([{ cel: "request.max_tokens <= 100" }], [{ cel: "request.headers['x-absent'] == 'a'" }]),
  },
  { requiredKeys: [] },
);
const policy = fc.record({ action: fc.constantFrom("ALLOW", "ALLOW", "DENY", "AUDIT", "CUSTOM"), rules: fc.array(rule, { maxLength: 4 }) });
const caller = fc.constantFrom<string | null>(WEB, API, null, "spiffe://td.example/ns/ops/sa/web", "spiffe://");

type GeneratedPolicy = { action: string; rules: { from?: { source: Record<string, unknown> }[] }[] };

function documents(ps: GeneratedPolicy[], unindexed: boolean): Record<string, unknown>[] {
  return ps.map((p, i) => {
    const rules = p.rules.map((r) =>
      !unindexed || r.from === undefined
        ? r
        : {
            ...r,
            from: r.from.map(({ source: s }) => ({
              source: Array.isArray(s.principals) ? { ...s, principals: [...s.principals, UNINDEXED] } : s,
            })),
          },
    );
    // Fresh objects: shared ones would be written as YAML aliases, which policy files refuse.
    return doc(JSON.parse(JSON.stringify(rules)) as unknown[], { apiVersion: EDGEWARD, action: p.action, name: `p${i}`, ...(p.action === "CUSTOM" ? { provider: "ext" } : {}) });
  });
}

describe("the lookup never changes a decision", () => {
  it("decides as trying every rule in turn does, reason included", () => {
    fc.assert(
      fc.property(fc.array(policy, { maxLength: 5 }), caller, fc.constantFrom(50, 200), (ps, who, maxTokens) => {
        const request = input({ source: { principal: who }, request: { maxTokens } });
        assert.deepEqual(evaluate(policies(...documents(ps, false)), request), evaluate(policies(...documents(ps, true)), request));
      }),
      { numRuns: 150 },
    );
  });
});
