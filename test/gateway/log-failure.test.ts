import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { loadConfig } from "../../src/config/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { FakeRunner } from "../support/fake-runner.ts";
import { call, createPki, mtlsAgent } from "../support/gateway-fixture.ts";

const POLICY = fileURLToPath(new URL("./fixtures/policy.yaml", import.meta.url));

test("when the decision cannot be made durable the answer is withheld: 503, fail closed", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-logfail-"));
  const fake = await FakeRunner.start();
  await createPki(dir, ["alice"]);
  writeFileSync(join(dir, "edgeward.yaml"), stringify({
    listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "gateway.pem", key: "gateway.key" },
    trustBundles: { "example.org": "ca/ca.pem" }, policy: POLICY,
    runners: [{ name: "fake", url: fake.url, models: ["mistral-7b-instruct", "gpt-stream"] }], decisionLog: "decisions.log",
  }));
  const gateway = await Gateway.start(await loadConfig(join(dir, "edgeward.yaml")), { logger: createLogger("silent") });
  const alice = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "alice"));
  const url = `https://127.0.0.1:${gateway.address.port}/v1/chat/completions`;
  const body = { model: "mistral-7b-instruct", messages: [{ role: "user", content: "hi" }] };
  const probe = await open(join(dir, "probe"), "w");
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  const datasync = proto.datasync;
  try {
    assert.equal((await call(alice, url, { body })).status, 200);
    proto.datasync = () => Promise.reject(Object.assign(new Error("no space left on device"), { code: "ENOSPC" }));
    const forwardedBefore = fake.bodies.length;
    const failed = await call(alice, url, { body });
    assert.equal(failed.status, 503);
    assert.equal(failed.json().error.code, "decision_log_unavailable");
    assert.doesNotMatch(failed.text, /hello from the fake runner/);
    assert.equal(fake.bodies.length, forwardedBefore + 1, "the record is sealed before forwarding; only the answer is withheld");
    proto.datasync = datasync;
    // The log stays closed to appends after a failure: every later request is refused before it is forwarded.
    const forwardedAfterFailure = fake.bodies.length;
    assert.equal((await call(alice, url, { body })).status, 503);
    const stream = await call(alice, url, { body: { ...body, model: "gpt-stream", stream: true } });
    assert.equal(stream.status, 503);
    assert.doesNotMatch(stream.text, /data:/);
    assert.equal(fake.bodies.length, forwardedAfterFailure);
  } finally {
    proto.datasync = datasync;
    await alice.close();
    await gateway.close().catch(() => undefined);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
