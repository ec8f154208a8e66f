import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { couldAllow, evaluate } from "../../src/policy/index.ts";
import type { PolicyInput } from "../../src/policy/index.ts";
import { compileStringMatcher, pathTemplateProblem } from "../../src/policy/match.ts";
import { doc, EDGEWARD, policies } from "./fixtures.ts";

const word = fc.constantFrom("a", "b", "ab", "web", "api", "v1", "x-y");
const pattern = fc.oneof(word, word.map((w) => `${w}*`), word.map((w) => `*${w}`), fc.constant("*"));
const patterns = fc.array(pattern, { minLength: 1, maxLength: 3 });
const principalPattern = fc.oneof(
  fc.constant("*"),
  fc.tuple(word, word).map(([ns, sa]) => `td/ns/${ns}/sa/${sa}`),
  fc.tuple(word, word).map(([ns, sa]) => `spiffe://td/ns/${ns}/sa/${sa}`),
  word.map((ns) => `td/ns/${ns}/*`),
);
const cidr = fc.constantFrom("10.0.0.0/8", "10.1.2.3", "192.168.0.0/16", "::/0", "2001:db8::/32");
const method = fc.constantFrom("GET", "POST", "PUT");
const path = fc.constantFrom("/v1/models", "/v1/chat/completions", "/v1/embeddings", "/healthz", "/v1/a/b");
const pathPattern = fc.oneof(path, fc.constantFrom("/v1/*", "*/completions", "/v1/{*}/completions", "/v1/{**}", "*"));

function optional<T>(key: string, arb: fc.Arbitrary<T>): fc.Arbitrary<Record<string, T>> {
  return fc.option(arb, { nil: undefined }).map((v) => (v === undefined ? {} : { [key]: v }));
}

const source = fc
  .tuple(
    optional("principals", fc.array(principalPattern, { minLength: 1, maxLength: 3 })),
    optional("notPrincipals", fc.array(principalPattern, { minLength: 1, maxLength: 2 })),
    optional("namespaces", patterns),
    optional("notNamespaces", patterns),
    optional("ipBlocks", fc.array(cidr, { minLength: 1, maxLength: 2 })),
    optional("notRemoteIpBlocks", fc.array(cidr, { minLength: 1, maxLength: 2 })),
    optional("requestPrincipals", patterns),
  )
  .map((parts) => Object.assign({ namespaces: ["*"] }, ...parts));

const operation = fc
  .tuple(
    optional("methods", fc.array(method, { minLength: 1, maxLength: 2 })),
    optional("notMethods", fc.array(method, { minLength: 1, maxLength: 2 })),
    optional("paths", fc.array(pathPattern, { minLength: 1, maxLength: 2 })),
    optional("notPaths", fc.array(pathPattern, { minLength: 1, maxLength: 2 })),
    optional("hosts", fc.array(fc.constantFrom("gw", "*.example", "GW.EXAMPLE", "*"), { minLength: 1, maxLength: 2 })),
    optional("ports", fc.array(fc.constantFrom("443", "8443"), { minLength: 1, maxLength: 2 })),
    optional("models", patterns),
    optional("notModels", patterns),
  )
  .map((parts) => Object.assign({ methods: ["*"] }, ...parts));

const condition = fc.oneof(
  fc.record({ key: fc.constantFrom("request.headers[x-a]", "source.namespace", "source.principal", "connection.sni"), values: patterns }),
  fc.record({ key: fc.constantFrom("request.headers[X-A]", "request.auth.claims[iss]"), notValues: patterns }),
  fc.record({ key: fc.constant("source.ip"), values: fc.array(cidr, { minLength: 1, maxLength: 2 }) }),
  fc.record({ key: fc.constant("destination.port"), values: fc.array(fc.constantFrom("443", "8443"), { minLength: 1 }) }),
  fc.record({
    cel: fc.constantFrom(
      "request.max_tokens <= 256",
      "request.headers['x-a'] == 'a'",
      "source.namespace == 'web'",
      "request.model.startsWith('a')",
      "100 / request.max_tokens > 1",
      "request.stream",
    ),
  }),
);

const rule = fc
  .tuple(
    optional("from", fc.array(source.map((s) => ({ source: s })), { minLength: 1, maxLength: 2 })),
    optional("to", fc.array(operation.map((o) => ({ operation: o })), { minLength: 1, maxLength: 2 })),
    optional("when", fc.array(condition, { minLength: 1, maxLength: 2 })),
    optional("limits", fc.record({ maxTokens: fc.integer({ min: 1, max: 4096 }) }, { requiredKeys: [] }).filter((l) => Object.keys(l).length > 0)),
  )
  .map((parts) => Object.assign({}, ...parts));

