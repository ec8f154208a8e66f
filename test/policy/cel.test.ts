import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { splitPrincipal } from "../../src/policy/cel.ts";
import { evaluate, parsePolicies, PolicyError } from "../../src/policy/index.ts";
import { NamespaceMatcher, ServiceAccountMatcher } from "../../src/policy/principal-match.ts";
import { doc, EDGEWARD, input, policies } from "./fixtures.ts";

const allowWhen = (cel: string) => doc([{ when: [{ cel }] }], { name: "cel", namespace: "edge", apiVersion: EDGEWARD });
const denyWhen = (cel: string) => doc([{ when: [{ cel }] }], { name: "deny", namespace: "edge", apiVersion: EDGEWARD, action: "DENY" });
const allowAll = doc([{}], { name: "all", namespace: "edge" });

describe("CEL conditions", () => {
  const cases: [string, boolean][] = [
    ["request.max_tokens <= 256", true],
    ["request.max_tokens > 256", false],
    ["request.method == 'POST' && request.path.startsWith('/v1/')", true],
    ["request.model in ['tiny', 'mistral-7b-instruct']", true],
    ["request.headers['x-team'] == 'blue'", true],
    ["'x-missing' in request.headers", false],
    ["request.host == 'gw.example.org:8443'", true],
    ["request.stream == false && request.prompt_tokens == 12", true],
    ["source.principal == 'spiffe://td.example/ns/app/sa/web'", true],
    ["source.trust_domain == 'td.example' && source.namespace == 'app' && source.service_account == 'web'", true],
    ["request.headers.exists(k, k.startsWith('x-'))", true],
    ["request.path.matches('^/v1/(chat/)?completions$')", true],
  ];
  for (const [expr, want] of cases) {
    it(`${expr} → ${want}`, () => {
      assert.equal(evaluate(policies(allowWhen(expr)), input()).decision, want ? "ALLOW" : "DENY");
    });
  }

  it("sees defaults for an unauthenticated request without a body", () => {
    const expr = "source.principal == '' && source.namespace == '' && request.model == '' && request.max_tokens == 0 && !request.stream";
    const set = policies(allowWhen(expr));
    const bare = { source: { principal: null }, request: { method: "GET", path: "/v1/models", headers: {} } };
    assert.equal(evaluate(set, bare).decision, "ALLOW");
  });

  it("an evaluation error does not match in ALLOW, and says so", () => {
    const d = evaluate(policies(allowWhen("request.headers['x-missing'] == 'a'")), input());
    assert.equal(d.decision, "DENY");
    assert.equal(d.policy, null);
    assert.match(d.reason, /^no ALLOW policy matched \(default deny\); CEL condition in edge\/cel rule 0 failed: CEL evaluation failed: .*x-missing.*\(a failed condition counts as no match in ALLOW\)$/);
  });

  it("an evaluation error matches in DENY (fail closed), and says so", () => {
    const d = evaluate(policies(denyWhen("request.headers['x-missing'] == 'a'"), allowAll), input());
    assert.deepEqual([d.decision, d.policy, d.rule], ["DENY", "edge/deny", 0]);
    assert.match(d.reason, /^denied by DENY policy edge\/deny rule 0 \(CEL condition in edge\/deny rule 0 failed: .*; a failed condition counts as a match in DENY\)$/);
  });

  it("a runtime error such as division by zero fails closed too", () => {
    const d = evaluate(policies(denyWhen("100 / request.max_tokens > 1"), allowAll), input({ request: { maxTokens: 0 } }));
    assert.equal(d.decision, "DENY");
    assert.match(d.reason, /divide by zero/);
  });

  it("a failure in a rule that did not match is not blamed on the rule that did", () => {
    const deny = doc([{ when: [{ cel: "request.headers['x-missing'] == 'a'" }, { cel: "request.stream" }] }, {}], {
      name: "deny",
      namespace: "edge",
      apiVersion: EDGEWARD,
      action: "DENY",
    });
    assert.equal(evaluate(policies(deny), input()).reason, "denied by DENY policy edge/deny rule 1");
  });

  it("a DENY whose condition is false leaves the ALLOW", () => {
    assert.equal(evaluate(policies(denyWhen("request.stream"), allowAll), input()).decision, "ALLOW");
  });

  it("a non-bool result is refused at load", () => {
    assert.throws(() => parsePolicies(`apiVersion: ${EDGEWARD}\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  rules:\n  - when:\n    - cel: "request.model"\n`, "p.yaml"), {
      name: "PolicyError",
      message: "p.yaml:7: spec.rules[0].when[0].cel: CEL expression must yield a bool, got string",
    });
  });

  it("a non-bool result that only appears at run time does not match in ALLOW and matches in DENY", () => {
    // On the load-time probe this yields a bool; with a "num" header it yields an int.
    const expr = "('num' in request.headers) ? dyn(1) : true";
    const allow = evaluate(policies(allowWhen(expr)), input({ request: { headers: { num: "1" } } }));
    assert.equal(allow.decision, "DENY");
    assert.match(allow.reason, /CEL result is int, not bool/);
    const deny = evaluate(policies(denyWhen(expr), allowAll), input({ request: { headers: { num: "1" } } }));
    assert.deepEqual([deny.decision, deny.policy], ["DENY", "edge/deny"]);
  });

  const compileErrors: [string, string, string][] = [
    ["syntax", "request.max_tokens <=", "CEL syntax error: 1:20: found < but expecting end of input"],
    ["unknown variable", "user.admin", 'CEL expression refers to unknown variable "user" (known: request, source)'],
    ["unknown field", "source.spiffe_id == ''", 'CEL expression refers to unknown field "source.spiffe_id"'],
    ["type mismatch", "request.max_tokens <= 'many'", "CEL type error: found no matching overload for '_<=_' applied to '(int, string)'"],
    ["not a bool", "request.max_tokens + 1", "CEL expression must yield a bool, got int"],
    ["too long", `true${" && true".repeat(600)}`, "CEL expression is 4804 characters (limit 4096)"],
    ["macros nested too deeply", "[1,2].all(a, [1,2].all(b, [1,2].all(c, [1,2].all(d, a + b + c + d > 0))))", "CEL macros (all, exists, map, filter) are nested more than 3 deep"],
    ["nested too deeply", `${"(".repeat(2000)}true${")".repeat(2000)}`, "is nested too deeply"],
  ];
  for (const [name, expr, message] of compileErrors) {
    it(`compile error (${name}) is a load error with the expression's line`, () => {
      const text = `# comment\napiVersion: ${EDGEWARD}\nkind: AuthorizationPolicy\nmetadata:\n  name: x\nspec:\n  rules:\n  - when:\n    - cel: ${JSON.stringify(expr)}\n`;
      assert.throws(
        () => parsePolicies(text, "cel.yaml"),
        (err: unknown) =>
          err instanceof PolicyError && err.check === "cel" && err.line === 9 && err.message.startsWith("cel.yaml:9: spec.rules[0].when[0].cel: ") && err.message.includes(message),
      );
    });
  }

  it("comprehension variables are not mistaken for unknown variables", () => {
    assert.doesNotThrow(() => policies(allowWhen("request.headers.all(name, name.size() < 64)")));
  });

  it("a multi-line block expression reports the line of its value", () => {
    const text = `apiVersion: ${EDGEWARD}\nkind: AuthorizationPolicy\nmetadata:\n  name: x\nspec:\n  rules:\n  - when:\n    - cel: >-\n        request.max_tokens <=\n        'x'\n`;
    assert.throws(() => parsePolicies(text, "b.yaml"), { message: /^b\.yaml:8: / });
  });
});

