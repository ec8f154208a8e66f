import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { GENESIS_HASH, sealRecord, serializeRecord } from "../../src/decision-log/index.ts";
import {
  ForeignRecordError, openPostgresStorage, openSqliteStorage, StorageConflictError, StorageError,
} from "../../src/controlplane/storage/index.ts";
import { POSTGRES_MIGRATIONS, SCHEMA_VERSION_TABLE_POSTGRES, SCHEMA_VERSION_TABLE_SQLITE, SQLITE_MIGRATIONS } from "../../src/controlplane/storage/schema.ts";
import type {
  Finding, IngestRecord, LogHead, Storage, StoredBundle,
} from "../../src/controlplane/storage/index.ts";
import { startPostgres } from "../support/postgres.ts";

type Row = Record<string, unknown>;

/** One database product as the shared suite drives it. */
interface Backend {
  /** A location no storage has used yet: a file path or a database URL. */
  fresh(): Promise<string>;
  open(location: string): Promise<Storage>;
  /** Raw SQL at the location, beside the storage: to inspect the schema or plant what a test needs. */
  sql(location: string, text: string): Promise<Row[]>;
  /** A database at `location` as the first edgeward release left it: schema version 1 only, and `plant` run in it. */
  createVersion1(location: string, plant: string): Promise<void>;
  stop(): Promise<void>;
}

const T0 = Date.UTC(2026, 10, 23);
const at = (ms: number) => new Date(T0 + ms).toISOString();

const NODE = "spiffe://example.org/edge/node/kiosk-17";
/** Quotes, SQL comment and statement separators, a backslash, an encoded slash, non-ASCII, astral plane. */
const ODD_NODE = `spiffe://example.org/edge/node/k'io"sk;--%2F\\ü-東京-🚀`;
const HOSTILE = "'); DROP TABLE findings; --";
const UNICODE = `revoked: "it's" \\ \n\t ünïcödé 東京 🚀 ${HOSTILE}`;

function bundle(group: string, revision: number, archive: Buffer = Buffer.from(`${group}@${revision}`)): StoredBundle {
  return {
    group,
    revision,
    name: `${group}-policies`,
    digest: `${revision}`.padStart(64, "a"),
    etag: `"${`${revision}`.padStart(64, "e")}"`,
    createdAt: at(revision * 1000),
    notAfter: at(revision * 1000 + 86_400_000),
    graceSeconds: 3600,
    publishedAt: at(revision * 1000 + 1),
    archive,
  };
}

function withoutArchive(b: StoredBundle): Omit<StoredBundle, "archive"> {
  const { archive: _, ...meta } = b;
  return meta;
}

/** `count` real, chained decision-log records after `head`, one second apart starting at `startMs`. */
function chain(count: number, head: { ackSeq: number; ackHash: string } = { ackSeq: 0, ackHash: GENESIS_HASH }, startMs = 0): IngestRecord[] {
  const out: IngestRecord[] = [];
  let prev = head.ackHash;
  for (let i = 1; i <= count; i++) {
    const seq = head.ackSeq + i;
    const record = sealRecord({
      time: at(startMs + i * 1000),
      requestId: `req-${seq}`,
      principal: "spiffe://example.org/ns/apps/sa/chat",
      method: "POST",
      path: "/v1/chat/completions",
      model: "tiny",
      decision: "ALLOW",
      policy: "edge/chat-allow",
      rule: 0,
      reason: `allowed — ${UNICODE}`,
      revision: "edge-policies@3",
    }, seq, prev);
    out.push({ seq, hash: record.hash, prev, time: record.time, line: serializeRecord(record) });
    prev = record.hash;
  }
  return out;
}

let large: IngestRecord[] | undefined;
/** Sealed once for both suites: hashing 10,000 records is the slow part. */
function largeBatch(): IngestRecord[] {
  large ??= chain(10_000);
  return large;
}

function headOf(records: IngestRecord[], lastTime = records[records.length - 1]!.time): LogHead {
  const last = records[records.length - 1]!;
  return { ackSeq: last.seq, ackHash: last.hash, lastTime };
}

const EMPTY: LogHead = { ackSeq: 0, ackHash: GENESIS_HASH, lastTime: null };

function finding(n: number, over: Partial<Omit<Finding, "id">> = {}): Omit<Finding, "id"> {
  return {
    node: NODE,
    kind: "degraded-stage",
    severity: "low",
    seqFrom: n,
    seqTo: n,
    explanation: `finding ${n}`,
    createdAt: at(n * 1000),
    ...over,
  };
}

