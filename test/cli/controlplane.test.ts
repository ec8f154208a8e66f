import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { stringify } from "yaml";
import { makeBundle, makeKey } from "../support/bundle-factory.ts";
import { call, createPki, mtlsAgent } from "../support/gateway-fixture.ts";
import { runCli, startCli } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const TOKEN = "fedcba9876543210fedcba9876543210";
const READY = /^edgeward controlplane listening on https:\/\/127\.0\.0\.1:(\d+)$/;

describe("edgeward controlplane", () => {
  let dir: string;
  let release: Awaited<ReturnType<typeof makeKey>>;
  const config = (patch: Record<string, unknown> = {}) => {
    const path = join(dir, `cp-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(path, stringify({
      listen: "127.0.0.1:0",
      tls: { cert: "gateway.pem", key: "gateway.key" },
      trustBundles: { "example.org": "ca/ca.pem" },
      storage: { sqlite: "data/cp.db" },
      operators: { tokenFile: "operator.token" },
      groups: [{ name: "edge", principals: ["spiffe://example.org/ns/apps/sa/*"] }],
      bundles: { keys: ["release.pub"] },
      logLevel: "warn",
      ...patch,
    }));
    return path;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-cli-cp-"));
    await createPki(dir, ["kiosk"]);
    release = await makeKey();
    writeFileSync(join(dir, "release.pub"), release.publicPem);
    writeFileSync(join(dir, "operator.token"), TOKEN, { mode: 0o600 });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("usage errors exit 2; --help exits 0", async () => {
    assert.equal((await runCli(["controlplane"])).code, 2);
    const bogus = await runCli(["controlplane", "--bogus"]);
    assert.equal(bogus.code, 2);
    assert.match(bogus.stderr, /usage: edgeward controlplane --config FILE/);
    const help = await runCli(["controlplane", "--help"]);
    assert.deepEqual([help.code, help.stdout], [0, "usage: edgeward controlplane --config FILE\n"]);
    assert.match((await runCli(["--help"])).stdout, /controlplane +run the control plane/);
  });

  test("a bad config key is named, without a stack trace", async () => {
    const r = await runCli(["controlplane", "--config", config({ groups: [{ name: "edge", principals: ["example.org/ns/apps/*"] }] })]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^edgeward controlplane: config: groups\[0\]\.principals\[0\]: expected a spiffe:\/\/ ID/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    const storage = await runCli(["controlplane", "--config", config({ storage: {} })]);
    assert.match(storage.stderr, /config: storage: set exactly one of sqlite/);
  });

  test("an operator token file others can read is refused, without printing the token", async () => {
    writeFileSync(join(dir, "open.token"), TOKEN);
    chmodSync(join(dir, "open.token"), 0o644);
    const r = await runCli(["controlplane", "--config", config({ operators: { tokenFile: "open.token" } })]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /operators\.tokenFile: .*open\.token is accessible by group or others/);
    assert.doesNotMatch(r.stderr, new RegExp(TOKEN));
  });

  test("starts, serves, answers a held long-poll and exits 0 on SIGTERM; the data survives a restart", async () => {
    const file = config();
    const cp = await startCli(["controlplane", "--config", file], READY);
    const base = `https://127.0.0.1:${cp.match[1]}`;
    const anonymous = mtlsAgent(join(dir, "ca", "ca.pem"));
    const kiosk = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "kiosk"));
    try {
      assert.equal((await call(anonymous, `${base}/healthz`)).status, 200);
      assert.equal((await call(anonymous, `${base}/v1/nodes`)).status, 401);
      const { archive } = await makeBundle({ nowMs: Date.now() - 60_000, keys: [release] });
      const pushed = await call(anonymous, `${base}/v1/bundles?group=edge`, { method: "POST", body: archive, headers: { "content-type": "application/gzip", authorization: `Bearer ${TOKEN}` } });
      assert.equal(pushed.status, 201);
      const etag = `"${pushed.json().etag}"`;
      // The claim in the held request's headers shows when the control plane has it in hand.
      const held = call(kiosk, `${base}/v1/bundle`, { headers: { "if-none-match": etag, prefer: "wait=120", "x-edgeward-stage": "grace" } });
      await waitFor("the long-poll to reach the control plane", async () => {
        const nodes = (await call(anonymous, `${base}/v1/nodes`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
        return nodes.some((n: { claimed?: { stage?: string } }) => n.claimed?.stage === "grace");
      });
      // A shutdown that waited for the long-poll would take its 120 s; stop() fails past 60 s, so well within it
      // (generous on purpose: a loaded machine may take seconds to stop, never a minute).
      assert.equal(await cp.stop("SIGTERM", 60_000), 0);
      const answer = await held;
      assert.equal(answer.status, 304);
      assert.equal(answer.headers["preference-applied"], "wait=120");
    } finally {
      await cp.stop("SIGKILL");
    }

    const again = await startCli(["controlplane", "--config", file], READY);
    try {
      const base2 = `https://127.0.0.1:${again.match[1]}`;
      const history = await call(anonymous, `${base2}/v1/bundles?group=edge`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.deepEqual(history.json().map((h: { revision: number }) => h.revision), [1]);
      assert.equal(await again.stop("SIGINT"), 0);
    } finally {
      await again.stop("SIGKILL");
      await anonymous.close();
      await kiosk.close();
    }
  });
});
