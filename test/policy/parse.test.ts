import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { evaluate, loadPolicyFiles, parsePolicies, PolicyError } from "../../src/policy/index.ts";
import { doc, EDGEWARD, input, yamlOf } from "./fixtures.ts";

const HEAD_ISTIO = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\nspec:\n";
const HEAD_EDGE = `apiVersion: ${EDGEWARD}\nkind: AuthorizationPolicy\nmetadata:\n  name: p\nspec:\n`;

function refused(text: string, check: string, message: string): void {
  assert.throws(
    () => parsePolicies(text, "policy.yaml"),
    (err: unknown) => {
      assert.ok(err instanceof PolicyError, String(err));
      assert.equal(err.message, message);
      assert.equal(err.check, check);
      assert.equal(err.file, "policy.yaml");
      assert.equal(err.line, Number(message.split(":")[1]));
      return true;
    },
  );
}

describe("invalid policy files are refused with file:line", () => {
  it("malformed YAML", () => {
    refused("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n- oops\n", "yaml", "policy.yaml:3: invalid YAML: Implicit keys need to be on a single line");
  });

  it("duplicate keys", () => {
    refused(`${HEAD_ISTIO}  action: ALLOW\n  action: DENY\n`, "yaml", "policy.yaml:7: invalid YAML: Map keys must be unique");
  });

  it("unknown apiVersion", () => {
    refused("apiVersion: security.istio.io/v2\nkind: AuthorizationPolicy\n", "api-version", 'policy.yaml:1: unknown apiVersion "security.istio.io/v2" (want security.istio.io/v1, security.istio.io/v1beta1, edgeward.dev/v1alpha1)');
  });

  it("missing apiVersion", () => {
    refused("kind: AuthorizationPolicy\n", "api-version", "policy.yaml:1: apiVersion is required");
  });

  it("unknown kind", () => {
    refused("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x}\n", "kind", 'policy.yaml:2: unknown kind "PeerAuthentication" (want AuthorizationPolicy)');
  });

  it("missing metadata.name", () => {
    refused("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  namespace: x\n", "metadata", "policy.yaml:3: metadata.name is required");
  });

  it("unknown field at the top, in spec, in a source", () => {
    refused(`${HEAD_ISTIO}  rules: []\nspecs: {}\n`, "unknown-field", 'policy.yaml:7: unknown field "specs" in document (allowed: apiVersion, kind, metadata, spec, status)');
    refused(`${HEAD_ISTIO}  actions: ALLOW\n`, "unknown-field", 'policy.yaml:6: unknown field "actions" in spec (allowed: selector, targetRef, targetRefs, action, provider, rules)');
    refused(
      `${HEAD_ISTIO}  rules:\n  - from:\n    - source:\n        principal: [a]\n`,
      "unknown-field",
      'policy.yaml:9: unknown field "principal" in spec.rules[0].from[0].source (allowed: principals, notPrincipals, requestPrincipals, notRequestPrincipals, namespaces, notNamespaces, serviceAccounts, notServiceAccounts, trustDomains, notTrustDomains, ipBlocks, notIpBlocks, remoteIpBlocks, notRemoteIpBlocks)',
    );
  });

  it("edgeward extensions in an Istio document", () => {
    refused(`${HEAD_ISTIO}  rules:\n  - to:\n    - operation:\n        models: [tiny]\n`, "extension", 'policy.yaml:9: field "models" in spec.rules[0].to[0].operation is an edgeward.dev/v1alpha1 extension; apiVersion security.istio.io/v1 does not allow it');
    refused(`${HEAD_ISTIO}  rules:\n  - limits: {maxTokens: 5}\n`, "extension", 'policy.yaml:7: field "limits" in spec.rules[0] is an edgeward.dev/v1alpha1 extension; apiVersion security.istio.io/v1 does not allow it');
    refused(`${HEAD_ISTIO}  rules:\n  - when:\n    - cel: "true"\n`, "extension", 'policy.yaml:8: field "cel" in spec.rules[0].when[0] is an edgeward.dev/v1alpha1 extension; apiVersion security.istio.io/v1 does not allow it');
  });

  it("wrong types", () => {
    refused(`${HEAD_ISTIO}  rules:\n  - to:\n    - operation:\n        paths: /v1/models\n`, "type", "policy.yaml:9: spec.rules[0].to[0].operation.paths must be a list of strings");
    refused(`${HEAD_ISTIO}  rules:\n  - to:\n    - operation:\n        methods: [GET, 42]\n`, "type", 'policy.yaml:9: spec.rules[0].to[0].operation.methods[1] must be a string (quote it: "42")');
    refused(`${HEAD_ISTIO}  rules: {}\n`, "type", "policy.yaml:6: spec.rules must be a list");
    refused(`${HEAD_ISTIO}  action: allow\n`, "action", 'policy.yaml:6: unknown spec.action "allow" (want ALLOW, DENY, AUDIT, CUSTOM)');
  });

  it("empty lists and empty sources", () => {
    refused(`${HEAD_ISTIO}  rules:\n  - from:\n    - source:\n        principals: []\n`, "empty-list", "policy.yaml:9: spec.rules[0].from[0].source.principals must not be an empty list (leave the field out instead)");
    refused(`${HEAD_ISTIO}  rules:\n  - when:\n    - key: source.ip\n      values: []\n`, "empty-list", "policy.yaml:9: spec.rules[0].when[0].values must not be an empty list (leave the field out instead)");
    refused(`${HEAD_ISTIO}  rules:\n  - from:\n    - source: {}\n`, "empty-value", "policy.yaml:8: spec.rules[0].from[0].source must set at least one field");
    refused(`${HEAD_ISTIO}  rules:\n  - to: []\n`, "empty-list", "policy.yaml:7: spec.rules[0].to must not be an empty list (leave the field out instead)");
    refused(`${HEAD_ISTIO}  rules:\n  - when:\n    - key: source.ip\n`, "required", "policy.yaml:8: spec.rules[0].when[0] needs values or notValues");
  });

  it("bad CIDR and bad ports", () => {
    refused(`${HEAD_ISTIO}  rules:\n  - from:\n    - source:\n        ipBlocks:\n        - 10.0.0.0/8\n        - 10.0.0.300\n`, "cidr", 'policy.yaml:11: spec.rules[0].from[0].source.ipBlocks[1]: "10.0.0.300" is not an IP address or CIDR');
    refused(`${HEAD_ISTIO}  rules:\n  - from:\n    - source:\n        notRemoteIpBlocks: ["fd00::/129"]\n`, "cidr", 'policy.yaml:9: spec.rules[0].from[0].source.notRemoteIpBlocks[0]: "fd00::/129" has an invalid prefix length (0-128)');
    refused(`${HEAD_ISTIO}  rules:\n  - when:\n    - key: remote.ip\n      values: ["10.0.0.0/x"]\n`, "cidr", 'policy.yaml:9: spec.rules[0].when[0].values[0]: "10.0.0.0/x" has an invalid prefix length (0-32)');
    refused(`${HEAD_ISTIO}  rules:\n  - to:\n    - operation:\n        ports: ["70000"]\n`, "port", 'policy.yaml:9: spec.rules[0].to[0].operation.ports[0]: "70000" is not a port number (1-65535)');
  });

  it("limits must be positive integers", () => {
    for (const bad of ["0", "-1", "1.5", '"10"', "1e400"]) {
      refused(`${HEAD_EDGE}  rules:\n  - limits:\n      maxTokens: ${bad}\n`, "limits", "policy.yaml:8: spec.rules[0].limits.maxTokens must be a positive integer");
    }
    refused(`${HEAD_EDGE}  rules:\n  - limits: {}\n`, "limits", "policy.yaml:7: spec.rules[0].limits must set at least one of maxTokens, maxChoices, requestsPerMinute, tokensPerMinute");
    refused(`${HEAD_EDGE}  rules:\n  - limits: {burst: 3}\n`, "unknown-field", 'policy.yaml:7: unknown field "burst" in spec.rules[0].limits (allowed: maxTokens, maxChoices, requestsPerMinute, tokensPerMinute)');
  });

  it("unknown when keys and misuse of cel", () => {
    refused(`${HEAD_ISTIO}  rules:\n  - when:\n    - key: source.user\n      values: ["x"]\n`, "condition-key", 'policy.yaml:8: spec.rules[0].when[0].key: unknown key "source.user" (known: request.headers[<name>], source.ip, remote.ip, destination.ip, source.namespace, source.serviceAccount, source.trustDomain, source.principal, connection.sni, destination.port, request.auth.*)');
    refused(`${HEAD_ISTIO}  rules:\n  - when:\n    - key: constructor\n      values: ["x"]\n`, "condition-key", 'policy.yaml:8: spec.rules[0].when[0].key: unknown key "constructor" (known: request.headers[<name>], source.ip, remote.ip, destination.ip, source.namespace, source.serviceAccount, source.trustDomain, source.principal, connection.sni, destination.port, request.auth.*)');
    refused(`${HEAD_EDGE}  rules:\n  - when:\n    - cel: "true"\n      key: source.ip\n`, "cel", 'policy.yaml:9: spec.rules[0].when[0]: "cel" cannot be combined with "key"');
  });

  it("Istio: serviceAccounts cannot be combined with principals or namespaces in one source", () => {
    refused(
      `${HEAD_ISTIO}  rules:\n  - from:\n    - source:\n        namespaces: [app]\n        serviceAccounts: [app/web]\n`,
      "service-accounts",
      "policy.yaml:10: spec.rules[0].from[0].source: serviceAccounts cannot be combined with namespaces (as in Istio)",
    );
  });

  it("Istio: serviceAccounts are <namespace>/<name> or <name>, without wildcards, at most 16", () => {
    const accounts = (v: string) => `${HEAD_ISTIO}  rules:\n  - from:\n    - source:\n        serviceAccounts: ${v}\n`;
    refused(accounts(`["app/*"]`), "service-accounts", 'policy.yaml:9: spec.rules[0].from[0].source.serviceAccounts[0]: "app/*": no wildcard is allowed in a service account');
    refused(accounts(`["a/b/c"]`), "service-accounts", 'policy.yaml:9: spec.rules[0].from[0].source.serviceAccounts[0]: "a/b/c" is not <namespace>/<serviceaccount> or <serviceaccount>');
    refused(accounts(`["/web"]`), "service-accounts", 'policy.yaml:9: spec.rules[0].from[0].source.serviceAccounts[0]: "/web" is not <namespace>/<serviceaccount> or <serviceaccount>');
    refused(accounts(JSON.stringify(Array.from({ length: 17 }, (_, i) => `sa${i}`))), "service-accounts", "policy.yaml:9: spec.rules[0].from[0].source.serviceAccounts: at most 16 service accounts (as in Istio)");
  });

  it("Istio: trustDomains have no / and one * at most, at the start or the end", () => {
    const domains = (v: string) => `${HEAD_ISTIO}  rules:\n  - from:\n    - source:\n        notTrustDomains: ${v}\n`;
    refused(domains(`["td/x"]`), "trust-domains", 'policy.yaml:9: spec.rules[0].from[0].source.notTrustDomains[0]: "td/x": a trust domain has no "/"');
    refused(domains(`["a*b"]`), "trust-domains", 'policy.yaml:9: spec.rules[0].from[0].source.notTrustDomains[0]: "a*b": one "*" at most, at the start or the end');
  });

  it("Istio: keys Istio refuses are refused with its reason", () => {
    const key = (k: string) => `${HEAD_ISTIO}  rules:\n  - when:\n    - key: ${k}\n      values: ["x"]\n`;
    refused(key("experimental.envoy.filters.http.jwt_authn[issuer]"), "condition-key", 'policy.yaml:8: spec.rules[0].when[0].key: "experimental.envoy.filters.http.jwt_authn[issuer]" reads Envoy filter metadata, which the gateway does not have');
    refused(key("destination.namespace"), "condition-key", 'policy.yaml:8: spec.rules[0].when[0].key: "destination.namespace" is replaced by metadata.namespace (as in Istio)');
    refused(key("destination.labels[app]"), "condition-key", 'policy.yaml:8: spec.rules[0].when[0].key: "destination.labels[app]" is replaced by spec.selector (as in Istio)');
  });

  it("CUSTOM needs a provider, and only CUSTOM may have one", () => {
    refused(`${HEAD_ISTIO}  action: CUSTOM\n  rules: [{}]\n`, "provider", "policy.yaml:6: action CUSTOM requires spec.provider.name");
    refused(`${HEAD_ISTIO}  action: DENY\n  provider: {name: ext}\n`, "provider", "policy.yaml:7: spec.provider is only allowed with action CUSTOM");
  });

  it("targetRef is not supported", () => {
    refused(`${HEAD_ISTIO}  targetRef: {kind: Gateway, name: gw}\n`, "unsupported", "policy.yaml:6: spec.targetRef is not supported by the gateway; use spec.selector.matchLabels");
  });

  it("bad path templates", () => {
    refused(`${HEAD_ISTIO}  rules:\n  - to:\n    - operation:\n        paths: ["/v1/{**}/x/{*}"]\n`, "path-template", 'policy.yaml:9: spec.rules[0].to[0].operation.paths[0]: "{**}" must be the last operator in a path template');
    refused(`${HEAD_ISTIO}  rules:\n  - to:\n    - operation:\n        paths: ["/v1/a{*}"]\n`, "path-template", "policy.yaml:9: spec.rules[0].to[0].operation.paths[0]: path template segment \"a{*}\" must be \"{*}\", \"{**}\" or literal text (letters, digits, and -._~%!$&'()+,;:@=)");
  });

  it("Istio: a path template's literal segments are pchar, never empty but for a trailing slash", () => {
    const template = (p: string) => `${HEAD_ISTIO}  rules:\n  - to:\n    - operation:\n        paths: ["${p}"]\n`;
    refused(template("/v1/*/{*}"), "path-template", "policy.yaml:9: spec.rules[0].to[0].operation.paths[0]: path template segment \"*\" must be \"{*}\", \"{**}\" or literal text (letters, digits, and -._~%!$&'()+,;:@=)");
    refused(template("/v1/a b/{*}"), "path-template", "policy.yaml:9: spec.rules[0].to[0].operation.paths[0]: path template segment \"a b\" must be \"{*}\", \"{**}\" or literal text (letters, digits, and -._~%!$&'()+,;:@=)");
    refused(template("/v1//{*}"), "path-template", 'policy.yaml:9: spec.rules[0].to[0].operation.paths[0]: a path template must not have an empty segment ("//")');
    for (const ok of ["/foo/{**}/", "/foo/{*}/bar/{**}", "/store/{**}/cart", "/a=b/{*}"]) parsePolicies(template(ok), "policy.yaml");
  });

  it("the same policy twice", () => {
    const d = yamlOf(doc([{}], { name: "a", namespace: "n" }), doc([{}], { name: "b" }), doc([{}], { name: "a", namespace: "n" }));
    assert.throws(() => parsePolicies(d, "policy.yaml"), { message: /^policy\.yaml:\d+: policy n\/a is already defined at line 1$/ });
  });

  it("a defect in the second document reports the line in the file", () => {
    const text = `${yamlOf(doc([{}], { name: "a" }))}---\n${HEAD_ISTIO}  rules:\n  - from:\n    - source:\n        ipBlocks: [nope]\n`;
    const line = text.split("\n").findIndex((l) => l.includes("nope")) + 1;
    assert.throws(() => parsePolicies(text, "policy.yaml"), { message: `policy.yaml:${line}: spec.rules[0].from[0].source.ipBlocks[0]: "nope" is not an IP address or CIDR` });
  });
});