function conflict(check: string) {
  return (err: unknown) => err instanceof StorageConflictError && err.check === check;
}

function refused(check: string, message: RegExp) {
  return (err: unknown) =>
    err instanceof StorageError && !(err instanceof StorageConflictError) && err.check === check && message.test(err.message);
}

/** The same tests for every implementation: what one store does, the other must do too. */
function storageSuite(name: string, start: () => Promise<Backend>): void {
  describe(name, () => {
    let backend: Backend | undefined;
    before(async () => {
      backend = await start();
    });
    after(async () => {
      await backend?.stop();
    });

    const db = () => {
      assert.ok(backend, `${name} did not start`);
      return backend;
    };

    async function fresh(t: { after: (fn: () => Promise<void>) => void }): Promise<{ storage: Storage; location: string }> {
      const location = await db().fresh();
      const storage = await db().open(location);
      t.after(() => storage.close());
      return { storage, location };
    }

    test("a new database is empty and records schema version 1", async (t) => {
      const { storage, location } = await fresh(t);
      assert.equal(await storage.latestBundle("kiosks"), null);
      assert.deepEqual(await storage.bundleHistory("kiosks", 10), []);
      assert.deepEqual(await storage.bundleGroups(), []);
      assert.deepEqual(await storage.listRevocations(), []);
      assert.equal(await storage.getNode(NODE), null);
      assert.deepEqual(await storage.listNodes(), []);
      assert.deepEqual(await storage.logHead(NODE), EMPTY);
      assert.deepEqual(await storage.getRecords(NODE, 1, 100), []);
      assert.equal(await storage.countRecords(NODE), 0);
      assert.deepEqual(await storage.listFindings({}), []);
      assert.deepEqual((await db().sql(location, "SELECT version FROM schema_version")).map((r) => Number(r.version)), [1, 2]);
    });

    test("bundles: the latest per group comes back byte-identical; history is newest first, limited, without archives", async (t) => {
      const { storage } = await fresh(t);
      const k1 = bundle("kiosks", 1);
      const k2 = bundle("kiosks", 2);
      const k10 = bundle("kiosks", 10);
      const lab = bundle("lab", 4);
      for (const b of [k2, lab, k10, k1]) await storage.putBundle(b);

      assert.deepEqual(await storage.latestBundle("kiosks"), k10);
      assert.deepEqual(await storage.latestBundle("lab"), lab);
      assert.equal(await storage.latestBundle("kiosk"), null, "no prefix matching");
      assert.deepEqual(await storage.bundleHistory("kiosks", 10), [k10, k2, k1].map(withoutArchive));
      assert.deepEqual(await storage.bundleHistory("kiosks", 2), [k10, k2].map(withoutArchive));
      assert.deepEqual(await storage.bundleMeta("kiosks", 2), withoutArchive(k2));
      assert.equal(await storage.bundleMeta("kiosks", 4), null);
      assert.equal(await storage.bundleMeta("lab", 2), null, "a revision of another group");
      assert.deepEqual(await storage.bundleGroups(), ["kiosks", "lab"]);
      await assert.rejects(storage.bundleHistory("kiosks", 0), refused("input", /limit is not an integer ≥ 1/));
    });

    test("a revision the group already has is a conflict and the stored bundle is kept", async (t) => {
      const { storage } = await fresh(t);
      const original = bundle("kiosks", 3);
      await storage.putBundle(original);
      await assert.rejects(
        storage.putBundle({ ...bundle("kiosks", 3, Buffer.from("other archive")), digest: "f".repeat(64) }),
        (err: unknown) => conflict("bundle-revision")(err) && /group kiosks already has revision 3/.test((err as Error).message),
      );
      assert.deepEqual(await storage.latestBundle("kiosks"), original);
      assert.deepEqual(await storage.bundleHistory("kiosks", 10), [withoutArchive(original)]);
      await storage.putBundle(bundle("lab", 3)); // the same revision in another group is not a conflict
      assert.deepEqual(await storage.bundleGroups(), ["kiosks", "lab"]);
    });

    test("a 5 MiB archive with every byte value round-trips byte-identical", async (t) => {
      const { storage } = await fresh(t);
      const archive = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(5 * 1024 * 1024)]);
      await storage.putBundle(bundle("kiosks", 1, archive));
      const loaded = await storage.latestBundle("kiosks");
      assert.ok(loaded);
      assert.ok(Buffer.isBuffer(loaded.archive));
      assert.equal(loaded.archive.length, archive.length);
      assert.ok(loaded.archive.equals(archive));
    });

    test("revocations get increasing ids and list oldest first, reasons kept exactly", async (t) => {
      const { storage } = await fresh(t);
      const second = await storage.addRevocation({ kind: "serial", value: "0a1b2c", reason: UNICODE, revokedAt: at(2000) });
      const first = await storage.addRevocation({ kind: "spiffe-id", value: ODD_NODE, reason: HOSTILE, revokedAt: at(1000) });
      assert.deepEqual(second, { id: second.id, kind: "serial", value: "0a1b2c", reason: UNICODE, revokedAt: at(2000) });
      assert.deepEqual(first, { id: first.id, kind: "spiffe-id", value: ODD_NODE, reason: HOSTILE, revokedAt: at(1000) });
      assert.ok(first.id > second.id);
      assert.deepEqual(await storage.listRevocations(), [first, second]);
      await assert.rejects(
        storage.addRevocation({ kind: "subject" as "serial", value: "x", reason: "r", revokedAt: at(0) }),
        refused("input", /revocation.kind/),
      );
      assert.equal((await storage.listRevocations()).length, 2);
    });

    test("touchNode creates a node, then keeps the claims of its latest contact; absent claims keep their value", async (t) => {
      const { storage, location } = await fresh(t);
      await storage.touchNode({ id: NODE, group: "kiosks", at: at(5000) });
      assert.deepEqual(await storage.getNode(NODE), {
        id: NODE, group: "kiosks", firstSeen: at(5000), lastContact: at(5000), claimed: { bundleRevision: null, stage: null, logSeq: null },
      });

      await storage.touchNode({ id: NODE, group: "kiosks", at: at(9000), claimed: { bundleRevision: 7, stage: "fresh", logSeq: 42 } });
      // A request that arrived earlier but finished later reports older state: it changes nothing.
      await storage.touchNode({ id: NODE, group: "lab", at: at(8000), claimed: { bundleRevision: 6, stage: "locked", logSeq: 41 } });
      assert.deepEqual(await storage.getNode(NODE), {
        id: NODE, group: "kiosks", firstSeen: at(5000), lastContact: at(9000), claimed: { bundleRevision: 7, stage: "fresh", logSeq: 42 },
      });

      await storage.touchNode({ id: NODE, group: "kiosks-eu", at: at(9500), claimed: { stage: "grace" } });
      await storage.touchNode({ id: NODE, group: "kiosks-eu", at: at(1000) }); // an earlier first contact, recorded late
      await storage.touchNode({ id: "spiffe://example.org/edge/node/a", group: "lab", at: at(1000) });
      assert.deepEqual(await storage.getNode(NODE), {
        id: NODE, group: "kiosks-eu", firstSeen: at(1000), lastContact: at(9500), claimed: { bundleRevision: 7, stage: "grace", logSeq: 42 },
      });
      // The columns say what they hold: the node's word, not the centre's.
      const [row] = await db().sql(location, "SELECT claimed_bundle_revision, claimed_stage, claimed_log_seq FROM nodes WHERE group_name = 'kiosks-eu'");
      assert.deepEqual([Number(row!.claimed_bundle_revision), row!.claimed_stage, Number(row!.claimed_log_seq)], [7, "grace", 42]);
      assert.deepEqual((await storage.listNodes()).map((n) => n.id), ["spiffe://example.org/edge/node/a", NODE]);
      assert.equal(await storage.getNode("spiffe://example.org/edge/node/kiosk-1"), null);
    });

    test("records: batches append, the head follows the last record, and lines come back byte-identical", async (t) => {
      const { storage } = await fresh(t);
      const first = chain(3);
      assert.deepEqual(await storage.appendRecords(NODE, EMPTY, first), headOf(first));
      // A later batch whose records are timed before the first batch's last one (a rewound clock): lastTime keeps the latest.
      const second = chain(4, headOf(first), -10_000);
      const head = await storage.appendRecords(NODE, headOf(first), second);
      assert.deepEqual(head, headOf(second, first[2]!.time));
      assert.deepEqual(await storage.logHead(NODE), head);

      assert.deepEqual(await storage.getRecords(NODE, 1, 7), [...first, ...second]);
      assert.deepEqual(await storage.getRecords(NODE, 3, 5), [first[2], second[0], second[1]]);
      assert.deepEqual(await storage.getRecords(NODE, 8, 20), []);
      assert.equal(await storage.countRecords(NODE), 7);
      assert.equal(await storage.countRecords("spiffe://example.org/edge/node/other"), 0);
      assert.deepEqual(await storage.logHead("spiffe://example.org/edge/node/other"), EMPTY);
    });

    test("a batch of 10,000 records, the most one upload carries, is stored in one append", async (t) => {
      const { storage } = await fresh(t);
      const batch = largeBatch();
      assert.deepEqual(await storage.appendRecords(NODE, EMPTY, batch), headOf(batch));
      assert.equal(await storage.countRecords(NODE), 10_000);
      assert.deepEqual(await storage.getRecords(NODE, 9_999, 10_001), batch.slice(-2));
    });

    test("an empty batch moves nothing, but still requires the expected head", async (t) => {
      const { storage } = await fresh(t);
      assert.deepEqual(await storage.appendRecords(NODE, EMPTY, []), EMPTY);
      const batch = chain(2);
      await storage.appendRecords(NODE, EMPTY, batch);
      assert.deepEqual(await storage.appendRecords(NODE, headOf(batch), []), headOf(batch));
      await assert.rejects(storage.appendRecords(NODE, EMPTY, []), conflict("head"));
    });

    test("a stale expected head is a conflict and nothing of the batch is stored", async (t) => {
      const { storage } = await fresh(t);
      const first = chain(2);
      await storage.appendRecords(NODE, EMPTY, first);
      const next = chain(2, headOf(first));
      await assert.rejects(
        storage.appendRecords(NODE, EMPTY, next),
        (err: unknown) => conflict("head")(err) && /moved to seq 2 .*read the head again/.test((err as Error).message),
      );
      await assert.rejects(storage.appendRecords(NODE, { ...headOf(first), ackHash: "f".repeat(64) }, next), conflict("head"));
      await assert.rejects(storage.appendRecords(NODE, { ...headOf(first), lastTime: null }, next), conflict("head"));
      assert.deepEqual(await storage.logHead(NODE), headOf(first));
      assert.equal(await storage.countRecords(NODE), 2);
    });

    test("a seq already stored is refused by the database and the whole batch rolls back", async (t) => {
      const { storage } = await fresh(t);
      const first = chain(3);
      await storage.appendRecords(NODE, EMPTY, first);
      // The caller's head is right, but the batch overlaps what is stored (seq 3 again, then 4).
      const overlapping = chain(2, headOf(first.slice(0, 2)));
      await assert.rejects(storage.appendRecords(NODE, headOf(first), overlapping), conflict("record-seq"));
      // A batch repeating a seq within itself.
      const next = chain(1, headOf(first));
      await assert.rejects(storage.appendRecords(NODE, headOf(first), [...next, ...next]), conflict("record-seq"));
      assert.deepEqual(await storage.logHead(NODE), headOf(first));
      assert.deepEqual(await storage.getRecords(NODE, 1, 10), first);
      // A node's first batch that repeats a seq leaves no head behind either.
      const fresh1 = chain(1, EMPTY, 500_000);
      await assert.rejects(storage.appendRecords(ODD_NODE, EMPTY, [...fresh1, ...fresh1]), conflict("record-seq"));
      assert.deepEqual(await storage.logHead(ODD_NODE), EMPTY);
      assert.equal(await storage.countRecords(ODD_NODE), 0);
    });

    test("uploads racing from one head: exactly one wins, on a node's first upload and on later ones", async (t) => {
      const { storage, location } = await fresh(t);
      // A second store on the same database, as a second control-plane process would be.
      const other = await db().open(location);
      t.after(() => other.close());

      for (const expected of [EMPTY, null]) {
        const head = expected ?? await storage.logHead(NODE);
        const batches = Array.from({ length: 6 }, (_, i) => chain(5 + i, head));
        const results = await Promise.allSettled(
          batches.map((b, i) => (i % 2 === 0 ? storage : other).appendRecords(NODE, head, b)),
        );
        const won = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
        assert.equal(won.length, 1, `exactly one upload wins: ${JSON.stringify(results.map((r) => r.status))}`);
        for (const r of results) if (r.status === "rejected") assert.ok(conflict("head")(r.reason), String(r.reason));
        const winner = batches[won[0]!]!;
        // lastTime never moves back: it is the later of the head's and the winning batch's.
        const after = headOf(winner);
        const lastTime = head.lastTime !== null && after.lastTime !== null && head.lastTime > after.lastTime ? head.lastTime : after.lastTime;
        assert.deepEqual(await storage.logHead(NODE), { ...after, lastTime });
        assert.deepEqual(await other.getRecords(NODE, head.ackSeq + 1, head.ackSeq + 100), winner);
      }
    });

    test("records whose hashes are stored under another node are refused as a copy, naming the holder; nothing is stored", async (t) => {
      const { storage } = await fresh(t);
      const theirs = chain(5);
      await storage.appendRecords(NODE, EMPTY, theirs);
      // Record hashes cover a unique request id and a time: the same hash under two nodes is a copy.
      await assert.rejects(storage.appendRecords(ODD_NODE, EMPTY, theirs), (err: unknown) =>
        conflict("record-hash")(err) && err instanceof ForeignRecordError
        && err.seq === 1 && err.holder === NODE && err.holderSeq === 1
        && /record seq 1 of .* is stored under .*kiosk-17 as its seq 1/.test(err.message));
      // Copied records after records of its own: the first copy is named, and the node's own records roll back with it.
      const own = chain(2, EMPTY, 700_000);
      await assert.rejects(storage.appendRecords(ODD_NODE, EMPTY, [...own, { ...theirs[3]!, seq: 3 }]), (err: unknown) =>
        err instanceof ForeignRecordError && err.seq === 3 && err.holderSeq === 4);
      assert.deepEqual(await storage.logHead(ODD_NODE), EMPTY);
      assert.equal(await storage.countRecords(ODD_NODE), 0);
      // The holder carries on; the other node with records of its own too.
      const more = chain(2, headOf(theirs), 5000);
      assert.deepEqual(await storage.appendRecords(NODE, headOf(theirs), more), headOf(more));
      assert.deepEqual(await storage.appendRecords(ODD_NODE, EMPTY, own), headOf(own));
    });

    test("two nodes storing the same records at once: one is stored, the other refused as a copy", async (t) => {
      const { storage, location } = await fresh(t);
      const other = await db().open(location);
      t.after(() => other.close());
      const records = chain(50);
      const results = await Promise.allSettled([storage.appendRecords(NODE, EMPTY, records), other.appendRecords(ODD_NODE, EMPTY, records)]);
      const won = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
      assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
      const [winner, loser] = won[0] === 0 ? [NODE, ODD_NODE] : [ODD_NODE, NODE];
      const refusal = results[1 - won[0]!] as PromiseRejectedResult;
      assert.ok(refusal.reason instanceof ForeignRecordError && refusal.reason.holder === winner, String(refusal.reason));
      assert.equal(await storage.countRecords(winner), 50);
      assert.equal(await storage.countRecords(loser), 0);
    });

    test("a version-1 database holding copies: the upgrade keeps them, marks them, reports them and refuses new ones", async () => {
      const location = await db().fresh();
      const shared = chain(3);
      const own = chain(1, EMPTY, 900_000);
      const values = (node: string, records: IngestRecord[]) =>
        records.map((r) => `('${node}', ${r.seq}, '${r.hash}', '${r.prev}', '${r.time}', '${r.line.replaceAll("'", "''")}')`).join(", ");
      const A = "spiffe://example.org/edge/node/a";
      const B = "spiffe://example.org/edge/node/b";
      await db().createVersion1(location, `
        INSERT INTO nodes (id, group_name, first_seen, last_contact, bundle_revision, stage, log_seq) VALUES ('${A}', 'kiosks', '${at(0)}', '${at(0)}', 5, 'grace', 3);
        INSERT INTO log_heads (node, ack_seq, ack_hash, last_time) VALUES ('${A}', 3, '${shared[2]!.hash}', '${shared[2]!.time}'), ('${B}', 3, '${shared[2]!.hash}', '${shared[2]!.time}');
        INSERT INTO records (node, seq, hash, prev, time, line) VALUES ${values(A, shared)}, ${values(B, shared)};
      `);
      const storage = await db().open(location);
      try {
        assert.deepEqual((await db().sql(location, "SELECT version FROM schema_version ORDER BY version")).map((r) => Number(r.version)), [1, 2]);
        assert.deepEqual((await storage.getNode(A))!.claimed, { bundleRevision: 5, stage: "grace", logSeq: 3 });
        // Nothing stored is deleted; one of the two nodes holding the same records is reported.
        assert.deepEqual(await storage.getRecords(A, 1, 3), shared);
        assert.deepEqual(await storage.getRecords(B, 1, 3), shared);
        const reported = await storage.listFindings({ kind: "upload-foreign-chain" });
        assert.equal(reported.length, 1, JSON.stringify(reported));
        const [finding] = reported;
        const holder = finding!.node === A ? B : A;
        assert.deepEqual([finding!.severity, finding!.seqFrom, finding!.seqTo], ["critical", 1, 3]);
        assert.ok(finding!.explanation.includes(holder), finding!.explanation);
        assert.ok(!Number.isNaN(Date.parse(finding!.createdAt)));
        // From now on a third copy is refused, and the nodes go on with records of their own.
        await assert.rejects(storage.appendRecords("spiffe://example.org/edge/node/c", EMPTY, shared), (err: unknown) =>
          err instanceof ForeignRecordError && err.holder === holder);
        for (const [node, startMs] of [[A, 100_000], [B, 200_000]] as const) {
          const next = chain(1, headOf(shared), startMs);
          assert.deepEqual(await storage.appendRecords(node, headOf(shared), next), headOf(next));
        }
        assert.deepEqual(await storage.appendRecords("spiffe://example.org/edge/node/c", EMPTY, own), headOf(own));
      } finally {
        await storage.close();
      }
    });

    test("findings: ids in order given, newest first, filters combine, limit defaults to 100 and stops at 1000", async (t) => {
      const { storage } = await fresh(t);
      const added = await storage.addFindings([
        finding(1, { severity: "critical", kind: "upload-fork", explanation: UNICODE }),
        finding(3, { node: ODD_NODE, severity: "high", kind: "revoked-caller-allowed", seqFrom: 10, seqTo: 12 }),
        finding(2, { seqFrom: null, seqTo: null }),
        finding(2, { severity: "high", kind: "clock-rewind" }),
      ]);
      assert.deepEqual(added.map(({ id: _, ...f }) => f), [
        finding(1, { severity: "critical", kind: "upload-fork", explanation: UNICODE }),
        finding(3, { node: ODD_NODE, severity: "high", kind: "revoked-caller-allowed", seqFrom: 10, seqTo: 12 }),
        finding(2, { seqFrom: null, seqTo: null }),
        finding(2, { severity: "high", kind: "clock-rewind" }),
      ]);
      const [a, b, c, d] = added as [Finding, Finding, Finding, Finding];
      assert.ok(a.id < b.id && b.id < c.id && c.id < d.id);

      assert.deepEqual(await storage.listFindings({}), [b, d, c, a], "by createdAt, then the later id");
      assert.deepEqual(await storage.listFindings({ node: NODE }), [d, c, a]);
      assert.deepEqual(await storage.listFindings({ node: ODD_NODE }), [b]);
      assert.deepEqual(await storage.listFindings({ severity: "high" }), [b, d]);
      assert.deepEqual(await storage.listFindings({ severity: "high", node: NODE }), [d]);
      assert.deepEqual(await storage.listFindings({ kind: "upload-fork", severity: "critical", node: NODE }), [a]);
      assert.deepEqual(await storage.listFindings({ kind: "upload-fork", severity: "low" }), []);
      assert.deepEqual(await storage.listFindings({ limit: 2 }), [b, d]);
      assert.deepEqual(await storage.addFindings([]), []);

      await storage.addFindings(Array.from({ length: 1001 }, (_, i) => finding(100 + i)));
      const newest = await storage.listFindings({});
      assert.equal(newest.length, 100);
      assert.equal(newest[0]!.createdAt, at(1100 * 1000));
      assert.equal((await storage.listFindings({ limit: 5000 })).length, 1000);
      assert.equal((await storage.listFindings({ limit: 1000, node: ODD_NODE })).length, 1);
      for (const limit of [0, -1, 1.5, Number.NaN]) {
        await assert.rejects(storage.listFindings({ limit }), refused("input", /limit is not an integer ≥ 1/));
      }
    });

    test("hostile text is data: quotes, SQL and unicode round-trip, tables survive, filters match literally", async (t) => {
      const { storage, location } = await fresh(t);
      const [f] = await storage.addFindings([finding(1, { node: HOSTILE, kind: HOSTILE, explanation: UNICODE })]);
      await storage.addRevocation({ kind: "spiffe-id", value: HOSTILE, reason: HOSTILE, revokedAt: at(0) });
      await storage.touchNode({ id: HOSTILE, group: HOSTILE, at: at(0), claimed: { stage: HOSTILE } });
      await storage.putBundle({ ...bundle(HOSTILE, 1), name: UNICODE });

      assert.deepEqual(await storage.listFindings({ node: HOSTILE, kind: HOSTILE }), [f]);
      assert.deepEqual(await storage.listFindings({ node: "' OR '1'='1" }), []);
      assert.deepEqual(await storage.listFindings({ severity: "low' OR 1=1 --" }), []);
      assert.equal((await storage.listRevocations())[0]!.reason, HOSTILE);
      assert.equal((await storage.getNode(HOSTILE))!.claimed.stage, HOSTILE);
      assert.equal((await storage.latestBundle(HOSTILE))!.name, UNICODE);
      const tables = await db().sql(location, "SELECT count(*) AS n FROM findings");
      assert.equal(Number(tables[0]!.n), 1);
    });

    test("a node id with odd characters works everywhere a node id is used", async (t) => {
      const { storage } = await fresh(t);
      await storage.touchNode({ id: ODD_NODE, group: "kiosks", at: at(0), claimed: { logSeq: 2 } });
      const records = chain(2);
      await storage.appendRecords(ODD_NODE, EMPTY, records);
      await storage.addFindings([finding(1, { node: ODD_NODE })]);
      assert.equal((await storage.getNode(ODD_NODE))!.id, ODD_NODE);
      assert.deepEqual((await storage.listNodes()).map((n) => n.id), [ODD_NODE]);
      assert.deepEqual(await storage.logHead(ODD_NODE), headOf(records));
      assert.deepEqual(await storage.getRecords(ODD_NODE, 1, 2), records);
      assert.equal(await storage.countRecords(ODD_NODE), 2);
      assert.equal((await storage.listFindings({ node: ODD_NODE })).length, 1);
      // Neither a prefix nor a LIKE pattern matches it.
      assert.equal(await storage.getNode(ODD_NODE.slice(0, -2)), null);
      assert.equal(await storage.countRecords("spiffe://example.org/edge/node/k%"), 0);
    });

    test("malformed input is refused before anything is written", async (t) => {
      const { storage } = await fresh(t);
      const badTimes = ["2026-11-23T00:00:00Z", "2026-11-23T00:00:00.000+01:00", "2026-02-30T00:00:00.000Z", "2026-11-23 00:00:00.000Z", ""];
      for (const time of badTimes) {
        await assert.rejects(storage.putBundle({ ...bundle("kiosks", 1), createdAt: time }), refused("input", /bundle.createdAt is not an RFC 3339/));
        await assert.rejects(storage.touchNode({ id: NODE, group: "kiosks", at: time }), refused("input", /node.at/));
        await assert.rejects(storage.addFindings([finding(1), finding(2, { createdAt: time })]), refused("input", /finding.createdAt/));
        await assert.rejects(storage.appendRecords(NODE, EMPTY, chain(2).map((r) => ({ ...r, time }))), refused("input", /record.time/));
      }
      await assert.rejects(storage.addFindings([finding(1, { severity: "urgent" as "low" })]), refused("input", /finding.severity/));
      await assert.rejects(storage.putBundle({ ...bundle("kiosks", 1), revision: -1 }), refused("input", /bundle.revision is not an integer ≥ 0/));
      await assert.rejects(storage.putBundle({ ...bundle("kiosks", 1), revision: 2 ** 53 }), refused("input", /bundle.revision/));
      await assert.rejects(storage.appendRecords(NODE, EMPTY, [{ ...chain(1)[0]!, seq: 0 }]), refused("input", /record.seq is not an integer ≥ 1/));
      await assert.rejects(storage.addRevocation({ kind: "serial", value: "01", reason: "a\0b", revokedAt: at(0) }), refused("input", /NUL/));
      await assert.rejects(storage.getNode(`${NODE}\0`), refused("input", /NUL/));

      assert.equal(await storage.latestBundle("kiosks"), null);
      assert.equal(await storage.getNode(NODE), null);
      assert.deepEqual(await storage.listFindings({}), []);
      assert.deepEqual(await storage.listRevocations(), []);
      assert.deepEqual(await storage.logHead(NODE), EMPTY);
    });

    test("data survives close and reopen; opening again migrates nothing twice", async () => {
      const location = await db().fresh();
      const first = await db().open(location);
      const records = chain(3);
      await first.putBundle(bundle("kiosks", 1));
      await first.appendRecords(NODE, EMPTY, records);
      await first.touchNode({ id: NODE, group: "kiosks", at: at(0) });
      const revocation = await first.addRevocation({ kind: "serial", value: "01", reason: "lost", revokedAt: at(0) });
      const findings = await first.addFindings([finding(1)]);
      await first.close();
      await first.close(); // closing twice is harmless

      const [again, concurrently] = await Promise.all([db().open(location), db().open(location)]);
      try {
        for (const storage of [again, concurrently]) {
          assert.deepEqual(await storage.latestBundle("kiosks"), bundle("kiosks", 1));
          assert.deepEqual(await storage.logHead(NODE), headOf(records));
          assert.deepEqual(await storage.getRecords(NODE, 1, 3), records);
          assert.deepEqual(await storage.listRevocations(), [revocation]);
          assert.deepEqual(await storage.listFindings({}), findings);
          assert.equal((await storage.getNode(NODE))!.group, "kiosks");
        }
        // Ids continue after the reopen rather than restart.
        const [next] = await again.addFindings([finding(2)]);
        assert.ok(next!.id > findings[0]!.id);
      } finally {
        await again.close();
        await concurrently.close();
      }
      assert.deepEqual((await db().sql(location, "SELECT version FROM schema_version ORDER BY version")).map((r) => Number(r.version)), [1, 2]);
    });

    test("a database migrated by a newer edgeward is refused", async () => {
      const location = await db().fresh();
      await (await db().open(location)).close();
      await db().sql(location, "INSERT INTO schema_version (version, applied_at) VALUES (99, '2030-01-01T00:00:00.000Z')");
      await assert.rejects(db().open(location), refused("schema", /schema version 99, newer than this edgeward knows \(2\): upgrade edgeward/));
    });
  });
}

