import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { couldAllow, evaluate, parsePolicies } from "../../src/policy/index.ts";
import { doc, EDGEWARD, input, policies } from "./fixtures.ts";
import type { InputOverrides } from "./fixtures.ts";

const ALLOWED = "ALLOW";
const DENIED = "DENY";

type Row = [name: string, rule: Record<string, unknown>, request: InputOverrides, want: "ALLOW" | "DENY"];
const src = (s: Record<string, unknown>) => ({ from: [{ source: s }] });
const op = (o: Record<string, unknown>) => ({ to: [{ operation: o }] });
const when = (...c: Record<string, unknown>[]) => ({ when: c });
const anon: InputOverrides = { source: { principal: null } };

// One ALLOW rule, one request: does the rule match? (No match = default deny.)
const ROWS: Row[] = [
  // principals: Istio form, spiffe form, and the matching forms
  ["principal exact (Istio form)", src({ principals: ["td.example/ns/app/sa/web"] }), {}, ALLOWED],
  ["principal exact (spiffe form)", src({ principals: ["spiffe://td.example/ns/app/sa/web"] }), {}, ALLOWED],
  ["principal caller written without spiffe://", src({ principals: ["td.example/ns/app/sa/web"] }), { source: { principal: "td.example/ns/app/sa/web" } }, ALLOWED],
  ["principal other", src({ principals: ["td.example/ns/app/sa/api"] }), {}, DENIED],
  ["principal prefix", src({ principals: ["td.example/ns/app/*"] }), {}, ALLOWED],
  ["principal prefix miss", src({ principals: ["td.example/ns/ops/*"] }), {}, DENIED],
  ["principal suffix", src({ principals: ["*/sa/web"] }), {}, ALLOWED],
  ["principal suffix miss", src({ principals: ["*/sa/api"] }), {}, DENIED],
  ["principal * matches any authenticated", src({ principals: ["*"] }), {}, ALLOWED],
  ["principal * does not match unauthenticated", src({ principals: ["*"] }), anon, DENIED],
  ["notPrincipals excludes", src({ notPrincipals: ["td.example/ns/app/sa/web"] }), {}, DENIED],
  ["notPrincipals other", src({ notPrincipals: ["td.example/ns/app/sa/api"] }), {}, ALLOWED],
  ["notPrincipals * matches only unauthenticated", src({ notPrincipals: ["*"] }), anon, ALLOWED],
  ["notPrincipals * excludes authenticated", src({ notPrincipals: ["*"] }), {}, DENIED],
  ["principals and notPrincipals together", src({ principals: ["td.example/*"], notPrincipals: ["*/sa/web"] }), {}, DENIED],
  // namespaces
  ["namespace from principal", src({ namespaces: ["app"] }), {}, ALLOWED],
  ["namespace prefix", src({ namespaces: ["ap*"] }), {}, ALLOWED],
  ["namespace other", src({ namespaces: ["ops"] }), {}, DENIED],
  ["namespace of unauthenticated", src({ namespaces: ["*"] }), anon, DENIED],
  ["notNamespaces excludes", src({ notNamespaces: ["app"] }), {}, DENIED],
  ["notNamespaces other", src({ notNamespaces: ["ops"] }), {}, ALLOWED],
  ["namespace with no /ns/ segment", src({ namespaces: ["*"] }), { source: { principal: "spiffe://td.example/workload" } }, DENIED],
  ["Istio: namespaces match /ns/<ns>/ anywhere in the principal", src({ namespaces: ["ops"] }), { source: { principal: "spiffe://td.example/ns/app/ns/ops/sa/web" } }, ALLOWED],
  ["Istio: notNamespaces exclude /ns/<ns>/ anywhere in the principal", src({ notNamespaces: ["ops"] }), { source: { principal: "spiffe://td.example/ns/app/ns/ops/sa/web" } }, DENIED],
  ["Istio: a namespace must be followed by / (.*/ns/<ns>/.*)", src({ namespaces: ["app"] }), { source: { principal: "spiffe://td.example/ns/app" } }, DENIED],
  ["Istio: a namespace wildcard runs across segments (* is .*)", src({ namespaces: ["*-prod"] }), { source: { principal: "spiffe://td.example/ns/app/sa/web-prod/x" } }, ALLOWED],
  // service accounts and trust domains, read from the principal as Istio's generated matchers do
  ["Istio: serviceAccounts <namespace>/<name>", src({ serviceAccounts: ["app/web"] }), {}, ALLOWED],
  ["Istio: serviceAccounts <name> is in the policy's namespace", src({ serviceAccounts: ["web"] }), {}, DENIED],
  ["Istio: serviceAccounts <name> matches in the policy's namespace", src({ serviceAccounts: ["web"] }), { source: { principal: "spiffe://td.example/ns/edge/sa/web" } }, ALLOWED],
  ["Istio: serviceAccounts do not match a longer name", src({ serviceAccounts: ["app/we"] }), {}, DENIED],
  ["Istio: serviceAccounts allow segments around ns and sa", src({ serviceAccounts: ["app/web"] }), { source: { principal: "spiffe://td.example/ns/app/x/sa/web/y" } }, ALLOWED],
  ["Istio: serviceAccounts never match an unauthenticated caller", src({ serviceAccounts: ["app/web"] }), anon, DENIED],
  ["Istio: notServiceAccounts exclude", src({ notServiceAccounts: ["app/web"] }), {}, DENIED],
  ["Istio: notServiceAccounts other", src({ notServiceAccounts: ["app/api"] }), {}, ALLOWED],
  ["Istio: trustDomains exact", src({ trustDomains: ["td.example"] }), {}, ALLOWED],
  ["Istio: trustDomains exact is the whole trust domain", src({ trustDomains: ["td"] }), {}, DENIED],
  ["Istio: trustDomains prefix", src({ trustDomains: ["td.*"] }), {}, ALLOWED],
  ["Istio: trustDomains suffix", src({ trustDomains: ["*.example"] }), {}, ALLOWED],
  ["Istio: trustDomains suffix stays in the trust domain", src({ trustDomains: ["*app"] }), {}, DENIED],
  ["Istio: trustDomains * is any authenticated caller", src({ trustDomains: ["*"] }), anon, DENIED],
  ["Istio: notTrustDomains exclude", src({ notTrustDomains: ["td.example"] }), {}, DENIED],
  // ip blocks
  ["ipBlocks CIDR", src({ ipBlocks: ["10.0.0.0/8"] }), {}, ALLOWED],
  ["ipBlocks single address", src({ ipBlocks: ["10.1.2.3"] }), {}, ALLOWED],
  ["ipBlocks miss", src({ ipBlocks: ["192.168.0.0/16"] }), {}, DENIED],
  ["ipBlocks IPv4-mapped caller", src({ ipBlocks: ["10.0.0.0/8"] }), { source: { ip: "::ffff:10.9.9.9" } }, ALLOWED],
  ["ipBlocks IPv6", src({ ipBlocks: ["2001:db8::/32"] }), { source: { ip: "2001:db8::7" } }, ALLOWED],
  ["ipBlocks without caller ip", src({ ipBlocks: ["0.0.0.0/0"] }), { source: { ip: undefined } }, DENIED],
  ["notIpBlocks excludes", src({ notIpBlocks: ["10.1.0.0/16"] }), {}, DENIED],
  ["notIpBlocks other", src({ notIpBlocks: ["10.2.0.0/16"] }), {}, ALLOWED],
  ["remoteIpBlocks", src({ remoteIpBlocks: ["203.0.113.0/24"] }), {}, ALLOWED],
  ["remoteIpBlocks is not the peer ip", src({ remoteIpBlocks: ["10.0.0.0/8"] }), {}, DENIED],
  ["remoteIpBlocks falls back to the peer ip", src({ remoteIpBlocks: ["10.0.0.0/8"] }), { source: { remoteIp: undefined } }, ALLOWED],
  ["notRemoteIpBlocks excludes", src({ notRemoteIpBlocks: ["203.0.113.5"] }), {}, DENIED],
  // request principals: no JWT in the gateway
  ["requestPrincipals never match", src({ requestPrincipals: ["*"] }), {}, DENIED],
  ["notRequestPrincipals * matches (no JWT)", src({ notRequestPrincipals: ["*"] }), {}, ALLOWED],
  // any source of several
  ["second source matches", { from: [{ source: { principals: ["x/ns/y/sa/z"] } }, { source: { namespaces: ["app"] } }] }, {}, ALLOWED],
  ["all fields of one source must match", src({ namespaces: ["app"], ipBlocks: ["192.168.0.0/16"] }), {}, DENIED],
  // operation fields
  ["method", op({ methods: ["POST"] }), {}, ALLOWED],
  ["method is case-sensitive", op({ methods: ["post"] }), {}, DENIED],
  ["notMethods", op({ notMethods: ["POST"] }), {}, DENIED],
  ["path exact", op({ paths: ["/v1/chat/completions"] }), {}, ALLOWED],
  ["path exact ignores the query", op({ paths: ["/v1/chat/completions"] }), { request: { path: "/v1/chat/completions?x=1" } }, ALLOWED],
  ["path prefix", op({ paths: ["/v1/*"] }), {}, ALLOWED],
  ["path suffix", op({ paths: ["*/completions"] }), {}, ALLOWED],
  ["path miss", op({ paths: ["/v1/embeddings"] }), {}, DENIED],
  ["path template {*}", op({ paths: ["/v1/{*}/completions"] }), {}, ALLOWED],
  ["path template {*} is one segment", op({ paths: ["/{*}/completions"] }), {}, DENIED],
  ["path template {**}", op({ paths: ["/v1/{**}"] }), {}, ALLOWED],
  ["path template {**} needs its slash", op({ paths: ["/v1/chat/completions/{**}"] }), {}, DENIED],
  ["Envoy: {**} matches zero characters (/v1/{**} covers /v1/)", op({ paths: ["/v1/{**}"] }), { request: { path: "/v1/" } }, ALLOWED],
  ["Envoy: {**} between literals covers an empty segment (/store//cart)", op({ paths: ["/store/{**}/cart"] }), { request: { path: "/store//cart" } }, ALLOWED],
  ["Envoy: {**} between literals covers several segments", op({ paths: ["/store/{**}/cart"] }), { request: { path: "/store/a/b/cart" } }, ALLOWED],
  ["Envoy: {*} never matches an empty segment", op({ paths: ["/v1/{*}/completions"] }), { request: { path: "/v1//completions" } }, DENIED],
  ["Envoy: {*} matches pchar only, not a raw space", op({ paths: ["/v1/{*}/completions"] }), { request: { path: "/v1/a b/completions" } }, DENIED],
  ["Envoy: {**} matches pchar and / only", op({ paths: ["/v1/{**}"] }), { request: { path: "/v1/a\"b" } }, DENIED],
  ["notPaths", op({ notPaths: ["/v1/chat/*"] }), {}, DENIED],
  ["Istio: hosts compare the whole Host header: a name does not match name:port", op({ hosts: ["gw.example.org"] }), {}, DENIED],
  ["Istio: hosts name:* matches name:port", op({ hosts: ["gw.example.org", "gw.example.org:*"] }), {}, ALLOWED],
  ["host without a port", op({ hosts: ["gw.example.org"] }), { request: { host: "gw.example.org" } }, ALLOWED],
  ["host case-insensitive", op({ hosts: ["GW.Example.ORG:8443"] }), {}, ALLOWED],
  ["host with port", op({ hosts: ["gw.example.org:8443"] }), {}, ALLOWED],
  ["host suffix", op({ hosts: ["*.example.org:8443"] }), {}, ALLOWED],
  ["host miss", op({ hosts: ["other.example.org"] }), {}, DENIED],
  ["host absent", op({ hosts: ["*"] }), { request: { host: undefined } }, DENIED],
  ["Istio: hosts * is present_match: an empty Host matches", op({ hosts: ["*"] }), { request: { host: "" } }, ALLOWED],
  ["notHosts", op({ notHosts: ["*.EXAMPLE.org:8443"] }), {}, DENIED],
  ["Istio: notHosts name does not exclude name:port", op({ notHosts: ["gw.example.org"] }), {}, ALLOWED],
  ["Istio: notHosts name:* excludes name:port, case-insensitively", op({ notHosts: ["GW.example.org:*"] }), {}, DENIED],
  ["ports (string)", op({ ports: ["8443"] }), {}, ALLOWED],
  ["ports (number)", op({ ports: [8443] }), {}, ALLOWED],
  ["ports miss", op({ ports: ["443"] }), {}, DENIED],
  ["notPorts", op({ notPorts: ["8443"] }), {}, DENIED],
  ["all fields of one operation must match", op({ methods: ["POST"], paths: ["/v1/models"] }), {}, DENIED],
  ["second operation matches", { to: [{ operation: { methods: ["GET"] } }, { operation: { paths: ["/v1/*"] } }] }, {}, ALLOWED],
  // when: key conditions
  ["header value", when({ key: "request.headers[X-Team]", values: ["blue"] }), {}, ALLOWED],
  ["header prefix", when({ key: "request.headers[x-team]", values: ["bl*"] }), {}, ALLOWED],
  ["header miss", when({ key: "request.headers[x-team]", values: ["red"] }), {}, DENIED],
  ["header absent", when({ key: "request.headers[x-other]", values: ["*"] }), {}, DENIED],
  ["Istio: header * is present_match: a header sent empty matches", when({ key: "request.headers[x-debug]", values: ["*"] }), { request: { headers: { "x-debug": "" } } }, ALLOWED],
  ["Istio: header notValues * excludes a header sent empty", when({ key: "request.headers[x-debug]", notValues: ["*"] }), { request: { headers: { "x-debug": "" } } }, DENIED],
  ["Istio: header prefix never matches a header sent empty", when({ key: "request.headers[x-debug]", values: ["t*"] }), { request: { headers: { "x-debug": "" } } }, DENIED],
  ["Istio: principals * is .+: an empty principal does not match", src({ principals: ["*"] }), { source: { principal: "spiffe://" } }, DENIED],
  ["Istio: connection.sni * is .+: an empty SNI does not match", when({ key: "connection.sni", values: ["*"] }), { request: { sni: "" } }, DENIED],
  ["header notValues", when({ key: "request.headers[x-team]", notValues: ["blue"] }), {}, DENIED],
  ["header notValues when absent", when({ key: "request.headers[x-other]", notValues: ["yes"] }), {}, ALLOWED],
  ["source.ip", when({ key: "source.ip", values: ["10.0.0.0/8"] }), {}, ALLOWED],
  ["source.ip miss", when({ key: "source.ip", values: ["10.9.0.0/16"] }), {}, DENIED],
  ["remote.ip", when({ key: "remote.ip", values: ["203.0.113.0/24"] }), {}, ALLOWED],
  ["source.namespace", when({ key: "source.namespace", values: ["app"] }), {}, ALLOWED],
  ["Istio: source.namespace matches /ns/<ns>/ anywhere in the principal", when({ key: "source.namespace", values: ["ops"] }), { source: { principal: "spiffe://td.example/ns/app/ns/ops/sa/web" } }, ALLOWED],
  ["Istio: source.serviceAccount", when({ key: "source.serviceAccount", values: ["app/web"] }), {}, ALLOWED],
  ["Istio: source.serviceAccount miss", when({ key: "source.serviceAccount", notValues: ["app/web"] }), {}, DENIED],
  ["Istio: source.trustDomain", when({ key: "source.trustDomain", values: ["td.example"] }), {}, ALLOWED],
  ["Istio: destination.ip", when({ key: "destination.ip", values: ["10.9.0.0/16"] }), { request: { destinationIp: "10.9.8.7" } }, ALLOWED],
  ["Istio: destination.ip miss", when({ key: "destination.ip", values: ["10.9.0.0/16"] }), { request: { destinationIp: "10.1.8.7" } }, DENIED],
  ["destination.ip unknown matches no value", when({ key: "destination.ip", values: ["0.0.0.0/0"] }), {}, DENIED],
  ["source.principal", when({ key: "source.principal", values: ["spiffe://td.example/ns/app/*"] }), {}, ALLOWED],
  ["destination.port", when({ key: "destination.port", values: ["8443"] }), {}, ALLOWED],
  ["destination.port miss", when({ key: "destination.port", notValues: ["8443"] }), {}, DENIED],
  ["connection.sni", when({ key: "connection.sni", values: ["*.example.org"] }), {}, ALLOWED],
  ["request.auth.claims never present", when({ key: "request.auth.claims[iss]", values: ["*"] }), {}, DENIED],
  ["request.auth.principal never present", when({ key: "request.auth.principal", values: ["*"] }), {}, DENIED],
  ["all when conditions must match", when({ key: "source.namespace", values: ["app"] }, { key: "destination.port", values: ["1"] }), {}, DENIED],
  // combination
  ["from + to + when", { ...src({ namespaces: ["app"] }), ...op({ methods: ["POST"] }), ...when({ key: "request.headers[x-team]", values: ["blue"] }) }, {}, ALLOWED],
  ["from matches, to does not", { ...src({ namespaces: ["app"] }), ...op({ methods: ["GET"] }) }, {}, DENIED],
  ["empty rule matches everything", {}, anon, ALLOWED],
];