const policyDoc = fc
  .tuple(
    fc.constantFrom("ALLOW", "ALLOW", "DENY", "AUDIT", "CUSTOM"),
    fc.array(rule, { maxLength: 3 }),
    fc.option(fc.constantFrom({ app: "gw" }, { app: "other" }), { nil: undefined }),
  )
  .map(([action, rules, selector]) => ({ action, rules, selector }));

const policySet = fc.array(policyDoc, { maxLength: 4 }).map((docs) =>
  policies(
    ...docs.map((d, i) =>
      doc(d.rules, {
        name: `p${i}`,
        apiVersion: EDGEWARD,
        action: d.action,
        ...(d.selector ? { selector: d.selector } : {}),
        ...(d.action === "CUSTOM" ? { provider: "ext" } : {}),
      }),
    ),
  ),
);

const requestInput: fc.Arbitrary<PolicyInput> = fc.record({
  source: fc.record({
    principal: fc.option(fc.tuple(word, word).map(([ns, sa]) => `spiffe://td/ns/${ns}/sa/${sa}`), { nil: null }),
    ip: fc.constantFrom("10.1.2.3", "192.168.1.1", "2001:db8::1", "not-an-ip"),
  }),
  request: fc.record({
    method,
    path: fc.oneof(path, path.map((p) => `${p}?q=1`)),
    host: fc.constantFrom("gw", "gw.example:8443", "GW.EXAMPLE"),
    port: fc.constantFrom(443, 8443),
    sni: fc.constantFrom("gw.example", "other"),
    headers: fc.dictionary(fc.constantFrom("x-a", "x-b", "constructor", "__proto__"), word),
    model: fc.option(word, { nil: undefined }),
    maxTokens: fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }),
    stream: fc.boolean(),
  }, { requiredKeys: ["method", "path", "headers"] }),
});
const labels = fc.constantFrom<Record<string, string>>({}, { app: "gw" }, { app: "other" });

describe("evaluator properties", () => {
  it("a decision for a random valid policy never throws and is deterministic", () => {
    fc.assert(
      fc.property(policySet, requestInput, labels, (set, req, workloadLabels) => {
        const a = evaluate(set, req, { workload: { labels: workloadLabels } });
        const b = evaluate(set, req, { workload: { labels: workloadLabels } });
        assert.deepEqual(a, b);
        assert.ok(a.decision === "ALLOW" || a.decision === "DENY");
        assert.equal(a.policy === null, a.rule === null);
        if (a.decision === "ALLOW") assert.notEqual(a.policy, null);
        else assert.deepEqual(a.limits, {});
      }),
      { numRuns: 150 },
    );
  });

  it("adding a DENY policy that matches turns ALLOW into DENY", () => {
    fc.assert(
      fc.property(policySet, requestInput, (set, req) => {
        const before = evaluate(set, req);
        const p = req.source.principal;
        const denyRule = p === null ? { from: [{ source: { notPrincipals: ["*"] } }] } : { from: [{ source: { principals: [p] } }], to: [{ operation: { methods: [req.request.method] } }] };
        const deny = policies(doc([denyRule], { name: "zz-deny", namespace: "guard", action: "DENY" }));
        const after = evaluate({ policies: [...set.policies, ...deny.policies], sources: [] }, req);
        assert.equal(after.decision, "DENY");
        if (before.decision === "ALLOW" || before.policy === null) {
          assert.equal(after.policy, "guard/zz-deny");
        }
      }),
      { numRuns: 100 },
    );
  });

  it("couldAllow is never wrong to say no: when it does, every body gets a DENY", () => {
    const body = fc.record({
      model: fc.option(word, { nil: undefined }),
      maxTokens: fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }),
      stream: fc.boolean(),
      promptTokens: fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
    });
    let refused = 0;
    fc.assert(
      fc.property(policySet, requestInput, fc.array(body, { minLength: 1, maxLength: 5 }), labels, fc.boolean(), (set, req, bodies, workloadLabels, essentialOnly) => {
        const options = { workload: { labels: workloadLabels }, essentialOnly };
        const bare = { ...req, request: { ...req.request, model: undefined, maxTokens: undefined, stream: undefined, promptTokens: undefined } };
        if (couldAllow(set, bare, options)) return;
        refused++;
        for (const b of bodies) assert.equal(evaluate(set, { ...req, request: { ...req.request, ...b } }, options).decision, "DENY");
      }),
      { numRuns: 1000 },
    );
    assert.ok(refused > 0, "the property was exercised");
  });

  it("ALLOW requires a matching ALLOW policy (zero trust)", () => {
    fc.assert(
      fc.property(policySet, requestInput, (set, req) => {
        const withoutAllow = { policies: set.policies.filter((p) => p.action !== "ALLOW"), sources: [] };
        assert.equal(evaluate(withoutAllow, req).decision, "DENY");
      }),
      { numRuns: 60 },
    );
  });
});

