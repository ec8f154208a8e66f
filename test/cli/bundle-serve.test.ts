import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { stringify } from "yaml";
import { FakeRunner } from "../support/fake-runner.ts";
import { call, createPki, mtlsAgent } from "../support/gateway-fixture.ts";
import { runCli, startCli } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const policy = (model: string) => `apiVersion: edgeward.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: chat, namespace: edge}
spec:
  action: ALLOW
  rules:
    - from: [{source: {principals: ["example.org/ns/apps/sa/alice"]}}]
      to: [{operation: {paths: ["/v1/chat/completions"], models: ["${model}"]}}]
`;

test("the release path end to end: keygen, build, serve from the bundle, SIGHUP to a new revision, verify what the node kept", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-bundle-serve-"));
  const fake = await FakeRunner.start();
  await createPki(dir, ["alice"]);
  const cli = (...args: string[]) => runCli(args, { cwd: dir });
  try {
    assert.equal((await cli("bundle", "keygen", "--out", "release")).code, 0);
    mkdirSync(join(dir, "policies"));
    writeFileSync(join(dir, "policies", "chat.yaml"), policy("mistral-7b-instruct"));
    const built = await cli("bundle", "build", "policies", "--revision", "1", "--valid-for", "24h", "--grace", "1h", "--key", "release.key", "--out", "edge.tar.gz");
    assert.equal(built.code, 0, built.stderr);
    writeFileSync(join(dir, "edgeward.yaml"), stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "gateway.pem", key: "gateway.key" },
      trustBundles: { "example.org": "ca/ca.pem" },
      bundle: { path: "edge.tar.gz", keys: ["release.pub"], stateDir: "state" },
      runners: [{ name: "fake", url: fake.url, models: ["mistral-7b-instruct", "small"] }],
      decisionLog: "decisions.log", logLevel: "warn",
    }));
    const gw = await startCli(["serve", "--config", "edgeward.yaml"], /listening on https:\/\/127\.0\.0\.1:(\d+)/, { cwd: dir });
    const alice = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "alice"));
    const url = `https://127.0.0.1:${gw.match[1]}/v1/chat/completions`;
    const chat = (model: string) => ({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
    try {
      assert.equal((await call(alice, url, { body: chat("mistral-7b-instruct") })).status, 200);
      assert.equal((await call(alice, url, { body: chat("small") })).status, 403);

      // Revision 2 moves alice to the small model; SIGHUP re-reads the bundle file.
      writeFileSync(join(dir, "policies", "chat.yaml"), policy("small"));
      assert.equal((await cli("bundle", "build", "policies", "--revision", "2", "--valid-for", "24h", "--key", "release.key", "--out", "edge.tar.gz")).code, 0);
      gw.child.kill("SIGHUP");
      await waitFor("revision 2 to be activated after SIGHUP", async () => (await call(alice, url, { body: chat("small") })).status === 200, 20_000, 50);
      assert.equal((await call(alice, url, { body: chat("mistral-7b-instruct") })).status, 403);
    } finally {
      await alice.close();
      assert.equal(await gw.stop("SIGINT"), 0);
    }

    const records = readFileSync(join(dir, "decisions.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    // The bundle is named for its directory. Denials while SIGHUP was being handled were made under revision 1.
    assert.deepEqual(records.map((r) => [r.revision, r.stage, r.decision]), [
      ["policies@1", "fresh", "ALLOW"], ["policies@1", "fresh", "DENY"],
      ...records.slice(2, -2).map(() => ["policies@1", "fresh", "DENY"]),
      ["policies@2", "fresh", "ALLOW"], ["policies@2", "fresh", "DENY"],
    ]);
    assert.equal((await cli("log", "verify", "decisions.log")).code, 0);
    // What the node kept is an ordinary bundle, checkable by hand.
    const kept = await cli("bundle", "verify", "state/bundle.tar.gz", "--pub", "release.pub");
    assert.equal(kept.code, 0, kept.stderr);
    assert.match(kept.stdout, /revision\s*:?\s*2/);
  } finally {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
