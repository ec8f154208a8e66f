import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { request } from "undici";
import { stringify } from "yaml";
import { loadConfig } from "../../src/config/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { FakeRunner } from "../support/fake-runner.ts";
import { call, createPki, mtlsAgent } from "../support/gateway-fixture.ts";

/**
 * A federated trust domain is dropped (its CA bundle replaced): connections that were opened under the old bundle,
 * and the streams running on them, must not outlive it.
 */

const POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: callers, namespace: test}
spec:
  action: ALLOW
  rules:
    - from: [{source: {principals: ["example.org/ns/apps/sa/alice", "partner.org/ns/apps/sa/p"]}}]
`;
const CHAT = { model: "m", messages: [{ role: "user", content: "hi" }] };

let dir: string;
let fake: FakeRunner;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "edgeward-trust-"));
  await createPki(dir, ["alice"]);
  await initDevCa({ dir: join(dir, "partner-ca"), trustDomain: "partner.org" });
  await issueSvid({ dir: join(dir, "partner-ca"), spiffeId: "spiffe://partner.org/ns/apps/sa/p", out: join(dir, "partner") });
  // Another CA for the same trust domain: what the partner bundle is rotated to.
  await initDevCa({ dir: join(dir, "partner-ca-2"), trustDomain: "partner.org" });
  copyFileSync(join(dir, "partner-ca", "ca.pem"), join(dir, "partner-bundle.pem"));
  writeFileSync(join(dir, "policy.yaml"), POLICY);
  fake = await FakeRunner.start();
});

after(async () => {
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("after the trust bundles change, open connections the new bundles do not verify are closed, and their streams cut", async () => {
  writeFileSync(join(dir, "edgeward.yaml"), stringify({
    listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "gateway.pem", key: "gateway.key", reloadInterval: "1h" },
    trustBundles: { "example.org": "ca/ca.pem", "partner.org": "partner-bundle.pem" }, policy: "policy.yaml",
    runners: [{ name: "fake", url: fake.url, models: ["m"] }], decisionLog: "decisions.log",
  }));
  const gateway = await Gateway.start(await loadConfig(join(dir, "edgeward.yaml")), { logger: createLogger("silent") });
  const url = `${gateway.url}/v1/chat/completions`;
  const partner = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "partner"));
  const alice = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "alice"));
  try {
    assert.equal((await call(partner, url, { body: CHAT })).status, 200);
    assert.equal((await call(alice, url, { body: CHAT })).status, 200);
    const res = await request(url, {
      dispatcher: partner, method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...CHAT, stream: true, max_tokens: 500, x_test_delay_ms: 20 }),
    });
    const reader = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    let text = String((await reader.next()).value);

    copyFileSync(join(dir, "partner-ca-2", "ca.pem"), join(dir, "partner-bundle.pem"));
    await gateway.reloadCredentials();

    for (let next = await reader.next(); !next.done; next = await reader.next()) text += String(next.value);
    const events = text.split("\n\n").filter(Boolean);
    assert.equal(events.at(-1), "data: [DONE]");
    const last = JSON.parse(events.at(-2)!.slice(6));
    assert.equal(last.error.code, "revoked_identity");
    assert.match(last.error.message, /no longer accepted after the trust bundles changed/);
    assert.ok(events.length < 100, "the stream ended long before its 500 tokens");
    // The partner's next request needs a new handshake, which the new bundle refuses; alice is not affected.
    const again = await call(partner, url, { body: CHAT });
    assert.equal(again.status, 401);
    assert.equal(again.json().error.code, "invalid_client_certificate");
    assert.equal((await call(alice, url, { body: CHAT })).status, 200);
    const records = readFileSync(join(dir, "decisions.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual([records.at(-2).principal, records.at(-2).status], ["spiffe://partner.org/ns/apps/sa/p", 401]);
  } finally {
    await partner.close();
    await alice.close();
    await gateway.close(0);
  }
});