describe("CEL's source.namespace and source.service_account read the principal as Istio's matchers do", () => {
  const segment = fc.constantFrom("ns", "sa", "app", "web", "x", "");
  const principal = fc
    .tuple(fc.constantFrom("td", "td.example"), fc.array(segment, { maxLength: 7 }))
    .map(([td, segments]) => `spiffe://${td}/${segments.join("/")}`);
  const ofCel = (p: string) => {
    const { namespace, serviceAccount } = splitPrincipal(p);
    return { namespace, serviceAccount, bare: p.slice("spiffe://".length) };
  };

  it("Istio: the namespace CEL sees is one that namespaces: [<it>] matches; none when no such segment exists", () => {
    fc.assert(
      fc.property(principal, (p) => {
        const { namespace, bare } = ofCel(p);
        if (namespace !== "") assert.ok(new NamespaceMatcher([namespace]).test(bare), p);
        else for (const ns of ["ns", "sa", "app", "web", "x"]) assert.ok(!new NamespaceMatcher([ns]).test(bare), `${p} ${ns}`);
      }),
      { numRuns: 2000 },
    );
  });

  it("Istio: the service account CEL sees is one that serviceAccounts: [<namespace>/<it>] matches", () => {
    fc.assert(
      fc.property(principal, (p) => {
        const { namespace, serviceAccount, bare } = ofCel(p);
        if (serviceAccount !== "") assert.ok(new ServiceAccountMatcher([`${namespace}/${serviceAccount}`], "default").test(bare), p);
      }),
      { numRuns: 2000 },
    );
  });

  it("Istio: a namespace segment later in the principal, or one without a following /, is read as the matcher reads it", () => {
    assert.deepEqual(splitPrincipal("spiffe://td/cluster/ns/app/sa/web"), { trustDomain: "td", namespace: "app", serviceAccount: "web" });
    assert.deepEqual(splitPrincipal("spiffe://td/ns/app"), { trustDomain: "td", namespace: "", serviceAccount: "" });
    assert.deepEqual(splitPrincipal("spiffe://td/ns//ns/app/x/sa/web/y"), { trustDomain: "td", namespace: "app", serviceAccount: "web" });
  });
});
