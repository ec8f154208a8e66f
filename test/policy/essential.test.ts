import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { evaluate, PolicyError } from "../../src/policy/index.ts";
import { doc, EDGEWARD, input, policies } from "./fixtures.ts";

const health = { to: [{ operation: { paths: ["/v1/models"], methods: ["GET"] } }], essential: true };
const chat = { to: [{ operation: { paths: ["/v1/chat/completions"] } }] };
const chatEssentialTiny = { to: [{ operation: { paths: ["/v1/chat/completions"], models: ["tiny"] } }], essential: true };

describe("essential rules (the restricted stage)", () => {
  const set = policies(doc([chat, health, chatEssentialTiny], { apiVersion: EDGEWARD, name: "edge" }));

  it("outside the restricted stage every ALLOW rule allows, in file order", () => {
    const d = evaluate(set, input());
    assert.equal(d.decision, "ALLOW");
    assert.equal(d.rule, 0);
  });

  it("essentialOnly skips a matching non-essential rule for a later essential one", () => {
    const d = evaluate(set, input(), { essentialOnly: true });
    assert.equal(d.decision, "ALLOW");
    assert.equal(d.rule, 2);
  });

  it("essentialOnly denies what only a non-essential rule allows, and says why", () => {
    const d = evaluate(set, input({ request: { model: "big" } }), { essentialOnly: true });
    assert.equal(d.decision, "DENY");
    assert.equal(d.policy, null);
    assert.match(d.reason, /^no essential ALLOW rule matched/);
  });

  it("DENY policies still apply to essential traffic", () => {
    const withDeny = policies(
      doc([chatEssentialTiny], { apiVersion: EDGEWARD, name: "edge" }),
      doc([{ from: [{ source: { principals: ["td.example/ns/app/sa/web"] } }] }], { action: "DENY", name: "block" }),
    );
    const d = evaluate(withDeny, input(), { essentialOnly: true });
    assert.equal(d.decision, "DENY");
    assert.equal(d.policy, "default/block");
  });

  it("`essential` is an Edgeward extension: an Istio document may not carry it", () => {
    assert.throws(() => policies(doc([{ ...chat, essential: true }])), (e: unknown) => e instanceof PolicyError && /essential/.test(e.message));
  });

  it("`essential` must be a boolean", () => {
    for (const bad of ["yes", 1, null, ["true"]]) {
      assert.throws(() => policies(doc([{ ...chat, essential: bad }], { apiVersion: EDGEWARD })), (e: unknown) => e instanceof PolicyError && /essential must be true or false/.test(e.message));
    }
  });
});