/**
 * The fastest of `runs` timings of `fn`, in ms. Costs are compared as ratios of two sizes measured in the same run,
 * never against a wall-clock limit, and the fastest run is the one least disturbed by whatever else the machine does.
 */
function fastest(fn: () => void, runs = 2): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    fn();
    best = Math.min(best, performance.now() - started);
  }
  return best;
}

describe("hostile input", () => {
  it("an oversized file is refused before parsing", () => {
    const big = `# ${"x".repeat(4 * 1024 * 1024)}\n`;
    refused(big, "size", "policy.yaml:1: policy file is larger than 4194304 bytes");
  });

  it("deep nesting does not crash the process, and costs time linear in its depth", () => {
    const nested = (depth: number) => () => {
      assert.throws(() => parsePolicies(`a: ${"[".repeat(depth)}`, "policy.yaml"), { name: "PolicyError", message: /^policy\.yaml:1: / });
    };
    const shallow = fastest(nested(25_000));
    const ratio = fastest(nested(100_000)) / shallow;
    assert.ok(ratio < 12, `4 times as deep took ${ratio.toFixed(1)} times as long (linear: 4, quadratic: 16)`);
  });

  it("YAML alias bombs are refused, not expanded", () => {
    const bomb = [
      "apiVersion: security.istio.io/v1",
      "kind: AuthorizationPolicy",
      "metadata: {name: x}",
      "x0: &a0 [y, y, y, y, y, y, y, y, y, y]",
      ...Array.from({ length: 20 }, (_, i) => `x${i + 1}: &a${i + 1} [*a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}, *a${i}]`),
      "spec:",
      "  rules:",
      "  - from:",
      "    - source:",
      "        principals: *a20",
    ].join("\n");
    assert.throws(() => parsePolicies(bomb, "policy.yaml"), { name: "PolicyError" });
    const aliasOnly = `${HEAD_ISTIO}  rules:\n  - from:\n    - source:\n        principals: &p [a]\n  - from:\n    - source:\n        principals: *p\n`;
    refused(aliasOnly, "yaml-alias", "policy.yaml:12: spec.rules[1].from[0].source.principals: YAML aliases are not supported in policy files");
  });

  it("many large documents load and evaluate in time linear in their number", () => {
    const principals = Array.from({ length: 1000 }, (_, i) => `td/ns/n${i}/sa/s${i}`);
    const text = (count: number) => yamlOf(...Array.from({ length: count }, (_, i) => doc([{ from: [{ source: { principals } }] }], { name: `p${i}` })));
    const [few, many] = [text(5), text(20)];
    let small = parsePolicies("", "none.yaml");
    let large = small;
    const fewTime = fastest(() => (small = parsePolicies(few, "big.yaml")));
    const parsing = fastest(() => (large = parsePolicies(many, "big.yaml"))) / fewTime;
    assert.deepEqual([small.policies.length, large.policies.length], [5, 20]);
    assert.ok(parsing < 12, `4 times the documents took ${parsing.toFixed(1)} times as long to parse (linear: 4, quadratic: 16)`);
    const evaluations = (set: typeof large) => () => {
      for (let i = 0; i < 1000; i++) evaluate(set, input());
    };
    // Warmed up first: the first calls are compiled as they run, and would weigh on whichever set went first.
    evaluations(small)();
    evaluations(large)();
    const evaluating = fastest(evaluations(large), 3) / fastest(evaluations(small), 3);
    assert.ok(evaluating < 12, `4 times the documents took ${evaluating.toFixed(1)} times as long to evaluate (linear: 4, quadratic: 16)`);
  });

  it("an empty file and comment-only documents are zero policies", () => {
    assert.equal(parsePolicies("", "e.yaml").policies.length, 0);
    assert.equal(parsePolicies("# nothing\n---\n---\n", "e.yaml").policies.length, 0);
  });

  it("a scalar document is refused", () => {
    refused("just text\n", "type", "policy.yaml:1: a policy document must be a mapping");
  });
});

