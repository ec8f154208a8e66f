import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { request } from "undici";
import { stringify } from "yaml";
import { loadConfig } from "../../src/config/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { makeBundle, makeKey } from "../support/bundle-factory.ts";
import { FakeRunner } from "../support/fake-runner.ts";
import { createPki } from "../support/gateway-fixture.ts";
import { waitFor } from "../support/wait.ts";

/**
 * A stand-in for the control plane's bundle endpoint (the control plane is another component): ETag and
 * If-None-Match, and RFC 7240 `Prefer: wait=N` long-polling, answered with `Preference-Applied`.
 */
class BundleServer {
  readonly requests: { ifNoneMatch: string | undefined; prefer: string | undefined; status: number }[] = [];
  #archive: Buffer = Buffer.alloc(0);
  #etag = "";
  #waiting: (() => void)[] = [];
  readonly #server = createServer((req, res) => void this.#handle(req, res));

  publish(archive: Buffer): void {
    this.#archive = archive;
    this.#etag = `"${createHash("sha256").update(archive).digest("hex").slice(0, 16)}"`;
    for (const wake of this.#waiting.splice(0)) wake();
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.#server.listen(0, "127.0.0.1", () => r()));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/v1/bundles/edge-policy`;
  }

  async close(): Promise<void> {
    for (const wake of this.#waiting.splice(0)) wake();
    this.#server.closeAllConnections();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ifNoneMatch = String(req.headers["if-none-match"] ?? "") || undefined;
    const prefer = String(req.headers.prefer ?? "") || undefined;
    const wait = /wait=(\d+)/.exec(prefer ?? "");
    const headers: Record<string, string> = {};
    if (ifNoneMatch === this.#etag && wait !== null) {
      headers["preference-applied"] = `wait=${wait[1]}`;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Number(wait[1]) * 1000);
        this.#waiting.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    if (ifNoneMatch === this.#etag) {
      this.requests.push({ ifNoneMatch, prefer, status: 304 });
      res.writeHead(304, { ...headers, etag: this.#etag }).end();
      return;
    }
    this.requests.push({ ifNoneMatch, prefer, status: 200 });
    res.writeHead(200, { ...headers, etag: this.#etag, "content-type": "application/gzip", "content-length": this.#archive.length }).end(this.#archive);
  }
}

/** Waits until `probe` returns something other than undefined, and returns it. */
const until = <T>(what: string, probe: () => Promise<T | undefined>): Promise<T> =>
  waitFor(what, async () => {
    const value = await probe();
    return value === undefined ? undefined : { value };
  }).then((found) => found.value);

test("bundles from the control plane: ETag 304, long-poll wake-up, tampered bundles refused, the good one persisted", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-fetch-"));
  const fake = await FakeRunner.start();
  const cp = new BundleServer();
  await createPki(dir, []);
  const key = await makeKey();
  const stranger = await makeKey();
  writeFileSync(join(dir, "bundle.pub"), key.publicPem);
  const now = Date.now();
  cp.publish((await makeBundle({ revision: 1, keys: [key], nowMs: now })).archive);
  const url = await cp.listen();
  writeFileSync(join(dir, "edgeward.yaml"), stringify({
    listen: "127.0.0.1:0", admin: "127.0.0.1:0",
    tls: { cert: "gateway.pem", key: "gateway.key" },
    trustBundles: { "example.org": "ca/ca.pem" },
    // A poll interval far longer than the test: every update seen below came through the long poll.
    bundle: { url, keys: ["bundle.pub"], stateDir: "state", pollInterval: "1h", longPoll: "20s" },
    runners: [{ name: "fake", url: fake.url, models: ["tiny"] }],
    decisionLog: "decisions.log",
  }));
  const gateway = await Gateway.start(await loadConfig(join(dir, "edgeward.yaml")), { logger: createLogger("silent") });
  const admin = `http://127.0.0.1:${gateway.adminAddress.port}`;
  const revision = async () => ((await (await request(`${admin}/readyz`)).body.json()) as any).bundle;
  try {
    await until("revision 1", async () => ((await revision()).revision === 1 ? true : undefined));
    // Persisted right after activation (the write and fsync follow the swap of the policy in force).
    await until("the verified bundle to be persisted", async () => (existsSync(join(dir, "state", "bundle.tar.gz")) ? true : undefined));
    // The next request is conditional and asks to wait.
    await until("a conditional long-poll", async () => (cp.requests.length >= 1 ? true : undefined));
    assert.equal(cp.requests[0]!.ifNoneMatch, undefined);
    assert.equal(cp.requests[0]!.prefer, "wait=20");

    cp.publish((await makeBundle({ revision: 2, keys: [key], nowMs: now })).archive);
    const second = await until("revision 2", async () => {
      const b = await revision();
      return b.revision === 2 ? b : undefined;
    });
    assert.equal(second.stage, "fresh");
    assert.equal(cp.requests[1]!.status, 200);
    assert.match(String(cp.requests[1]!.ifNoneMatch), /^"[0-9a-f]{16}"$/, "the held request carried the ETag of revision 1");

    // Signed by a key the node does not trust: refused, revision 2 stays in force.
    cp.publish((await makeBundle({ revision: 3, keys: [stranger], nowMs: now })).archive);
    const refused = await until("the refusal", async () => {
      const b = await revision();
      return b.lastError !== null ? b : undefined;
    });
    assert.equal(refused.revision, 2);
    assert.equal(refused.lastError.check, "unknown-key");
    assert.equal(refused.lastError.source, "url");

    // Bytes that are no bundle at all.
    cp.publish(Buffer.from("<html>captive portal</html>"));
    await until("the malformed refusal", async () => ((await revision()).lastError?.check === "malformed-archive" ? true : undefined));
    assert.equal((await revision()).revision, 2);

    const metrics = await (await request(`${admin}/metrics`)).body.text();
    assert.match(metrics, /edgeward_bundle_updates_total\{source="url",result="activated"\} 2/);
    assert.match(metrics, /edgeward_bundle_updates_total\{source="url",result="unknown-key"\} 1/);
  } finally {
    await gateway.close();
    await cp.close();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("plain polling: an unchanged bundle is a 304 with nothing re-verified, and a new one is picked up at the next poll", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-poll-"));
  const fake = await FakeRunner.start();
  const cp = new BundleServer();
  await createPki(dir, []);
  const key = await makeKey();
  writeFileSync(join(dir, "bundle.pub"), key.publicPem);
  cp.publish((await makeBundle({ revision: 7, keys: [key], nowMs: Date.now() })).archive);
  const url = await cp.listen();
  writeFileSync(join(dir, "edgeward.yaml"), stringify({
    listen: "127.0.0.1:0", admin: "127.0.0.1:0",
    tls: { cert: "gateway.pem", key: "gateway.key" },
    trustBundles: { "example.org": "ca/ca.pem" },
    bundle: { url, keys: ["bundle.pub"], stateDir: "state", pollInterval: "100ms" },
    runners: [{ name: "fake", url: fake.url, models: ["tiny"] }],
    decisionLog: "decisions.log",
  }));
  const gateway = await Gateway.start(await loadConfig(join(dir, "edgeward.yaml")), { logger: createLogger("silent") });
  const admin = `http://127.0.0.1:${gateway.adminAddress.port}`;
  const bundle = async () => ((await (await request(`${admin}/readyz`)).body.json()) as any).bundle;
  try {
    await until("three 304s", async () => (cp.requests.filter((r) => r.status === 304).length >= 3 ? true : undefined));
    assert.equal(cp.requests[0]!.status, 200);
    assert.ok(cp.requests.slice(1).every((r) => r.status === 304 && r.prefer === undefined && r.ifNoneMatch !== undefined));
    assert.equal((await bundle()).revision, 7);
    const metrics = await (await request(`${admin}/metrics`)).body.text();
    assert.match(metrics, /edgeward_bundle_updates_total\{source="url",result="not-modified"\} [3-9]/);
    assert.match(metrics, /edgeward_bundle_updates_total\{source="url",result="activated"\} 1\n/);
    cp.publish((await makeBundle({ revision: 8, keys: [key], nowMs: Date.now() })).archive);
    await until("revision 8", async () => ((await bundle()).revision === 8 ? true : undefined));
  } finally {
    await gateway.close();
    await cp.close();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