const MODEL_ROWS: Row[] = [
  ["model exact", op({ models: ["tiny"] }), {}, ALLOWED],
  ["model prefix", op({ models: ["mistral-*"] }), { request: { model: "mistral-7b-instruct" } }, ALLOWED],
  ["model miss", op({ models: ["mistral-7b-instruct"] }), {}, DENIED],
  ["model absent", op({ models: ["*"] }), { request: { model: undefined } }, DENIED],
  ["notModels", op({ notModels: ["tiny"] }), {}, DENIED],
  ["notModels other", op({ notModels: ["huge"] }), {}, ALLOWED],
];

describe("Istio AuthorizationPolicy matching, one field at a time", () => {
  for (const [name, rule, req, want] of ROWS) {
    it(name, () => {
      const set = policies(doc([rule], { name: "allow", namespace: "edge", action: "ALLOW" }));
      const d = evaluate(set, input(req));
      assert.equal(d.decision, want, d.reason);
      if (want === "ALLOW") assert.deepEqual([d.policy, d.rule], ["edge/allow", 0]);
      else assert.deepEqual([d.policy, d.rule, d.reason], [null, null, "no ALLOW policy matched (default deny)"]);
    });
  }
  for (const [name, rule, req, want] of MODEL_ROWS) {
    it(`edgeward: ${name}`, () => {
      const set = policies(doc([rule], { name: "allow", action: "ALLOW", apiVersion: EDGEWARD }));
      assert.equal(evaluate(set, input(req)).decision, want);
    });
  }
});

