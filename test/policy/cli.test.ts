import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { run } from "../../src/cli/policy.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const dir = mkdtempSync(join(tmpdir(), "edgeward-policy-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function cli(argv: string[], cwd = ROOT): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await run(argv, { stdout: (s) => (out += s), stderr: (s) => (err += s), cwd });
  return { code, out, err };
}

const KIOSK = "spiffe://example.org/ns/kiosk/sa/assistant";

describe("policy check", () => {
  it("accepts the example policy", async () => {
    assert.deepEqual(await cli(["check", "examples/policy.yaml"]), { code: 0, out: "ok: 4 policies in examples/policy.yaml\n", err: "" });
  });

  it("reports file:line for a broken file, and checks the others", async () => {
    writeFileSync(join(dir, "bad.yaml"), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  rules:\n  - from:\n    - source:\n        ipBlocks: [300.1.1.1]\n");
    writeFileSync(join(dir, "good.yaml"), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: y}\nspec: {}\n");
    assert.deepEqual(await cli(["check", "bad.yaml", "good.yaml"], dir), {
      code: 1,
      out: "ok: 1 policy in good.yaml\n",
      err: 'bad.yaml:8: spec.rules[0].from[0].source.ipBlocks[0]: "300.1.1.1" is not an IP address or CIDR\n',
    });
  });

  it("Istio: lists the policies that can never apply to a gateway in --namespace with --label", async () => {
    writeFileSync(
      join(dir, "scoped.yaml"),
      [
        "apiVersion: security.istio.io/v1", "kind: AuthorizationPolicy", "metadata: {name: here, namespace: edge}", "spec: {rules: [{}]}",
        "---",
        "apiVersion: security.istio.io/v1", "kind: AuthorizationPolicy", "metadata: {name: there, namespace: shop}", "spec: {rules: [{}]}",
        "---",
        "apiVersion: security.istio.io/v1", "kind: AuthorizationPolicy", "metadata: {name: other-app, namespace: edge}",
        "spec: {selector: {matchLabels: {app: billing}}, rules: [{}]}",
        "",
      ].join("\n"),
    );
    assert.deepEqual(await cli(["check", "scoped.yaml"], dir), { code: 0, out: "ok: 3 policies in scoped.yaml\n", err: "" });
    assert.deepEqual(await cli(["check", "scoped.yaml", "--namespace", "edge"], dir), {
      code: 0,
      out: "ok: 3 policies in scoped.yaml\nwarning: scoped.yaml:6: policy shop/there never applies to this gateway: its namespace shop is neither the gateway's (edge) nor the root namespace (istio-system)\n",
      err: "",
    });
    const labelled = await cli(["check", "scoped.yaml", "--namespace", "edge", "--label", "app=gw"], dir);
    assert.match(labelled.out, /\nwarning: scoped\.yaml:11: policy edge\/other-app never applies to this gateway: its selector \{app: billing\} does not match the gateway's labels \{app: gw\}\n$/);
  });

  it("a missing file is an error, no stack trace", async () => {
    assert.deepEqual(await cli(["check", "nope.yaml"], dir), { code: 1, out: "", err: "nope.yaml:0: cannot read policy file: ENOENT\n" });
  });

  it("no files is a usage error", async () => {
    const r = await cli(["check"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /^policy: at least one policy FILE is required\nusage:/);
  });
});

describe("policy explain", () => {
  it("prints the exact JSON decision", async () => {
    const r = await cli(["explain", "examples/policy.yaml", "--principal", KIOSK, "--method", "POST", "--path", "/v1/chat/completions", "--model", "tiny", "--output", "json"]);
    assert.equal(r.code, 0);
    assert.equal(
      r.out,
      '{"decision":"ALLOW","policy":"edge/kiosk-assistant","rule":0,"reason":"allowed by ALLOW policy edge/kiosk-assistant rule 0","limits":{"maxTokens":256,"requestsPerMinute":60,"tokensPerMinute":20000}}\n',
    );
  });

  it("a denied request still exits 0", async () => {
    const r = await cli(["explain", "examples/policy.yaml", "--principal", "spiffe://example.org/ns/kiosk/sa/intruder", "--method", "POST", "--path", "/v1/chat/completions", "--model", "tiny", "--output", "json"]);
    assert.deepEqual(r, {
      code: 0,
      out: '{"decision":"DENY","policy":null,"rule":null,"reason":"no ALLOW policy matched (default deny)","limits":{}}\n',
      err: "",
    });
  });

  it("reads headers, the body and the Istio principal form", async () => {
    const r = await cli([
      "explain", "examples/policy.yaml", "--principal", "example.org/ns/kiosk/sa/assistant", "--method", "POST", "--path", "/v1/embeddings",
      "--header", "X-Debug=true", "--body", '{"model":"tiny","input":"x"}', "--output", "json",
    ]);
    assert.equal(JSON.parse(r.out).policy, "edge/deny-debug-header");
  });

  it("prints a human explanation", async () => {
    const r = await cli(["explain", "examples/policy.yaml", "--principal", KIOSK, "--method", "POST", "--path", "/v1/embeddings", "--body", '{"model":"tiny","input":"x"}']);
    assert.deepEqual(r, {
      code: 0,
      out: [
        "decision: ALLOW",
        "policy:   edge/kiosk-assistant",
        "rule:     0",
        "reason:   allowed by ALLOW policy edge/kiosk-assistant rule 0",
        "limits:   maxTokens=256 requestsPerMinute=60 tokensPerMinute=20000",
        "audit:    yes",
        "",
      ].join("\n"),
      err: "",
    });
  });

  it("applies --label to selectors", async () => {
    writeFileSync(join(dir, "sel.yaml"), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: s}\nspec:\n  selector:\n    matchLabels: {app: gw}\n  rules: [{}]\n");
    const base = ["explain", "sel.yaml", "--method", "GET", "--path", "/", "--output", "json"];
    assert.equal(JSON.parse((await cli([...base, "--label", "app=gw"], dir)).out).decision, "ALLOW");
    assert.equal(JSON.parse((await cli(base, dir)).out).decision, "DENY");
  });

  it("Istio: --namespace decides for a gateway in that namespace; policies of another one do not apply", async () => {
    const base = ["explain", "examples/policy.yaml", "--principal", KIOSK, "--method", "GET", "--path", "/v1/models", "--output", "json"];
    assert.equal(JSON.parse((await cli([...base, "--namespace", "edge"])).out).policy, "edge/kiosk-assistant");
    assert.deepEqual(JSON.parse((await cli([...base, "--namespace", "shop"])).out).policy, null);
    assert.equal(JSON.parse((await cli([...base, "--namespace", "shop", "--mesh-root-namespace", "edge"])).out).policy, "edge/kiosk-assistant");
  });

  it("Istio: host, port, source and destination addresses and SNI can be stated", async () => {
    writeFileSync(
      join(dir, "conn.yaml"),
      [
        "apiVersion: security.istio.io/v1",
        "kind: AuthorizationPolicy",
        "metadata: {name: conn, namespace: edge}",
        "spec:",
        "  rules:",
        "  - from: [{source: {ipBlocks: [10.0.0.0/8]}}]",
        "    to: [{operation: {hosts: [\"gw.example.org:*\"], ports: [\"8443\"]}}]",
        "    when:",
        "    - {key: connection.sni, values: [gw.example.org]}",
        "    - {key: destination.ip, values: [192.0.2.0/24]}",
        "    - {key: remote.ip, values: [203.0.113.0/24]}",
        "",
      ].join("\n"),
    );
    const all = [
      "explain", "conn.yaml", "--method", "GET", "--path", "/", "--output", "json", "--host", "gw.example.org:8443", "--port", "8443",
      "--source-ip", "10.1.2.3", "--remote-ip", "203.0.113.9", "--destination-ip", "192.0.2.7", "--sni", "gw.example.org",
    ];
    assert.equal(JSON.parse((await cli(all, dir)).out).decision, "ALLOW");
    for (const [flag, other] of [["--host", "gw.example.org"], ["--port", "443"], ["--source-ip", "192.168.1.1"], ["--destination-ip", "198.51.100.1"], ["--sni", "x"]]) {
      const argv = [...all];
      argv[argv.indexOf(flag as string) + 1] = other as string;
      assert.equal(JSON.parse((await cli(argv, dir)).out).decision, "DENY", flag);
    }
  });

  it("Istio: the path is normalized as the mesh does before the policy decides (BASE by default)", async () => {
    const base = ["explain", "examples/policy.yaml", "--principal", KIOSK, "--method", "GET", "--output", "json"];
    assert.equal(JSON.parse((await cli([...base, "--path", "/v1/chat/%2e%2e/models"])).out).decision, "ALLOW");
    assert.equal(JSON.parse((await cli([...base, "--path", "/v1/chat/%2e%2e/models", "--path-normalization", "NONE"])).out).decision, "DENY");
    assert.equal(JSON.parse((await cli([...base, "--path", "/v1//models"])).out).decision, "DENY");
    assert.equal(JSON.parse((await cli([...base, "--path", "/v1//models", "--path-normalization", "MERGE_SLASHES"])).out).decision, "ALLOW");
    const refused = JSON.parse((await cli([...base, "--path", "/v1/models%00"])).out);
    assert.deepEqual([refused.decision, refused.policy], ["DENY", null]);
    assert.match(refused.reason, /^the mesh refuses the path before any policy/);
  });

  it("usage errors exit 2", async () => {
    for (const argv of [
      ["explain", "examples/policy.yaml", "--method", "GET", "--path", "/", "--port", "70000"],
      ["explain", "examples/policy.yaml", "--method", "GET", "--path", "/", "--source-ip", "10.0.0.0/8"],
      ["explain", "examples/policy.yaml", "--method", "GET", "--path", "/", "--path-normalization", "SOME"],
      ["explain", "examples/policy.yaml", "--path", "/"],
      ["explain", "examples/policy.yaml", "--method", "GET", "--path", "/", "--header", "novalue"],
      ["explain", "examples/policy.yaml", "--method", "GET", "--path", "/", "--body", "{not json"],
      ["explain", "examples/policy.yaml", "--method", "GET", "--path", "/", "--output", "xml"],
      ["explain", "examples/policy.yaml", "--method", "GET", "--path", "/", "--bogus"],
      ["frobnicate"],
      [],
    ]) {
      const r = await cli(argv);
      assert.equal(r.code, 2, argv.join(" "));
      assert.match(r.err, /^policy: .*\nusage:/);
      assert.equal(r.out, "");
    }
  });
});

describe("policy test", () => {
  it("the example cases pass against the example policy", async () => {
    const r = await cli(["test", "examples/policy.yaml", "--cases", "examples/policy-cases.yaml"]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^PASS kiosk assistant chats with tiny: ALLOW by edge\/kiosk-assistant rule 0\n/);
    assert.match(r.out, /\n15 passed, 0 failed\n$/);
    assert.doesNotMatch(r.out, /FAIL/);
  });

  it("a mismatch prints got/want and exits 1", async () => {
    writeFileSync(
      join(dir, "cases.yaml"),
      [
        "cases:",
        "  - name: right",
        `    principal: ${KIOSK}`,
        "    method: GET",
        "    path: /v1/models",
        "    expect: ALLOW",
        "  - name: wrong",
        "    principal: spiffe://example.org/ns/kiosk/sa/intruder",
        "    method: GET",
        "    path: /v1/models",
        "    expect: {decision: ALLOW, policy: edge/kiosk-assistant, rule: 0}",
        "",
      ].join("\n"),
    );
    const r = await cli(["test", join(ROOT, "examples/policy.yaml"), "--cases", "cases.yaml"], dir);
    assert.deepEqual(r, {
      code: 1,
      out: [
        "PASS right: ALLOW by edge/kiosk-assistant rule 0",
        "FAIL wrong (cases.yaml:7): got DENY (no policy matched), want ALLOW by edge/kiosk-assistant rule 0",
        "     reason: no ALLOW policy matched (default deny)",
        "1 passed, 1 failed",
        "",
      ].join("\n"),
      err: "",
    });
  });

  it("a bad cases file is an error with file:line", async () => {
    writeFileSync(join(dir, "bad-cases.yaml"), "cases:\n  - name: x\n    method: GET\n    path: /\n    expect: MAYBE\n");
    assert.deepEqual(await cli(["test", join(ROOT, "examples/policy.yaml"), "--cases", "bad-cases.yaml"], dir), {
      code: 1,
      out: "",
      err: "bad-cases.yaml:5: cases[0].expect must be ALLOW, DENY or {decision, policy?, rule?}\n",
    });
    writeFileSync(join(dir, "bad-cases2.yaml"), "cases:\n  - name: x\n    method: GET\n    pth: /\n    expect: DENY\n");
    assert.equal((await cli(["test", join(ROOT, "examples/policy.yaml"), "--cases", "bad-cases2.yaml"], dir)).err,
      'bad-cases2.yaml:4: unknown field "pth" in cases[0] (allowed: name, principal, method, path, model, headers, body, host, port, sourceIp, remoteIp, destinationIp, sni, namespace, labels, expect)\n');
    writeFileSync(join(dir, "empty-cases.yaml"), "cases: []\n");
    assert.equal((await cli(["test", join(ROOT, "examples/policy.yaml"), "--cases", "empty-cases.yaml"], dir)).code, 1);
  });

  it("Istio: cases state the gateway's namespace and the connection; --path-normalization applies to every case", async () => {
    writeFileSync(
      join(dir, "ns-cases.yaml"),
      [
        "cases:",
        "  - name: in the policies' namespace",
        `    principal: ${KIOSK}`,
        "    method: GET",
        "    path: /v1/models",
        "    namespace: edge",
        "    host: gw.example.org:8443",
        "    port: 8443",
        "    sourceIp: 10.1.2.3",
        "    sni: gw.example.org",
        "    expect: {decision: ALLOW, policy: edge/kiosk-assistant}",
        "  - name: in another namespace",
        `    principal: ${KIOSK}`,
        "    method: GET",
        "    path: /v1/models",
        "    namespace: shop",
        "    expect: {decision: DENY, policy: null}",
        "  - name: a merged slash",
        `    principal: ${KIOSK}`,
        "    method: GET",
        "    path: /v1//models",
        "    expect: ALLOW",
        "",
      ].join("\n"),
    );
    const r = await cli(["test", join(ROOT, "examples/policy.yaml"), "--cases", "ns-cases.yaml", "--path-normalization", "MERGE_SLASHES"], dir);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /3 passed, 0 failed\n$/);
    const rooted = await cli(["test", join(ROOT, "examples/policy.yaml"), "--cases", "ns-cases.yaml", "--path-normalization", "MERGE_SLASHES", "--mesh-root-namespace", "edge"], dir);
    assert.match(rooted.out, /FAIL in another namespace/);
    writeFileSync(join(dir, "bad-ip.yaml"), "cases:\n  - name: x\n    method: GET\n    path: /\n    sourceIp: 10.0.0.0/8\n    expect: DENY\n");
    assert.equal((await cli(["test", join(ROOT, "examples/policy.yaml"), "--cases", "bad-ip.yaml"], dir)).err, 'bad-ip.yaml:5: cases[0].sourceIp: "10.0.0.0/8" is not an IP address\n');
  });

  it("--cases is required", async () => {
    assert.equal((await cli(["test", "examples/policy.yaml"])).code, 2);
  });
});
