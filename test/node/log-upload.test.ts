import assert from "node:assert/strict";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { request } from "undici";
import { stringify } from "yaml";
import { DecisionLog, GENESIS_HASH, verifyLogFile, type DecisionEntry, type DecisionRecord } from "../../src/decision-log/index.ts";
import { ConfigError, loadConfig, parseConfig } from "../../src/config/index.ts";
import { ControlPlane, parseControlPlaneConfig } from "../../src/controlplane/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { backoffDelayMs, encodeBatch, LogUploader, MAX_BACKOFF_MS, ownHash, parseHead, type NodeStatus } from "../../src/node/log-upload.ts";
import { CursorStore, NO_CURSOR, parseCursor, UploadStateError } from "../../src/node/upload-cursor.ts";
import { issueSvid } from "../../src/identity/index.ts";
import { createGatewayMetrics, createLogger, registerUploadMetrics, type GatewayMetrics } from "../../src/telemetry/index.ts";
import { entry } from "../decision-log/fixtures.ts";
import { POLICY_YAML } from "../support/bundle-factory.ts";
import { FakeRunner } from "../support/fake-runner.ts";
import { call, createPki, mtlsAgent, TD } from "../support/gateway-fixture.ts";
import { waitFor } from "../support/wait.ts";

const HASH_A = "a".repeat(64);
const HASH_B = "b".repeat(64);
const DAY = 24 * 3600 * 1000;

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-upload-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe("backoff schedule", () => {
  test("full jitter: a uniform draw up to a ceiling that doubles from the interval to five minutes", () => {
    const top = () => 1 - Number.EPSILON;
    const ceilings = Array.from({ length: 9 }, (_, i) => backoffDelayMs(i + 1, 10_000, top));
    assert.deepEqual(ceilings, [9_999, 19_999, 39_999, 79_999, 159_999, 299_999, 299_999, 299_999, 299_999]);
    assert.equal(backoffDelayMs(3, 10_000, () => 0), 0);
    assert.equal(backoffDelayMs(3, 10_000, () => 0.5), 20_000);
    assert.equal(backoffDelayMs(1_000, 10_000, top), MAX_BACKOFF_MS - 1, "no overflow however many failures");
  });

  test("an interval longer than five minutes is its own cap", () => {
    assert.equal(backoffDelayMs(1, 600_000, () => 0.5), 300_000);
    assert.equal(backoffDelayMs(4, 600_000, () => 0.5), 300_000);
  });

  test("every draw is spread over the whole window (a fleet does not retry in step)", () => {
    let seed = 7;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const draws = Array.from({ length: 2000 }, () => backoffDelayMs(4, 10_000, random));
    assert.ok(draws.every((d) => d >= 0 && d < 80_000));
    const low = draws.filter((d) => d < 40_000).length;
    assert.ok(low > 900 && low < 1100, `about half below the middle, got ${low}`);
  });
});

describe("batches, heads, acknowledgements", () => {
  test("a batch is the lines as they are, each ending in a newline, gzip'd", async () => {
    const lines = ['{"seq":1}', '{"seq":2,"x":"é"}'];
    assert.equal(gunzipSync(await encodeBatch(lines)).toString("utf8"), '{"seq":1}\n{"seq":2,"x":"é"}\n');
  });

  test("the node's own hash at an acknowledged seq: the record before the batch or one in it, else none", () => {
    const batch = { firstSeq: 6, hashes: [HASH_A, HASH_B] };
    assert.equal(ownHash({ seq: 5, hash: "c".repeat(64) }, batch, 5), "c".repeat(64));
    assert.equal(ownHash({ seq: 5, hash: "c".repeat(64) }, batch, 6), HASH_A);
    assert.equal(ownHash({ seq: 5, hash: "c".repeat(64) }, batch, 7), HASH_B);
    assert.equal(ownHash({ seq: 5, hash: "c".repeat(64) }, batch, 8), null);
    assert.equal(ownHash({ seq: 5, hash: "c".repeat(64) }, batch, 4), null);
  });

  test("a head or an acknowledgement must be {ackSeq, ackHash}", () => {
    assert.deepEqual(parseHead({ ackSeq: 3, ackHash: HASH_A, accepted: 3, duplicates: 0 }), { ackSeq: 3, ackHash: HASH_A });
    assert.deepEqual(parseHead({ ackSeq: 0, ackHash: GENESIS_HASH }), { ackSeq: 0, ackHash: GENESIS_HASH });
    for (const bad of [null, [], "x", { ackSeq: -1, ackHash: HASH_A }, { ackSeq: 1.5, ackHash: HASH_A }, { ackSeq: "3", ackHash: HASH_A },
      { ackSeq: 3, ackHash: HASH_A.toUpperCase() }, { ackSeq: 3, ackHash: "ab" }, { ackSeq: 3 }, { ackHash: HASH_A }]) {
      assert.equal(parseHead(bad), null, JSON.stringify(bad));
    }
  });
});

