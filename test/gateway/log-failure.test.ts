import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import { stringify } from "yaml";
import { verifyLogFile } from "../../src/decision-log/index.ts";
import { loadConfig } from "../../src/config/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { FakeRunner } from "../support/fake-runner.ts";
import { call, createPki, mtlsAgent } from "../support/gateway-fixture.ts";
import { waitFor } from "../support/wait.ts";

const POLICY = fileURLToPath(new URL("./fixtures/policy.yaml", import.meta.url));

async function admin(gateway: Gateway, path: string): Promise<{ status: number; text: string }> {
  const res = await request(`http://127.0.0.1:${gateway.adminAddress.port}${path}`);
  return { status: res.statusCode, text: await res.body.text() };
}

test("a full log disk: 503 and /readyz 503 while the log cannot write; once it can, the gateway recovers without a restart", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-logfail-"));
  const fake = await FakeRunner.start();
  await createPki(dir, ["alice"]);
  writeFileSync(join(dir, "edgeward.yaml"), stringify({
    listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "gateway.pem", key: "gateway.key" },
    trustBundles: { "example.org": "ca/ca.pem" }, policy: POLICY,
    runners: [{ name: "fake", url: fake.url, models: ["mistral-7b-instruct", "gpt-stream"] }], decisionLog: "decisions.log",
  }));
  // Retries every 20–40 ms instead of 100 ms doubling to 30 s: the test waits on the retry, never on seconds.
  const gateway = await Gateway.start(await loadConfig(join(dir, "edgeward.yaml")), { logger: createLogger("silent"), logRetry: { initialMs: 20, maxMs: 40 } });
  const alice = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "alice"));
  const url = `https://127.0.0.1:${gateway.address.port}/v1/chat/completions`;
  const body = { model: "mistral-7b-instruct", messages: [{ role: "user", content: "hi" }] };
  const probe = await open(join(dir, "probe"), "w");
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  const datasync = proto.datasync;
  let rejectedId = "";
  const writable = async () => /^edgeward_decision_log_writable (\d)$/m.exec((await admin(gateway, "/metrics")).text)?.[1];
  try {
    assert.equal((await call(alice, url, { body })).status, 200);
    const ready = await admin(gateway, "/readyz");
    assert.equal(ready.status, 200);
    assert.deepEqual(JSON.parse(ready.text).log, { writable: true });
    assert.equal(await writable(), "1");

    proto.datasync = () => Promise.reject(Object.assign(new Error("no space left on device"), { code: "ENOSPC" }));
    const forwardedBefore = fake.bodies.length;
    const failed = await call(alice, url, { body });
    assert.equal(failed.status, 503);
    assert.equal(failed.json().error.code, "decision_log_unavailable");
    assert.doesNotMatch(failed.text, /hello from the fake runner/);
    assert.equal(fake.bodies.length, forwardedBefore + 1, "the record is sealed before forwarding; only the answer is withheld");
    rejectedId = String(failed.headers["x-request-id"]);

    // While the disk refuses writes, the log keeps retrying and failing: not ready, and requests are refused before
    // they are forwarded.
    await waitFor("two failed recovery attempts", async () => JSON.parse((await admin(gateway, "/readyz")).text).log.retries >= 2);
    const unready = await admin(gateway, "/readyz");
    assert.equal(unready.status, 503);
    const reported = JSON.parse(unready.text);
    assert.equal(reported.status, "unavailable");
    assert.match(reported.reason, /decision log cannot be written/);
    assert.equal(reported.log.writable, false);
    assert.match(reported.log.lastError, /ENOSPC/);
    assert.ok(!Number.isNaN(Date.parse(reported.log.since)));
    assert.equal(await writable(), "0");
    const forwardedAfterFailure = fake.bodies.length;
    assert.equal((await call(alice, url, { body })).status, 503);
    const stream = await call(alice, url, { body: { ...body, model: "gpt-stream", stream: true } });
    assert.equal(stream.status, 503);
    assert.doesNotMatch(stream.text, /data:/);
    assert.equal(fake.bodies.length, forwardedAfterFailure);

    // Space is back: no restart, the log recovers by itself.
    proto.datasync = datasync;
    await waitFor("ready again", async () => (await admin(gateway, "/readyz")).status === 200);
    assert.deepEqual(JSON.parse((await admin(gateway, "/readyz")).text).log, { writable: true });
    assert.equal(await writable(), "1");
    const served = await call(alice, url, { body });
    assert.equal(served.status, 200);
    assert.match(served.text, /hello from the fake runner/);
  } finally {
    proto.datasync = datasync;
    await alice.close();
    await gateway.close().catch(() => undefined);
    await fake.close();
  }
  try {
    // The chain holds the decisions answered, and nothing of the rejected appends (kept aside in .torn).
    const log = join(dir, "decisions.log");
    const verified = await verifyLogFile(log);
    assert.equal(verified.ok, true, JSON.stringify(verified));
    assert.equal(verified.ok && verified.records, 2);
    assert.ok(!readFileSync(log, "utf8").includes(`"requestId":"${rejectedId}"`), "the rejected append is not in the chain");
    assert.ok(readFileSync(`${log}.torn`, "utf8").includes(`"requestId":"${rejectedId}"`), "its bytes were kept aside");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
