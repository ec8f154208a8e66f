import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client, credentials, Metadata } from "@grpc/grpc-js";
import { request } from "undici";
import { stringify } from "yaml";
import { parseConfig } from "../../src/config/index.ts";
import { CHAT, POLICY, authProtos, chat, id, xfcc } from "../support/authz-fixture.ts";
import { runCli, startCli } from "../support/processes.ts";

describe("edgeward authz (real process)", () => {
  let dir: string;
  const config = (patch: Record<string, unknown> = {}) => {
    const p = join(dir, `authz-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(p, stringify({
      // The ext_authz service reads only the policy, limits, decision log and admin address of a gateway config.
      listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "unused.pem", key: "unused.key" },
      trustBundles: { "example.org": "unused.pem" }, policy: POLICY,
      runners: [{ name: "unused", url: "http://127.0.0.1:9", models: ["mistral-7b-instruct"] }],
      decisionLog: join(dir, "decisions.log"), logLevel: "warn",
      authz: { grpc: "127.0.0.1:0", http: "127.0.0.1:0", pathPrefix: "/check" },
      ...patch,
    }));
    return p;
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-authz-cli-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("usage errors exit 2; --help prints the usage", async () => {
    assert.equal((await runCli(["authz"])).code, 2);
    assert.equal((await runCli(["authz", "--bogus"])).code, 2);
    const help = await runCli(["authz", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /usage: edgeward authz --config FILE/);
    assert.match((await runCli(["--help"])).stdout, /authz\s+Envoy ext_authz service/);
  });

  test("a config without an authz section is refused, naming the key", async () => {
    const r = await runCli(["authz", "--config", config({ authz: undefined })]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /config: authz: missing: set authz\.grpc and\/or authz\.http/);
  });

  test("the authz section: defaults, addresses parsed", () => {
    const base = {
      listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "c", key: "k" }, trustBundles: { td: "b" }, policy: "p.yaml",
      runners: [{ name: "r", url: "http://127.0.0.1:9", models: ["m"] }], decisionLog: "d.log",
    };
    assert.equal(parseConfig(base, "/x/e.yaml").authz, null);
    assert.deepEqual(parseConfig({ ...base, authz: { grpc: "[::1]:9191" } }, "/x/e.yaml").authz, {
      grpc: { host: "::1", port: 9191 }, http: null, pathPrefix: "", principalFrom: "source", maxBodyBytes: 8192,
    });
    assert.deepEqual(parseConfig({ ...base, authz: { http: "127.0.0.1:9192", pathPrefix: "/authz", principalFrom: "xfcc", maxBodyBytes: 65536 } }, "/x/e.yaml").authz, {
      grpc: null, http: { host: "127.0.0.1", port: 9192 }, pathPrefix: "/authz", principalFrom: "xfcc", maxBodyBytes: 65536,
    });
    assert.throws(() => parseConfig({ ...base, authz: { grpc: "127.0.0.1:1", principalFrom: "header" } }, "/x/e.yaml"), /config: authz\.principalFrom: /);
  });

  test("a bad authz key is named", async () => {
    const r = await runCli(["authz", "--config", config({ authz: { grpc: "127.0.0.1:0", pathPrefix: "/check/" } })]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /config: authz\.pathPrefix: /);
    const none = await runCli(["authz", "--config", config({ authz: {} })]);
    assert.match(none.stderr, /config: authz: set grpc, http, or both/);
  });

  test("starts both listeners, answers checks over gRPC and HTTP, exposes metrics, stops on SIGTERM", async () => {
    const p = await startCli(["authz", "--config", config()],
      /edgeward authz listening on grpc:\/\/127\.0\.0\.1:(\d+) http:\/\/127\.0\.0\.1:(\d+) \(admin http:\/\/127\.0\.0\.1:(\d+)\)/);
    const [, grpcPort, httpPort, adminPort] = p.match;
    try {
      const http = await request(`http://127.0.0.1:${httpPort}/check${CHAT}`, {
        method: "POST",
        headers: { "x-forwarded-client-cert": xfcc(id("alice")), "x-envoy-auth-partial-body": "false", "content-type": "application/json" },
        body: chat(),
      });
      await http.body.text();
      assert.equal(http.statusCode, 200);
      assert.equal(http.headers["x-edgeward-principal"], id("alice"));

      const { CheckRequest, CheckResponse } = authProtos();
      const bytes = CheckRequest.encode(CheckRequest.fromObject({
        attributes: { source: { principal: id("mallory") }, request: { http: { method: "POST", path: CHAT, headers: { "x-envoy-auth-partial-body": "false" }, body: chat() } } },
      })).finish();
      const client = new Client(`127.0.0.1:${grpcPort}`, credentials.createInsecure());
      const answer = await new Promise<any>((resolve, reject) => {
        client.makeUnaryRequest("/envoy.service.auth.v3.Authorization/Check", (b: Buffer) => b, (b: Buffer) => CheckResponse.toObject(CheckResponse.decode(b)),
          Buffer.from(bytes), new Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res)));
      });
      client.close();
      assert.equal(answer.status.code, 7);
      assert.equal(answer.denied_response.status.code, 403);

      const metrics = await request(`http://127.0.0.1:${adminPort}/metrics`);
      const text = await metrics.body.text();
      assert.match(text, /edgeward_authz_checks_total\{transport="http",decision="allow"\} 1/);
      assert.match(text, /edgeward_authz_checks_total\{transport="grpc",decision="deny"\} 1/);
      const ready = await request(`http://127.0.0.1:${adminPort}/readyz`);
      assert.equal(ready.statusCode, 200);
      assert.equal((await ready.body.json() as { status: string }).status, "ready");
    } finally {
      assert.equal(await p.stop("SIGTERM"), 0);
    }
    const lines = readFileSync(join(dir, "decisions.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((r) => [r.decision, r.principal]), [["ALLOW", id("alice")], ["DENY", id("mallory")]]);
    const verify = await runCli(["log", "verify", join(dir, "decisions.log")]);
    assert.equal(verify.code, 0, verify.stderr);
  });
});