describe("policy evaluation order", () => {
  const allowAll = doc([{}], { name: "allow-all", namespace: "edge" });

  it("allows with the deciding rule and its policy", () => {
    assert.deepEqual(evaluate(policies(allowAll), input()), {
      decision: "ALLOW",
      policy: "edge/allow-all",
      rule: 0,
      reason: "allowed by ALLOW policy edge/allow-all rule 0",
      limits: {},
      audit: false,
    });
  });

  it("DENY overrides ALLOW, wherever it is in the file", () => {
    const deny = doc([{ to: [{ operation: { paths: ["/v1/completions"] } }] }, { to: [{ operation: { methods: ["POST"] } }] }], {
      name: "no-raw-completions",
      namespace: "edge",
      action: "DENY",
    });
    assert.deepEqual(evaluate(policies(allowAll, deny), input()), {
      decision: "DENY",
      policy: "edge/no-raw-completions",
      rule: 1,
      reason: "denied by DENY policy edge/no-raw-completions rule 1",
      limits: {},
      audit: false,
    });
  });

  it("a DENY that does not match leaves the ALLOW", () => {
    const deny = doc([{ to: [{ operation: { methods: ["DELETE"] } }] }], { name: "d", action: "DENY" });
    assert.equal(evaluate(policies(deny, allowAll), input()).decision, "ALLOW");
  });

  it("default deny: no policies at all", () => {
    assert.deepEqual(evaluate({ policies: [], sources: [] }, input()), {
      decision: "DENY",
      policy: null,
      rule: null,
      reason: "no ALLOW policy matched (default deny)",
      limits: {},
      audit: false,
    });
  });

  it("default deny: only DENY policies, none matching (Istio would allow)", () => {
    const deny = doc([{ to: [{ operation: { methods: ["DELETE"] } }] }], { name: "d", action: "DENY" });
    assert.equal(evaluate(policies(deny), input()).decision, "DENY");
  });

  it("spec: {} and ALLOW without rules allow nothing", () => {
    const empty = { apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", metadata: { name: "e" }, spec: {} };
    assert.equal(evaluate(policies(empty), input()).decision, "DENY");
    assert.equal(evaluate(policies(doc(undefined, { action: "ALLOW" })), input()).decision, "DENY");
    assert.equal(evaluate(policies(doc([], { action: "ALLOW" })), input()).decision, "DENY");
  });

  it("a DENY without rules denies nothing", () => {
    assert.equal(evaluate(policies(doc(undefined, { name: "d", action: "DENY" }), allowAll), input()).decision, "ALLOW");
  });

  it("first matching ALLOW rule in file order decides, with its limits", () => {
    const first = doc([{ to: [{ operation: { methods: ["GET"] } }] }, { limits: { maxTokens: 10 } }], {
      name: "first",
      apiVersion: EDGEWARD,
    });
    const second = doc([{ limits: { maxTokens: 99, requestsPerMinute: 5 } }], { name: "second", apiVersion: EDGEWARD });
    const d = evaluate(policies(first, second), input());
    assert.deepEqual([d.policy, d.rule, d.limits], ["default/first", 1, { maxTokens: 10 }]);
    const d2 = evaluate(policies(second, first), input());
    assert.deepEqual([d2.policy, d2.rule, d2.limits], ["default/second", 0, { maxTokens: 99, requestsPerMinute: 5 }]);
  });

  it("limits are not shared: mutating a decision does not change the policy", () => {
    const set = policies(doc([{ limits: { maxTokens: 7 } }], { apiVersion: EDGEWARD }));
    evaluate(set, input()).limits.maxTokens = 1000;
    assert.deepEqual(evaluate(set, input()).limits, { maxTokens: 7 });
  });

  it("AUDIT marks the decision and neither allows nor denies", () => {
    const audit = doc([{ to: [{ operation: { paths: ["/v1/chat/*"] } }] }], { name: "a", action: "AUDIT" });
    const onlyAudit = evaluate(policies(audit), input());
    assert.deepEqual([onlyAudit.decision, onlyAudit.audit], ["DENY", true]);
    const withAllow = evaluate(policies(audit, allowAll), input());
    assert.deepEqual([withAllow.decision, withAllow.policy, withAllow.audit], ["ALLOW", "edge/allow-all", true]);
    assert.equal(evaluate(policies(audit, allowAll), input({ request: { path: "/v1/models" } })).audit, false);
  });

  it("CUSTOM fails closed when it matches, before DENY and ALLOW", () => {
    const custom = doc([{ to: [{ operation: { paths: ["/v1/*"] } }] }], { name: "ext", action: "CUSTOM", provider: "opa-ext" });
    const deny = doc([{}], { name: "d", action: "DENY" });
    assert.deepEqual(evaluate(policies(allowAll, deny, custom), input()), {
      decision: "DENY",
      policy: "default/ext",
      rule: 0,
      reason: "CUSTOM authorization provider opa-ext is not available",
      limits: {},
      audit: false,
    });
    assert.equal(evaluate(policies(custom, allowAll), input({ request: { path: "/healthz" } })).decision, "ALLOW");
  });

  it("a policy whose selector does not match the workload is ignored", () => {
    const deny = doc([{}], { name: "d", action: "DENY", selector: { app: "gateway", tier: "edge" } });
    const labels = { app: "gateway", tier: "edge", extra: "x" };
    assert.equal(evaluate(policies(deny, allowAll), input(), { workload: { labels } }).decision, "DENY");
    assert.equal(evaluate(policies(deny, allowAll), input(), { workload: { labels: { app: "gateway" } } }).decision, "ALLOW");
    assert.equal(evaluate(policies(deny, allowAll), input()).decision, "ALLOW");
    const scopedAllow = doc([{}], { name: "a", selector: { app: "other" } });
    assert.equal(evaluate(policies(scopedAllow), input(), { workload: { labels } }).decision, "DENY");
    const emptySelector = doc([{}], { name: "a", selector: {} });
    assert.equal(evaluate(policies(emptySelector), input()).decision, "ALLOW");
  });

  it("namespace defaults to default in the policy id", () => {
    assert.equal(evaluate(policies(doc([{}], { name: "x" })), input()).policy, "default/x");
  });

  it("v1beta1 documents are accepted", () => {
    const d = doc([{ from: [{ source: { principals: ["td.example/ns/app/sa/web"] } }] }], { apiVersion: "security.istio.io/v1beta1" });
    assert.equal(evaluate(policies(d), input()).decision, "ALLOW");
  });

  it("header names in the input are looked up exactly (lowercase) and never through the prototype", () => {
    const d = doc([{ when: [{ key: "request.headers[constructor]", values: ["*"] }] }]);
    assert.equal(evaluate(policies(d), input()).decision, "DENY");
  });
});

describe("DENY policies fire where Istio's do", () => {
  const allowAll = doc([{}], { name: "allow-all", namespace: "edge" });
  const deny = (rule: Record<string, unknown>) => doc([rule], { name: "guard", namespace: "edge", action: "DENY" });

  it("Istio: a DENY on request.headers[x-debug] with * fires for x-debug sent empty (present_match)", () => {
    const set = policies(allowAll, deny(when({ key: "request.headers[x-debug]", values: ["*"] })));
    assert.equal(evaluate(set, input({ request: { headers: { "x-debug": "" } } })).policy, "edge/guard");
    assert.equal(evaluate(set, input()).policy, "edge/allow-all");
  });

  it("Istio: a notHosts DENY fires for Host name:port (hosts are exact strings; name:* covers the ports)", () => {
    const set = policies(allowAll, deny(op({ notHosts: ["gw.example.org"] })));
    assert.equal(evaluate(set, input({ request: { host: "gw.example.org:8443" } })).policy, "edge/guard");
    assert.equal(evaluate(set, input({ request: { host: "GW.EXAMPLE.ORG" } })).policy, "edge/allow-all");
    const withPorts = policies(allowAll, deny(op({ notHosts: ["gw.example.org", "gw.example.org:*"] })));
    assert.equal(evaluate(withPorts, input({ request: { host: "gw.example.org:8443" } })).policy, "edge/allow-all");
    assert.equal(evaluate(withPorts, input({ request: { host: "evil.example:8443" } })).policy, "edge/guard");
  });

  it("Envoy: a DENY on /admin/{**} fires for /admin/ and a DENY on /store/{**}/cart for /store//cart", () => {
    const set = policies(allowAll, deny(op({ paths: ["/admin/{**}", "/store/{**}/cart"] })));
    assert.equal(evaluate(set, input({ request: { path: "/admin/" } })).policy, "edge/guard");
    assert.equal(evaluate(set, input({ request: { path: "/store//cart" } })).policy, "edge/guard");
    assert.equal(evaluate(set, input({ request: { path: "/admin" } })).policy, "edge/allow-all");
  });

  it("Istio: a DENY on namespaces fires for /ns/<ns>/ anywhere in the principal", () => {
    const set = policies(allowAll, deny(src({ namespaces: ["quarantine"] })));
    assert.equal(evaluate(set, input({ source: { principal: "spiffe://td.example/cluster/c1/ns/app/ns/quarantine/sa/web" } })).policy, "edge/guard");
  });
});

describe("selector labels are plain data", () => {
  it("labels named like Object.prototype members match only when set", () => {
    const text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: s}\nspec:\n  selector:\n    matchLabels: {constructor: x, __proto__: y}\n  rules: [{}]\n";
    const set = parsePolicies(text, "s.yaml");
    assert.equal(evaluate(set, input()).decision, "DENY");
    assert.equal(evaluate(set, input(), { workload: { labels: { constructor: "x" } } }).decision, "DENY");
    const labels = JSON.parse('{"constructor": "x", "__proto__": "y"}') as Record<string, string>;
    assert.equal(evaluate(set, input(), { workload: { labels } }).decision, "ALLOW");
  });
});

