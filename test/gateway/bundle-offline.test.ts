import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { stringify } from "yaml";
import { X509Certificate } from "node:crypto";
import { loadConfig } from "../../src/config/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { makeBundle, makeKey, type TestKey } from "../support/bundle-factory.ts";
import { FakeRunner } from "../support/fake-runner.ts";
import { call, mtlsAgent } from "../support/gateway-fixture.ts";
import { waitFor } from "../support/wait.ts";

const HOUR_MS = 3_600_000;
const TD = "example.org";
const POLICY = `apiVersion: edgeward.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: chat
  namespace: edge
spec:
  action: ALLOW
  rules:
    - from:
        - source:
            principals: ["${TD}/ns/apps/sa/alice", "${TD}/ns/apps/sa/bob", "${TD}/ns/apps/sa/carol"]
      to:
        - operation:
            paths: ["/v1/chat/completions"]
            models: ["mistral-7b-instruct"]
    - from:
        - source:
            principals: ["${TD}/ns/apps/sa/alice"]
      to:
        - operation:
            paths: ["/v1/chat/completions"]
            models: ["small"]
      essential: true
`;

const chat = (model: string) => ({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 4 });

describe("offline operation: signed bundles, the degradation ladder, revocation (real TLS, real files)", () => {
  let dir: string;
  let fake: FakeRunner;
  let key: TestKey;
  let built: number;
  let now: number;
  let alice: ReturnType<typeof mtlsAgent>;
  let bob: ReturnType<typeof mtlsAgent>;
  let carol: ReturnType<typeof mtlsAgent>;
  let carolSerial: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-offline-"));
    fake = await FakeRunner.start();
    // Long-lived SVIDs: the tests move the gateway's clock days ahead.
    await initDevCa({ dir: join(dir, "ca"), trustDomain: TD });
    const ttlSeconds = 30 * 86400;
    await issueSvid({ dir: join(dir, "ca"), spiffeId: `spiffe://${TD}/ns/edge/sa/gateway`, out: join(dir, "gateway"), dns: ["localhost"], ip: ["127.0.0.1"], ttlSeconds });
    for (const c of ["alice", "bob", "carol"]) await issueSvid({ dir: join(dir, "ca"), spiffeId: `spiffe://${TD}/ns/apps/sa/${c}`, out: join(dir, c), ttlSeconds });
    carolSerial = new X509Certificate(readFileSync(join(dir, "carol.pem"))).serialNumber;
    key = await makeKey();
    writeFileSync(join(dir, "bundle.pub"), key.publicPem);
    built = Math.floor(Date.now() / 1000) * 1000;
    now = built + 60_000;
    const ca = join(dir, "ca", "ca.pem");
    alice = mtlsAgent(ca, join(dir, "alice"));
    bob = mtlsAgent(ca, join(dir, "bob"));
    carol = mtlsAgent(ca, join(dir, "carol"));
  });

  after(async () => {
    await Promise.all([alice.close(), bob.close(), carol.close()]);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function writeBundle(revision: number, opts: { validForSeconds?: number; revocations?: unknown; nowMs?: number } = {}): Promise<void> {
    const b = await makeBundle({
      revision, keys: [key], policy: POLICY, nowMs: opts.nowMs ?? built,
      validForSeconds: opts.validForSeconds ?? 24 * 3600, graceSeconds: 6 * 3600, restrictedSeconds: 24 * 3600,
      ...(opts.revocations === undefined ? {} : { revocations: opts.revocations }),
    });
    writeFileSync(join(dir, "bundle.tar.gz"), b.archive);
  }

  async function start(bundle: Record<string, unknown> = {}): Promise<{ gateway: Gateway; url: string; admin: string }> {
    writeFileSync(join(dir, "edgeward.yaml"), stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0",
      tls: { cert: "gateway.pem", key: "gateway.key" },
      trustBundles: { [TD]: "ca/ca.pem" },
      bundle: { path: "bundle.tar.gz", keys: ["bundle.pub"], stateDir: "state", pollInterval: "1h", clockTolerance: "5m", ...bundle },
      runners: [{ name: "fake", url: fake.url, models: ["mistral-7b-instruct", "small"] }],
      decisionLog: "decisions.log",
    }));
    const gateway = await Gateway.start(await loadConfig(join(dir, "edgeward.yaml")), { logger: createLogger("silent"), clock: () => now });
    return { gateway, url: `https://127.0.0.1:${gateway.address.port}`, admin: `http://127.0.0.1:${gateway.adminAddress.port}` };
  }

  async function readyz(admin: string): Promise<{ status: number; body: any }> {
    const res = await request(`${admin}/readyz`);
    return { status: res.statusCode, body: await res.body.json() };
  }

  function lastRecord(): Record<string, unknown> {
    const lines = readFileSync(join(dir, "decisions.log"), "utf8").trim().split("\n");
    return JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>;
  }

  it("walks the ladder fresh → grace → restricted → locked with the injected clock, and a new bundle returns it to fresh", async () => {
    await writeBundle(1);
    const { gateway, url, admin } = await start();
    try {
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") })).status, 200);
      assert.equal(lastRecord().stage, "fresh");
      assert.equal(lastRecord().revision, "edge-policy@1");
      assert.deepEqual((await readyz(admin)).body.bundle.stage, "fresh");

      now = built + 24 * HOUR_MS + 1000; // past notAfter, inside the 6 h grace
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") })).status, 200);
      assert.equal(lastRecord().stage, "grace");

      now = built + 31 * HOUR_MS; // grace over: only essential rules allow
      const denied = await call(alice, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") });
      assert.equal(denied.status, 403);
      assert.match(denied.json().error.message, /no essential ALLOW rule matched/);
      assert.equal(lastRecord().stage, "restricted");
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("small") })).status, 200, "the essential rule still allows");
      assert.equal((await call(bob, `${url}/v1/chat/completions`, { body: chat("small") })).status, 403);

      now = built + 56 * HOUR_MS; // restricted period over: locked
      const locked = await call(alice, `${url}/v1/chat/completions`, { body: chat("small") });
      assert.equal(locked.status, 403);
      assert.equal(locked.json().error.code, "policy_locked");
      assert.equal(lastRecord().stage, "locked");
      assert.equal((await call(alice, `${url}/v1/health`)).status, 200, "health probes still answer");
      const ready = await readyz(admin);
      assert.equal(ready.status, 503);
      assert.equal(ready.body.bundle.stage, "locked");
      const metrics = await (await request(`${admin}/metrics`)).body.text();
      assert.match(metrics, /edgeward_bundle_stage\{stage="locked"\} 1/);
      assert.match(metrics, /edgeward_bundle_revision 1/);

      // A new valid bundle (built now) returns the node to fresh at once.
      await writeBundle(2, { nowMs: now });
      await gateway.reloadPolicy();
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") })).status, 200);
      assert.equal(lastRecord().stage, "fresh");
      assert.equal(lastRecord().revision, "edge-policy@2");
    } finally {
      await gateway.close();
    }
  });

  it("boots offline from the persisted bundle, and refuses a rollback across the restart", async () => {
    // The local file is gone and the control plane is unreachable: only the state directory is left.
    rmSync(join(dir, "bundle.tar.gz"));
    let { gateway, url, admin } = await start({ path: undefined, url: "http://127.0.0.1:9/bundle", pollInterval: "1h" });
    try {
      assert.equal((await readyz(admin)).body.bundle.revision, 2);
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") })).status, 200);
      assert.equal(lastRecord().revision, "edge-policy@2");
    } finally {
      await gateway.close();
    }
    await writeBundle(1, { nowMs: now }); // an older revision, validly signed
    ({ gateway, url, admin } = await start());
    try {
      const ready = await readyz(admin);
      assert.equal(ready.body.bundle.revision, 2, "revision 1 is a rollback");
      assert.equal(ready.body.bundle.lastError.check, "rollback");
    } finally {
      await gateway.close();
    }
  });

  it("the clock going back past the tolerance moves the node to restricted", async () => {
    await writeBundle(3, { nowMs: now });
    const { gateway, url, admin } = await start();
    try {
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") })).status, 200);
      now -= 2 * 60_000; // inside the 5 min tolerance: no change
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") })).status, 200);
      now -= 60 * 60_000; // an hour back: tampering
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") })).status, 403);
      assert.equal(lastRecord().stage, "restricted");
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("small") })).status, 200);
      const ready = await readyz(admin);
      assert.equal(ready.body.bundle.clockTampered, true);
      now += 62 * 60_000;
    } finally {
      await gateway.close();
    }
  });

  it("revoked SPIFFE IDs and certificate serials are rejected before the pipeline, offline", async () => {
    const revokedAt = new Date(now).toISOString().replace(/\.\d{3}Z$/, "Z");
    await writeBundle(4, { nowMs: now, revocations: { spiffeIds: [{ id: `spiffe://${TD}/ns/apps/sa/bob`, revokedAt }], serials: [{ serial: carolSerial.toLowerCase(), revokedAt }] } });
    const { gateway, url } = await start({ path: "bundle.tar.gz", url: "http://127.0.0.1:9/bundle" });
    try {
      const byId = await call(bob, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") });
      assert.equal(byId.status, 401);
      assert.equal(byId.json().error.code, "revoked_identity");
      assert.equal(lastRecord().principal, `spiffe://${TD}/ns/apps/sa/bob`);
      assert.equal(lastRecord().status, 401);
      assert.equal(lastRecord().stage, "fresh", "a refusal before the policy still records the stage");
      const bySerial = await call(carol, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") });
      assert.equal(bySerial.status, 401);
      assert.match(bySerial.json().error.message, /certificate serial/);
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") })).status, 200);
    } finally {
      await gateway.close();
    }
  });

  it("a truncated persisted bundle is refused and the node stays locked", async () => {
    rmSync(join(dir, "bundle.tar.gz"));
    const stored = join(dir, "state", "bundle.tar.gz");
    truncateSync(stored, Math.floor(readFileSync(stored).length / 2));
    const { gateway, url, admin } = await start({ path: "bundle.tar.gz" });
    try {
      const ready = await readyz(admin);
      assert.equal(ready.status, 503);
      assert.equal(ready.body.bundle.stage, "locked");
      assert.equal(ready.body.bundle.lastError.source, "store");
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("small") })).status, 403);
      // The rollback floor survived the corrupt bundle: revision 4 cannot come back with other content.
      await writeBundle(4, { nowMs: now + 1000 });
      await gateway.reloadPolicy();
      assert.equal((await readyz(admin)).body.bundle.lastError.check, "revision-reused");
      await writeBundle(5, { nowMs: now });
      await gateway.reloadPolicy();
      assert.equal((await readyz(admin)).body.bundle.stage, "fresh");
    } finally {
      await gateway.close();
    }
  });

  it("a stream in flight when its caller is revoked is cut: a final error event, the runner cancelled, the cut recorded", async () => {
    await writeBundle(6, { nowMs: now });
    const { gateway, url } = await start();
    try {
      const res = await request(`${url}/v1/chat/completions`, {
        dispatcher: bob, method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...chat("mistral-7b-instruct"), stream: true, max_tokens: 500, x_test_delay_ms: 20 }),
      });
      const id = String(res.headers["x-request-id"]);
      const reader = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      let text = String((await reader.next()).value);
      const revokedAt = new Date(now).toISOString().replace(/\.\d{3}Z$/, "Z");
      await writeBundle(7, { nowMs: now, revocations: { spiffeIds: [{ id: `spiffe://${TD}/ns/apps/sa/bob`, revokedAt }], serials: [] } });
      await gateway.reloadPolicy();
      for (let next = await reader.next(); !next.done; next = await reader.next()) text += String(next.value);
      const events = text.split("\n\n").filter(Boolean);
      assert.equal(events.at(-1), "data: [DONE]");
      assert.equal(JSON.parse(events.at(-2)!.slice(6)).error.code, "revoked_identity");
      assert.ok(events.length < 100, "the stream ended long before its 500 tokens");
      await waitFor("the runner's generation to be cancelled", () => fake.aborted.includes(id));
      assert.deepEqual([lastRecord().requestId, lastRecord().decision, lastRecord().status], [id, "DENY", 401]);
      // Other callers' work is not touched.
      assert.equal((await call(alice, `${url}/v1/chat/completions`, { body: chat("mistral-7b-instruct") })).status, 200);
    } finally {
      await gateway.close();
    }
  });
});