describe("loadPolicyFiles", () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-policy-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("concatenates files in order", async () => {
    const a = join(dir, "a.yaml");
    const b = join(dir, "b.yaml");
    writeFileSync(a, yamlOf(doc([{ to: [{ operation: { methods: ["GET"] } }] }], { name: "a" })));
    writeFileSync(b, yamlOf(doc([{}], { name: "b" }), doc([{}], { name: "c" })));
    const set = await loadPolicyFiles([a, b]);
    assert.deepEqual(set.sources, [a, b]);
    assert.deepEqual(set.policies.map((p) => p.id), ["default/a", "default/b", "default/c"]);
    assert.equal(evaluate(set, input()).policy, "default/b");
  });

  it("refuses the same policy in two files, naming both", async () => {
    const a = join(dir, "d1.yaml");
    const b = join(dir, "d2.yaml");
    writeFileSync(a, yamlOf(doc([{}], { name: "same" })));
    writeFileSync(b, `# header\n${yamlOf(doc([{}], { name: "same" }))}`);
    await assert.rejects(loadPolicyFiles([a, b]), { message: `${b}:2: policy default/same is already defined at ${a}:1` });
  });

  it("a missing file is a PolicyError", async () => {
    const missing = join(dir, "missing.yaml");
    await assert.rejects(loadPolicyFiles([missing]), { name: "PolicyError", check: "read", message: `${missing}:0: cannot read policy file: ENOENT` });
  });

  it("errors name the file", async () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, `${HEAD_ISTIO}  action: NOPE\n`);
    await assert.rejects(loadPolicyFiles([bad]), { message: `${bad}:6: unknown spec.action "NOPE" (want ALLOW, DENY, AUDIT, CUSTOM)` });
  });
});