describe("couldAllow: what can be decided before the body is read", () => {
  const bare = (o: InputOverrides = {}) => {
    const i = input(o);
    return { ...i, request: { ...i.request, model: undefined, maxTokens: undefined, stream: undefined, promptTokens: undefined } };
  };
  const web = "spiffe://td.example/ns/app/sa/web";

  it("the body's model and CEL conditions may still match; the principal, method, path and headers are known", () => {
    const set = policies(
      doc([{ from: [{ source: { principals: [web] } }], to: [{ operation: { methods: ["POST"], paths: ["/v1/chat/completions"], models: ["tiny"] } }] }], { name: "by-model", apiVersion: EDGEWARD }),
      doc([{ from: [{ source: { principals: ["td.example/ns/ops/sa/cel"] } }], when: [{ cel: "request.max_tokens <= 8" }] }], { name: "by-cel", apiVersion: EDGEWARD }),
    );
    assert.equal(couldAllow(set, bare()), true);
    assert.equal(couldAllow(set, bare({ source: { principal: "spiffe://td.example/ns/ops/sa/cel" } })), true);
    // Nothing about a body can help a caller no rule names, or a path no rule covers.
    assert.equal(couldAllow(set, bare({ source: { principal: "spiffe://td.example/ns/app/sa/stranger" } })), false);
    assert.equal(couldAllow(set, bare({ request: { path: "/v1/embeddings" } })), false);
    assert.equal(couldAllow(set, bare({ request: { method: "GET" } })), false);
  });

  it("in the restricted stage only essential rules count", () => {
    const set = policies(doc([{ from: [{ source: { principals: [web] } }] }], { name: "plain", apiVersion: EDGEWARD }));
    assert.equal(couldAllow(set, bare()), true);
    assert.equal(couldAllow(set, bare(), { essentialOnly: true }), false);
  });
});