describe("string matcher properties", () => {
  const text = fc.string({ maxLength: 12 });
  it("prefix* agrees with startsWith", () => {
    fc.assert(fc.property(text, text, (p, v) => {
      fc.pre(!p.startsWith("*") || p === "");
      assert.equal(compileStringMatcher([`${p}*`]).test(v), v !== "" && v.startsWith(p));
    }));
  });
  it("*suffix agrees with endsWith", () => {
    fc.assert(fc.property(text, text, (s, v) => {
      fc.pre(!s.endsWith("*"));
      assert.equal(compileStringMatcher([`*${s}`]).test(v), v !== "" && v.endsWith(s));
    }));
  });
  it("an exact value agrees with ===", () => {
    fc.assert(fc.property(text, text, (e, v) => {
      fc.pre(!e.startsWith("*") && !e.endsWith("*"));
      assert.equal(compileStringMatcher([e]).test(v), v !== "" && v === e);
    }));
  });
  it("* matches every non-empty value", () => {
    fc.assert(fc.property(text, (v) => assert.equal(compileStringMatcher(["*"]).test(v), v !== "")));
  });
  it("case-insensitive matching agrees with lowercasing both sides", () => {
    fc.assert(fc.property(text, text, (e, v) => {
      fc.pre(!e.startsWith("*") && !e.endsWith("*"));
      assert.equal(compileStringMatcher([e], { caseInsensitive: true }).test(v), v !== "" && v.toLowerCase() === e.toLowerCase());
    }));
  });
  it("a list matches when any pattern does", () => {
    fc.assert(fc.property(fc.array(fc.oneof(text, text.map((t) => `${t}*`), text.map((t) => `*${t}`)), { minLength: 1, maxLength: 4 }), text, (ps, v) => {
      assert.equal(compileStringMatcher(ps).test(v), ps.some((p) => compileStringMatcher([p]).test(v)));
    }));
  });
});

describe("path template properties (Envoy URI templates)", () => {
  // RFC 3986 pchar as Envoy's template operators accept it: unreserved, "%", sub-delims but "*", ":", "@", "=".
  const PCHAR = new Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()+,;:@=");

  /** A backtracking reference: `{*}` takes one or more pchar, `{**}` zero or more pchar or "/", literals themselves. */
  function reference(template: string, path: string): boolean {
    const tokens = template.split(/(\{\*\*\}|\{\*\})/).filter((t) => t !== "");
    const match = (ti: number, pi: number): boolean => {
      if (ti === tokens.length) return pi === path.length;
      const t = tokens[ti] as string;
      if (t === "{*}" || t === "{**}") {
        const slash = t === "{**}";
        if (slash && match(ti + 1, pi)) return true;
        for (let k = pi; k < path.length; k++) {
          const c = path[k] as string;
          if (!PCHAR.has(c) && !(slash && c === "/")) return false;
          if (match(ti + 1, k + 1)) return true;
        }
        return false;
      }
      return path.startsWith(t, pi) && match(ti + 1, pi + t.length);
    };
    return match(0, 0);
  }

  const literal = fc.constantFrom("v1", "a", "store", "cart", "x.y", "a=b");
  const segment = fc.oneof(literal, fc.constant("{*}"));
  const template = fc
    .tuple(fc.array(segment, { maxLength: 3 }), fc.option(fc.tuple(fc.constant("{**}"), fc.array(literal, { maxLength: 2 })), { nil: undefined }), fc.boolean())
    .map(([head, tail, slash]) => `/${[...head, ...(tail ? [tail[0], ...tail[1]] : [])].join("/")}${slash ? "/" : ""}`)
    .filter((t) => t.includes("{*}") || t.includes("{**}"));
  const pathOf = fc.array(fc.constantFrom("/", "/", "v1", "a", "store", "cart", "x.y", "a=b", " ", "\"", "*", "%2F", "", "b"), { maxLength: 8 }).map((p) => `/${p.join("")}`);

  it("{*} and {**} match what Envoy's regex does: one or more pchar; zero or more pchar or /", () => {
    fc.assert(
      fc.property(template, pathOf, (t, p) => {
        assert.equal(pathTemplateProblem(t), null, t);
        assert.equal(compileStringMatcher([t], { pathTemplates: true }).test(p), reference(t, p), `${t} vs ${p}`);
      }),
      { numRuns: 3000 },
    );
  });
});
