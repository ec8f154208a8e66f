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

  it("usage errors exit 2", async () => {
    for (const argv of [
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
    assert.match(r.out, /\n12 passed, 0 failed\n$/);
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
      'bad-cases2.yaml:4: unknown field "pth" in cases[0] (allowed: name, principal, method, path, model, headers, body, labels, expect)\n');
    writeFileSync(join(dir, "empty-cases.yaml"), "cases: []\n");
    assert.equal((await cli(["test", join(ROOT, "examples/policy.yaml"), "--cases", "empty-cases.yaml"], dir)).code, 1);
  });

  it("--cases is required", async () => {
    assert.equal((await cli(["test", "examples/policy.yaml"])).code, 2);
  });
});