describe("upload cursor", () => {
  test("saved atomically as 0600 JSON in a 0700 directory, and loaded back", async (t) => {
    const dir = join(tempDir(t), "upload");
    const store = new CursorStore(dir);
    assert.deepEqual(await store.load(), { cursor: NO_CURSOR, error: null });
    await store.save({ ackSeq: 42, ackHash: HASH_A });
    assert.equal(readFileSync(join(dir, "cursor.json"), "utf8"), `{"ackSeq":42,"ackHash":"${HASH_A}"}\n`);
    assert.equal(statSync(join(dir, "cursor.json")).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(await store.load(), { cursor: { ackSeq: 42, ackHash: HASH_A }, error: null });
  });

  test("a damaged cursor is reported and ignored (nothing is pruned until the head is read again)", async (t) => {
    const dir = join(tempDir(t), "upload");
    const store = new CursorStore(dir);
    await store.save({ ackSeq: 1, ackHash: HASH_A });
    for (const [text, problem] of [
      ['{"ackSeq":4', "not JSON"],
      ["[]", "not a JSON object"],
      [`{"ackSeq":-1,"ackHash":"${HASH_A}"}`, "ackSeq is not a non-negative integer"],
      ['{"ackSeq":1,"ackHash":"xyz"}', "ackHash is not a lowercase sha256 hex digest"],
      [`{"ackSeq":0,"ackHash":"${HASH_A}"}`, "ackSeq 0 must come with the genesis hash"],
      [`{"ackSeq":1,"ackHash":"${HASH_A}","more":1}`, 'unknown field "more"'],
    ] as const) {
      writeFileSync(join(dir, "cursor.json"), text);
      const loaded = await store.load();
      assert.deepEqual(loaded.cursor, NO_CURSOR);
      assert.ok(loaded.error?.includes(problem), `${text}: ${loaded.error}`);
      assert.equal(typeof parseCursor(text), "string");
    }
    writeFileSync(join(dir, "cursor.json"), "x".repeat(2000));
    assert.match((await store.load()).error ?? "", /2000 bytes, more than a cursor's 1024/);
  });

  test("symbolic links at the cursor or its temporary file are not followed", async (t) => {
    const root = tempDir(t);
    const dir = join(root, "upload");
    const store = new CursorStore(dir);
    await store.save({ ackSeq: 1, ackHash: HASH_A });
    writeFileSync(join(root, "elsewhere"), "untouched");
    symlinkSync(join(root, "elsewhere"), join(dir, "cursor.json.tmp"));
    await assert.rejects(store.save({ ackSeq: 2, ackHash: HASH_B }), (e: unknown) => e instanceof UploadStateError && /is a symbolic link/.test(e.message));
    assert.equal(readFileSync(join(root, "elsewhere"), "utf8"), "untouched");
    rmSync(join(dir, "cursor.json"));
    symlinkSync(join(root, "elsewhere"), join(dir, "cursor.json"));
    assert.match((await store.load()).error ?? "", /is a symbolic link/);
  });

  test("a state directory open to other users is refused", async (t) => {
    const dir = join(tempDir(t), "upload");
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    await assert.rejects(new CursorStore(dir).load(), (e: unknown) => e instanceof UploadStateError && /open to other users \(mode 755\); chmod 700 it/.test(e.message));
  });
});

describe("upload config", () => {
  const base = {
    listen: "127.0.0.1:8443", admin: "127.0.0.1:9464",
    tls: { cert: "gw.pem", key: "gw.key" }, trustBundles: { "example.org": "ca.pem" },
    policy: "policy.yaml", runners: [{ name: "r", url: "http://127.0.0.1:8000", models: ["m"] }], decisionLog: "decisions.log",
  };
  const parse = (extra: Record<string, unknown>) => parseConfig({ ...base, ...extra }, "/etc/edgeward/edgeward.yaml");
  const refused = (extra: Record<string, unknown>, key: string, message: RegExp) =>
    assert.throws(() => parse(extra), (e: unknown) => e instanceof ConfigError && e.key === key && message.test(e.message), JSON.stringify(extra));

  test("defaults, absolute paths and retention in days", () => {
    const c = parse({ upload: { url: "https://cp.example.org:9443/v1/logs/", stateDir: "upload", ca: "cp-ca.pem" }, logRetention: "7d" });
    assert.deepEqual(c.upload, { url: "https://cp.example.org:9443/v1/logs", intervalMs: 10_000, maxBatchRecords: 1000, stateDir: "/etc/edgeward/upload", ca: "/etc/edgeward/cp-ca.pem" });
    assert.equal(c.logRetentionMs, 7 * DAY);
    const without = parse({});
    assert.equal(without.upload, null);
    assert.equal(without.logRetentionMs, null);
    assert.equal(parse({ upload: { url: "http://127.0.0.1:9443/v1/logs", stateDir: "u", interval: "500ms", maxBatchRecords: 10_000 } }).upload?.intervalMs, 500);
  });

  test("bad values name their key", () => {
    refused({ logRetention: "7d" }, "logRetention", /needs upload/);
    refused({ upload: { url: "http://cp.example.org/v1/logs", stateDir: "u" } }, "upload.url", /only on loopback/);
    refused({ upload: { url: "ftp://cp/v1/logs", stateDir: "u" } }, "upload.url", /http\(s\):\/\//);
    refused({ upload: { url: "https://cp/v1/logs" } }, "upload.stateDir", /./);
    refused({ upload: { url: "https://cp/v1/logs", stateDir: "u", interval: "0s" } }, "upload.interval", /longer than 0/);
    refused({ upload: { url: "https://cp/v1/logs", stateDir: "u", interval: "2d" } }, "upload.interval", /duration/);
    refused({ upload: { url: "https://cp/v1/logs", stateDir: "u", maxBatchRecords: 10_001 } }, "upload.maxBatchRecords", /10000/);
    refused({ upload: { url: "https://cp/v1/logs", stateDir: "u", maxBatchRecords: 0 } }, "upload.maxBatchRecords", /./);
    refused({ upload: { url: "https://cp/v1/logs", stateDir: "u", extra: 1 } }, "upload", /unknown key/);
    refused({ upload: { url: "https://cp/v1/logs", stateDir: "u" }, logRetention: "a week" }, "logRetention", /12h or 7d/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Against the real control plane (src/controlplane), in this process, over HTTPS with mTLS.

const NODE = (name: string) => `spiffe://${TD}/edge/node/${name}`;
const NDJSON = { "content-type": "application/x-ndjson", "content-encoding": "gzip" };

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

interface Started {
  uploader: LogUploader;
  metrics: GatewayMetrics;
  /** The uploader's log lines, parsed. */
  logs: { msg: string; [k: string]: unknown }[];
  failures(reason: string): Promise<number>;
  counter(name: string): Promise<number>;
}

describe("decision-log upload against the control plane", () => {
  let dir: string;
  let caPem: string;
  let cp: ControlPlane;
  let port: number;

  const cpConfig = (listenPort: number, db: string) => parseControlPlaneConfig({
    listen: `127.0.0.1:${listenPort}`,
    tls: { cert: "cp.pem", key: "cp.key" },
    trustBundles: { [TD]: "ca/ca.pem" },
    storage: { sqlite: db },
    operators: { principals: [`spiffe://${TD}/ops/admin`] },
    groups: [{ name: "kiosks", principals: [`spiffe://${TD}/edge/node/*`, `spiffe://${TD}/ns/edge/sa/gateway`] }],
    bundles: { keys: ["bundle.pub"] },
    logLevel: "silent",
  }, join(dir, "controlplane.yaml"));
  const startCp = (listenPort: number, db: string) => ControlPlane.start(cpConfig(listenPort, db), { logger: createLogger("silent") });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-upload-cp-"));
    ({ caPem } = await createPki(dir, ["chat"]));
    const caDir = join(dir, "ca");
    await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/controlplane`, out: join(dir, "cp"), dns: ["localhost"], ip: ["127.0.0.1"] });
    for (let i = 1; i <= 8; i++) await issueSvid({ dir: caDir, spiffeId: NODE(`kiosk-${i}`), out: join(dir, `kiosk-${i}`) });
    const { makeKey } = await import("../support/bundle-factory.ts");
    writeFileSync(join(dir, "bundle.pub"), (await makeKey()).publicPem);
    cp = await startCp(0, "data/cp.db");
    port = cp.address.port;
  });

  after(async () => {
    await cp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startUploader(node: string, log: DecisionLog, o: {
    port?: number; intervalMs?: number; maxBatchRecords?: number; retentionMs?: number; clock?: () => number;
    random?: () => number; nodeStatus?: () => NodeStatus; stateDir?: string; ca?: string | null;
  } = {}): Promise<Started> {
    const metrics = createGatewayMetrics();
    const logs: Started["logs"] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split("\n")) if (line !== "") logs.push(JSON.parse(line));
        done();
      },
    });
    const credentials = { cert: readFileSync(join(dir, `${node}.pem`), "utf8"), key: readFileSync(join(dir, `${node}.key`), "utf8") };
    const uploader = await LogUploader.start({
      config: {
        url: `https://127.0.0.1:${o.port ?? port}/v1/logs`, intervalMs: o.intervalMs ?? 60_000, maxBatchRecords: o.maxBatchRecords ?? 1000,
        stateDir: o.stateDir ?? join(dir, node, "upload"), ca: o.ca === undefined ? caPem : o.ca,
      },
      retentionMs: o.retentionMs ?? null,
      log, clock: o.clock ?? Date.now, logger: createLogger("info", sink),
      metrics: registerUploadMetrics(metrics),
      clientCredentials: () => credentials,
      nodeStatus: o.nodeStatus ?? (() => ({ bundleRevision: null, stage: null })),
      random: o.random ?? (() => 0.5),
    });
    const value = async (name: string, labels: Record<string, string> = {}) => {
      const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name) as { values: { value: number; labels: Record<string, string> }[] } | undefined;
      return metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
    };
    return { uploader, metrics, logs, failures: (reason) => value("edgeward_upload_failures_total", { reason }), counter: (name) => value(name) };
  }

  // Each node's own request ids, as real ones are: the control plane refuses a record already stored under another node.
  async function openLog(node: string, n: number, make: (i: number) => DecisionEntry = (i) => entry(i, { requestId: `${node}-${i}` }), file = "decisions.log"): Promise<DecisionLog> {
    const log = await DecisionLog.open(join(dir, node, file));
    for (let i = 1; i <= n; i++) await log.append(make(i));
    return log;
  }

  /** POSTs lines as the node would, with its own SVID. */
  async function postAsNode(node: string, lines: string[]) {
    const agent = mtlsAgent(caPem, join(dir, node));
    try {
      return await call(agent, `https://127.0.0.1:${port}/v1/logs`, { method: "POST", body: await encodeBatch(lines), headers: NDJSON });
    } finally {
      await agent.close();
    }
  }

  test("uploads in batches, straight on while records wait, and advances the persisted cursor to the node's head", async () => {
    const log = await openLog("kiosk-1", 25);
    // The interval is far longer than the test: every batch after the first went out at once.
    const up = await startUploader("kiosk-1", log, { maxBatchRecords: 10, nodeStatus: () => ({ bundleRevision: 3, stage: "grace" }) });
    try {
      await waitFor("seq 25 acknowledged", () => up.uploader.cursor.ackSeq === 25);
      assert.deepEqual(up.uploader.cursor, { ackSeq: 25, ackHash: log.lastHash });
      const cursorFile = join(dir, "kiosk-1", "upload", "cursor.json");
      assert.equal(readFileSync(cursorFile, "utf8"), `{"ackSeq":25,"ackHash":"${log.lastHash}"}\n`);
      assert.equal(statSync(cursorFile).mode & 0o777, 0o600);
      assert.equal(await cp.storage.countRecords(NODE("kiosk-1")), 25);
      assert.deepEqual(await cp.storage.logHead(NODE("kiosk-1")), { ackSeq: 25, ackHash: log.lastHash, lastTime: entry(25).time });
      assert.equal(await up.counter("edgeward_upload_batches_total"), 3);
      assert.equal(await up.counter("edgeward_upload_acked_seq"), 25);
      const node = await cp.storage.getNode(NODE("kiosk-1"));
      assert.deepEqual(node?.claimed, { bundleRevision: 3, stage: "grace", logSeq: 25 }, "the x-edgeward-* headers reached the control plane, as claims");
      // A record appended now waits for the next interval.
      await log.append(entry(26));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(up.uploader.cursor.ackSeq, 25);
      assert.equal((await up.metrics.registry.getMetricsAsJSON()).find((m) => m.name === "edgeward_upload_failures_total")?.values.length ?? 0, 0);
    } finally {
      await up.uploader.close();
      await log.close();
    }
  });

  test("while the control plane is down: backoff, nothing lost, and everything arrives once it is back", async () => {
    const downPort = await freePort();
    const log = await openLog("kiosk-2", 12);
    const draws: number[] = [];
    const up = await startUploader("kiosk-2", log, { port: downPort, intervalMs: 40, random: () => (draws.push(draws.length), 0.5) });
    let cp2: ControlPlane | null = null;
    try {
      await waitFor("three failed rounds", async () => (await up.failures("unreachable")) >= 3);
      assert.equal(up.uploader.cursor.ackSeq, 0);
      assert.ok(draws.length >= 3, "each failure draws its jittered wait");
      for (let i = 13; i <= 15; i++) await log.append(entry(i)); // the gateway keeps logging
      cp2 = await startCp(downPort, "data/cp2.db");
      await waitFor("seq 15 acknowledged", () => up.uploader.cursor.ackSeq === 15);
      assert.equal(await cp2.storage.countRecords(NODE("kiosk-2")), 15);
      assert.equal((await cp2.storage.logHead(NODE("kiosk-2"))).ackHash, log.lastHash);
      assert.ok(up.logs.some((l) => l.msg === "decision-log upload resumed"));
      assert.ok(up.logs.some((l) => l.reason === "unreachable" && /ECONNREFUSED/.test(l.msg)), "the failure says why");
      assert.equal((await verifyLogFile(join(dir, "kiosk-2", "decisions.log"))).ok, true);
    } finally {
      await up.uploader.close();
      await log.close();
      await cp2?.close();
    }
  });

  test("a server whose certificate does not verify is sent nothing (failure reason tls)", async () => {
    const log = await openLog("kiosk-7", 3);
    // Without upload.ca the system CAs are used, and they do not know the dev CA.
    const up = await startUploader("kiosk-7", log, { ca: null, intervalMs: 50 });
    try {
      await waitFor("a refused handshake", async () => (await up.failures("tls")) >= 2);
      assert.equal(up.uploader.cursor.ackSeq, 0);
      assert.equal(await cp.storage.getNode(NODE("kiosk-7")), null, "the control plane never heard from the node");
    } finally {
      await up.uploader.close();
      await log.close();
    }
  });

  test("a control plane holding other records (a fork) refuses the batch, raises a finding, and the cursor stays", async () => {
    const first = await openLog("kiosk-3", 5);
    const upFirst = await startUploader("kiosk-3", first, { stateDir: join(dir, "kiosk-3", "upload-a") });
    await waitFor("seq 5 acknowledged", () => upFirst.uploader.cursor.ackSeq === 5);
    await upFirst.uploader.close();
    await first.close();
    // The node's log is replaced by another one: different records under the same seqs.
    const other = await openLog("kiosk-3", 7, (i) => entry(i, { requestId: `other-${i}` }), "other.log");
    const up = await startUploader("kiosk-3", other, { stateDir: join(dir, "kiosk-3", "upload-b"), intervalMs: 50 });
    try {
      await waitFor("the fork refused", async () => (await up.failures("fork")) >= 1);
      assert.ok((await up.failures("head-mismatch")) >= 1);
      assert.deepEqual(up.uploader.cursor, { ackSeq: 0, ackHash: GENESIS_HASH });
      assert.equal(await cp.storage.countRecords(NODE("kiosk-3")), 5, "nothing of the refused batch was stored");
      const findings = await cp.storage.listFindings({ node: NODE("kiosk-3"), kind: "upload-fork" });
      assert.equal(findings.length, 1);
      assert.equal(findings[0]!.severity, "critical");
      assert.equal(other.lastSeq, 7, "the node keeps its records");
      assert.ok(up.logs.some((l) => l.reason === "fork" && /the node keeps them/.test(l.msg)));
    } finally {
      await up.uploader.close();
      await other.close();
    }
  });

  test("an acknowledgement of a record the node does not hold does not move the cursor", async () => {
    const log = await openLog("kiosk-4", 10);
    copyFileSync(join(dir, "kiosk-4", "decisions.log"), join(dir, "kiosk-4", "restored.log"));
    for (let i = 11; i <= 12; i++) await log.append(entry(i));
    const full = await startUploader("kiosk-4", log, { stateDir: join(dir, "kiosk-4", "upload-a") });
    await waitFor("seq 12 acknowledged", () => full.uploader.cursor.ackSeq === 12);
    await full.uploader.close();
    await log.close();
    // The node comes back with an older copy of its log: the control plane acknowledges seq 12, which it lacks.
    const restored = await DecisionLog.open(join(dir, "kiosk-4", "restored.log"));
    const up = await startUploader("kiosk-4", restored, { stateDir: join(dir, "kiosk-4", "upload-b"), intervalMs: 50 });
    try {
      await waitFor("the acknowledgement refused", async () => (await up.failures("ack-mismatch")) >= 1);
      assert.deepEqual(up.uploader.cursor, { ackSeq: 0, ackHash: GENESIS_HASH });
      assert.equal(await up.counter("edgeward_upload_batches_total"), 0);
      assert.ok(up.logs.some((l) => l.reason === "ack-mismatch" && /acknowledged seq 12 .* not this node's record \(outside the batch sent\)/.test(l.msg)));
      assert.equal(await cp.storage.countRecords(NODE("kiosk-4")), 12);
    } finally {
      await up.uploader.close();
      await restored.close();
    }
  });

  test("a crash between the POST and the cursor write: the restart resyncs from the head, and a resend is only duplicates", async () => {
    const log = await openLog("kiosk-5", 5);
    const first = await startUploader("kiosk-5", log);
    await waitFor("seq 5 acknowledged", () => first.uploader.cursor.ackSeq === 5);
    await first.uploader.close();
    for (let i = 6; i <= 9; i++) await log.append(entry(i));
    const batch = await log.readAfter({ seq: 5, hash: first.uploader.cursor.ackHash }, { maxRecords: 100, maxBytes: 1 << 20 });
    // What the uploader sent before it died, its cursor still at 5.
    const sent = await postAsNode("kiosk-5", batch.lines);
    assert.deepEqual(sent.json(), { ackSeq: 9, ackHash: log.lastHash, accepted: 4, duplicates: 0 });
    assert.equal(JSON.parse(readFileSync(join(dir, "kiosk-5", "upload", "cursor.json"), "utf8")).ackSeq, 5);
    const second = await startUploader("kiosk-5", log);
    try {
      await waitFor("the cursor resynced", () => second.uploader.cursor.ackSeq === 9);
      assert.equal(second.uploader.cursor.ackHash, log.lastHash);
      assert.equal(JSON.parse(readFileSync(join(dir, "kiosk-5", "upload", "cursor.json"), "utf8")).ackSeq, 9);
      const resent = await postAsNode("kiosk-5", batch.lines);
      assert.deepEqual(resent.json(), { ackSeq: 9, ackHash: log.lastHash, accepted: 0, duplicates: 4 });
      assert.equal(await cp.storage.countRecords(NODE("kiosk-5")), 9, "every record exactly once");
    } finally {
      await second.uploader.close();
      await log.close();
    }
  });

  test("retention prunes only what is both acknowledged and past the period", async () => {
    const now = Date.UTC(2026, 5, 1);
    // Twelve records ten days old, then two from the last hour; retention seven days.
    const time = (i: number) => new Date(i <= 12 ? now - 10 * DAY + i : now - 3600_000 + i).toISOString();
    const log = await openLog("kiosk-6", 14, (i) => entry(i, { time: time(i), requestId: `r-${String(i).padStart(3, "0")}` }));
    const up = await startUploader("kiosk-6", log, { maxBatchRecords: 4, retentionMs: 7 * DAY, clock: () => now });
    try {
      await waitFor("seq 14 acknowledged", () => up.uploader.cursor.ackSeq === 14);
      // Each prune went no further than the acknowledgement before it.
      assert.deepEqual(up.logs.filter((l) => /decision log pruned/.test(l.msg)).map((l) => l.throughSeq), [4, 8, 12]);
      assert.deepEqual(log.anchor?.seq, 12);
      const kept = readFileSync(join(dir, "kiosk-6", "decisions.log"), "utf8").split("\n").slice(0, -1).map((l) => (JSON.parse(l) as DecisionRecord).seq);
      assert.deepEqual(kept, [13, 14]);
      const verified = await verifyLogFile(join(dir, "kiosk-6", "decisions.log"));
      assert.ok(verified.ok && verified.lastSeq === 14 && verified.anchor?.seq === 12);
      assert.equal(await cp.storage.countRecords(NODE("kiosk-6")), 14);
    } finally {
      await up.uploader.close();
      await log.close();
    }
  });

  test("the gateway uploads the decisions it makes (Gateway.start wiring, metrics on the admin listener)", async () => {
    const fake = await FakeRunner.start();
    const gwDir = join(dir, "gw");
    mkdirSync(gwDir);
    writeFileSync(join(gwDir, "policy.yaml"), POLICY_YAML);
    writeFileSync(join(gwDir, "edgeward.yaml"), stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0",
      tls: { cert: "../gateway.pem", key: "../gateway.key" },
      trustBundles: { [TD]: "../ca/ca.pem" },
      policy: "policy.yaml",
      runners: [{ name: "fake", url: fake.url, models: ["tiny"] }],
      decisionLog: "decisions.log",
      upload: { url: `https://127.0.0.1:${port}/v1/logs`, interval: "100ms", stateDir: "upload", ca: "../ca/ca.pem" },
      logRetention: "30d",
    }));
    const gateway = await Gateway.start(await loadConfig(join(gwDir, "edgeward.yaml")), { logger: createLogger("silent") });
    const client = mtlsAgent(caPem, join(dir, "chat"));
    try {
      for (let i = 0; i < 3; i++) {
        const r = await call(client, `https://127.0.0.1:${gateway.address.port}/v1/chat/completions`, { body: { model: "tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 2 } });
        assert.equal(r.status, 200);
      }
      const gatewayNode = `spiffe://${TD}/ns/edge/sa/gateway`;
      await waitFor("three decisions at the control plane", async () => (await cp.storage.countRecords(gatewayNode)) === 3);
      assert.equal((await cp.storage.logHead(gatewayNode)).ackHash, gateway.state.log.lastHash);
      await waitFor("the acknowledgement checked", () => gateway.logUploader?.cursor.ackSeq === 3);
      const metrics = await (await request(`http://127.0.0.1:${gateway.adminAddress.port}/metrics`)).body.text();
      assert.match(metrics, /\nedgeward_upload_acked_seq 3\n/);
      assert.match(metrics, /\nedgeward_upload_batches_total [1-3]\n/);
    } finally {
      await client.close();
      await gateway.close();
      await fake.close();
    }
  });
});
