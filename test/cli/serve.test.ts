import assert from "node:assert/strict";
import { chmodSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect } from "node:tls";
import { readFileSync } from "node:fs";
import { issueSvid } from "../../src/identity/index.ts";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { FakeRunner } from "../support/fake-runner.ts";
import { call, createPki, mtlsAgent } from "../support/gateway-fixture.ts";
import { runCli, startCli } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const POLICY = fileURLToPath(new URL("../gateway/fixtures/policy.yaml", import.meta.url));

describe("edgeward serve start-up and reload", () => {
  let dir: string;
  let fake: FakeRunner;
  const config = (patch: Record<string, unknown> = {}) => {
    const p = join(dir, `edgeward-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(p, stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "gateway.pem", key: "gateway.key" },
      trustBundles: { "example.org": "ca/ca.pem" }, policy: "policy.yaml",
      runners: [{ name: "fake", url: fake.url, models: ["mistral-7b-instruct"] }], decisionLog: "decisions.log", logLevel: "warn", ...patch,
    }));
    return p;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-serve-"));
    await createPki(dir, ["alice"]);
    copyFileSync(POLICY, join(dir, "policy.yaml"));
    fake = await FakeRunner.start();
  });
  after(async () => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("usage errors exit 2", async () => {
    assert.equal((await runCli(["serve"])).code, 2);
    assert.equal((await runCli(["serve", "--bogus"])).code, 2);
    assert.equal((await runCli(["nonsense"])).code, 2);
  });

  test("an invalid policy: the gateway never starts, and says where", async () => {
    writeFileSync(join(dir, "bad-policy.yaml"), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  action: ALLOW\n  rules:\n    - to: [{operation: {methdos: [GET]}}]\n");
    const r = await runCli(["serve", "--config", config({ policy: "bad-policy.yaml" })]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad-policy\.yaml:7/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  });

  test("a private key readable by others is refused, without printing it", async () => {
    copyFileSync(join(dir, "gateway.key"), join(dir, "loose.key"));
    chmodSync(join(dir, "loose.key"), 0o644);
    const r = await runCli(["serve", "--config", config({ tls: { cert: "gateway.pem", key: "loose.key" } })]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /loose\.key/);
    assert.doesNotMatch(r.stderr, /PRIVATE KEY/);
  });

  test("a bad config key is named", async () => {
    const r = await runCli(["serve", "--config", config({ limits: { maxTokens: "lots" } })]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /config: limits\.maxTokens: /);
  });

  test("SIGHUP reloads the policy; an invalid one leaves the active policy in force", async () => {
    writeFileSync(join(dir, "live.yaml"), "apiVersion: edgeward.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: none}\nspec: {}\n");
    const gw = await startCli(["serve", "--config", config({ policy: "live.yaml" })], /listening on https:\/\/127\.0\.0\.1:(\d+)/);
    const alice = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "alice"));
    const url = `https://127.0.0.1:${gw.match[1]}/v1/chat/completions`;
    const body = { model: "mistral-7b-instruct", messages: [{ role: "user", content: "hi" }] };
    try {
      assert.equal((await call(alice, url, { body })).status, 403);
      copyFileSync(POLICY, join(dir, "live.yaml"));
      gw.child.kill("SIGHUP");
      await waitFor("the new policy to be activated", async () => (await call(alice, url, { body })).status === 200);
      writeFileSync(join(dir, "live.yaml"), "kind: [broken\n");
      gw.child.kill("SIGHUP");
      await waitFor("the broken policy to be refused", () => /policy reload refused/.test(gw.stderr()));
      assert.equal((await call(alice, url, { body })).status, 200, "the previous policy stays in force");
    } finally {
      await alice.close();
      assert.equal(await gw.stop("SIGTERM"), 0);
    }
  });

  test("rotated certificate files are picked up without a restart (timer and SIGHUP)", async () => {
    const rot = join(dir, "rot");
    await issueSvid({ dir: join(dir, "ca"), spiffeId: "spiffe://example.org/ns/edge/sa/gateway", out: rot, dns: ["localhost"] });
    const gw = await startCli(["serve", "--config", config({ tls: { cert: "rot.pem", key: "rot.key", reloadInterval: "100ms" } })], /listening on https:\/\/127\.0\.0\.1:(\d+)/);
    const serial = () => new Promise<string>((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port: Number(gw.match[1]), servername: "localhost", ca: readFileSync(join(dir, "ca", "ca.pem")),
        cert: readFileSync(join(dir, "alice.pem")), key: readFileSync(join(dir, "alice.key")) }, () => {
        resolve(socket.getPeerX509Certificate()!.serialNumber);
        socket.end();
      });
      socket.on("error", reject);
    });
    try {
      const first = await serial();
      await issueSvid({ dir: join(dir, "ca"), spiffeId: "spiffe://example.org/ns/edge/sa/gateway", out: rot, dns: ["localhost"] });
      const second = await waitFor("the timer to pick up the rotated certificate", async () => {
        const now = await serial();
        return now === first ? null : now;
      });
      // A half-written rotation (garbage) is refused; the credentials in force stay.
      writeFileSync(rot + ".pem", "-----BEGIN CERTIFICATE-----\ngarbage\n");
      gw.child.kill("SIGHUP");
      await waitFor("the garbage certificate to be refused", () => /credential reload refused/.test(gw.stderr()));
      assert.equal(await serial(), second);
    } finally {
      assert.equal(await gw.stop("SIGTERM"), 0);
    }
  });
});