storageSuite("SQLite storage", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-storage-"));
  let databases = 0;
  return {
    async fresh() {
      databases += 1;
      return join(dir, `db-${databases}`, "controlplane.db");
    },
    open: openSqliteStorage,
    async sql(location, text) {
      const raw = new DatabaseSync(location);
      try {
        return raw.prepare(text).all() as Row[];
      } finally {
        raw.close();
      }
    },
    async createVersion1(location, plant) {
      mkdirSync(dirname(location), { recursive: true });
      const raw = new DatabaseSync(location);
      try {
        raw.exec(SCHEMA_VERSION_TABLE_SQLITE);
        raw.exec(SQLITE_MIGRATIONS[0]!);
        raw.exec(`INSERT INTO schema_version (version, applied_at) VALUES (1, '${at(0)}'); ${plant}`);
      } finally {
        raw.close();
      }
    },
    async stop() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

storageSuite("PostgreSQL storage", async () => {
  const server = await startPostgres();
  return {
    fresh: () => server.freshDatabase(),
    open: openPostgresStorage,
    async sql(location, text) {
      const client = new pg.Client({ connectionString: location });
      await client.connect();
      try {
        return (await client.query(text)).rows as Row[];
      } finally {
        await client.end();
      }
    },
    async createVersion1(location, plant) {
      const client = new pg.Client({ connectionString: location });
      await client.connect();
      try {
        await client.query(`${SCHEMA_VERSION_TABLE_POSTGRES}; ${POSTGRES_MIGRATIONS[0]!}; INSERT INTO schema_version (version, applied_at) VALUES (1, now()); ${plant}`);
      } finally {
        await client.end();
      }
    },
    stop: () => server.stop(),
  };
});

describe("SQLite storage on disk", () => {
  test("creates its directory 0700 and leaves the database in WAL mode", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "edgeward-storage-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "data", "controlplane.db");
    const storage = await openSqliteStorage(path);
    await storage.touchNode({ id: NODE, group: "kiosks", at: at(0) });
    assert.equal(statSync(join(dir, "data")).mode & 0o777, 0o700);
    await storage.close();
    const raw = new DatabaseSync(path);
    try {
      assert.equal((raw.prepare("PRAGMA journal_mode").get() as Row).journal_mode, "wal");
    } finally {
      raw.close();
    }
  });
});
