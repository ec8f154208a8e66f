import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import fc from "fast-check";
import { anchorPath, DecisionLog, DecisionLogError, GENESIS_HASH, verifyLogFile } from "../../src/decision-log/index.ts";
import type { DecisionRecord } from "../../src/decision-log/index.ts";
import { main } from "../../src/cli/main.ts";
import { entry, tempDir } from "./fixtures.ts";

const DAY = 24 * 3600 * 1000;
const NOW = Date.UTC(2026, 5, 1);
const LIMITS = { maxRecords: 1000, maxBytes: 1024 * 1024 };

async function writeLog(path: string, n: number, time?: (i: number) => string): Promise<DecisionRecord[]> {
  const log = await DecisionLog.open(path);
  const records: DecisionRecord[] = [];
  for (let i = 1; i <= n; i++) records.push(await log.append(entry(i, time === undefined ? {} : { time: time(i) })));
  await log.close();
  return records;
}

function fileSeqs(path: string): number[] {
  return readFileSync(path, "utf8").split("\n").slice(0, -1).map((l) => (JSON.parse(l) as DecisionRecord).seq);
}

function lines(path: string): string[] {
  return readFileSync(path, "utf8").split("\n").slice(0, -1);
}

function rejectsWith(check: string, message?: RegExp) {
  return (err: unknown) => err instanceof DecisionLogError && err.check === check && (message === undefined || message.test(err.message));
}

async function cli(argv: string[], cwd: string) {
  let out = "";
  let err = "";
  const code = await main(argv, { stdout: (s) => (out += s), stderr: (s) => (err += s), cwd });
  return { code, out, err };
}

describe("DecisionLog.prune", () => {
  test("removes the records up to the seq, writes the anchor, and the log verifies and continues from it", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 10);
    const log = await DecisionLog.open(path);
    assert.deepEqual(await log.prune(6), { seq: 6, hash: records[5]!.hash });
    assert.deepEqual(fileSeqs(path), [7, 8, 9, 10]);
    assert.equal(readFileSync(anchorPath(path), "utf8"), `{"seq":6,"hash":"${records[5]!.hash}"}\n`);
    assert.equal(statSync(anchorPath(path)).mode & 0o777, 0o600);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(log.anchor, { seq: 6, hash: records[5]!.hash });
    assert.equal(log.lastSeq, 10);
    const next = await log.append(entry(11));
    assert.deepEqual([next.seq, next.prev], [11, records[9]!.hash]);
    await log.close();
    assert.deepEqual(await verifyLogFile(path), { ok: true, records: 5, lastSeq: 11, lastHash: next.hash, anchor: { seq: 6, hash: records[5]!.hash } });
    const reopened = await DecisionLog.open(path);
    assert.deepEqual([reopened.lastSeq, reopened.lastHash, reopened.anchor], [11, next.hash, { seq: 6, hash: records[5]!.hash }]);
    await reopened.close();
    assert.equal(existsSync(`${path}.prune`), false);
  });

  test("pruning every record leaves an empty log whose anchor carries the chain", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 3);
    const log = await DecisionLog.open(path);
    await log.prune(3);
    await log.close();
    assert.equal(readFileSync(path, "utf8"), "");
    assert.deepEqual(await verifyLogFile(path), { ok: true, records: 0, lastSeq: 3, lastHash: records[2]!.hash, anchor: { seq: 3, hash: records[2]!.hash } });
    const reopened = await DecisionLog.open(path);
    assert.deepEqual([reopened.lastSeq, reopened.lastHash], [3, records[2]!.hash]);
    const next = await reopened.append(entry(4));
    assert.deepEqual([next.seq, next.prev], [4, records[2]!.hash]);
    await reopened.close();
    assert.deepEqual(fileSeqs(path), [4]);
  });

  test("a second prune moves the anchor on; a prune at or below it does nothing", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 10);
    const log = await DecisionLog.open(path);
    await log.prune(4);
    assert.equal(await log.prune(4), null);
    assert.equal(await log.prune(2), null);
    assert.deepEqual(await log.prune(8), { seq: 8, hash: records[7]!.hash });
    await log.close();
    assert.deepEqual(fileSeqs(path), [9, 10]);
    assert.deepEqual((await verifyLogFile(path)).ok, true);
  });

  test("refuses a seq that is not a durable record, and after close", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    await writeLog(path, 3);
    const log = await DecisionLog.open(path);
    await assert.rejects(log.prune(4), rejectsWith("prune", /record seq 4 is not in the log \(its last durable record is seq 3\)/));
    await assert.rejects(log.prune(0), rejectsWith("prune", /positive integer/));
    await assert.rejects(log.prune(1.5), rejectsWith("prune", /positive integer/));
    await log.close();
    await assert.rejects(log.prune(1), rejectsWith("closed"));
    assert.deepEqual(fileSeqs(path), [1, 2, 3]);
  });

  test("appends made while a prune swaps the file all land, in order, in the new file", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    await writeLog(path, 20);
    const log = await DecisionLog.open(path);
    const appends: Promise<DecisionRecord>[] = [];
    for (let i = 21; i <= 60; i++) appends.push(log.append(entry(i)));
    const pruned = log.prune(15);
    for (let i = 61; i <= 100; i++) appends.push(log.append(entry(i)));
    const written = await Promise.all(appends);
    await pruned;
    await log.close();
    assert.deepEqual(written.map((r) => r.seq), Array.from({ length: 80 }, (_, i) => i + 21));
    assert.deepEqual(fileSeqs(path), Array.from({ length: 85 }, (_, i) => i + 16));
    const verified = await verifyLogFile(path);
    assert.ok(verified.ok && verified.lastSeq === 100 && verified.lastHash === written.at(-1)!.hash);
  });

  test("a leftover copy and anchor temp file from an interrupted prune are removed on open", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    await writeLog(path, 3);
    writeFileSync(`${path}.prune`, "half a copy");
    writeFileSync(`${anchorPath(path)}.tmp`, "{\"seq\":");
    const log = await DecisionLog.open(path);
    assert.equal(log.lastSeq, 3);
    await log.close();
    assert.equal(existsSync(`${path}.prune`), false);
    assert.equal(existsSync(`${anchorPath(path)}.tmp`), false);
  });
});

describe("anchors: crash between the anchor and the rename, tampering", () => {
  test("the whole log beside a newer anchor (crash after the anchor was written) opens, verifies and prunes on", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 10);
    writeFileSync(anchorPath(path), JSON.stringify({ seq: 6, hash: records[5]!.hash }));
    assert.deepEqual(await verifyLogFile(path), { ok: true, records: 10, lastSeq: 10, lastHash: records[9]!.hash, anchor: { seq: 6, hash: records[5]!.hash } });
    const log = await DecisionLog.open(path);
    assert.equal(log.lastSeq, 10);
    assert.equal(await log.prune(5), null, "at or below the anchor: already pruned");
    await log.prune(8);
    await log.close();
    assert.deepEqual(fileSeqs(path), [9, 10]);
    assert.equal((await verifyLogFile(path)).ok, true);
  });

  test("the same after an earlier prune: the log starts after the old anchor, before the new one", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 10);
    const log = await DecisionLog.open(path);
    await log.prune(3);
    await log.close();
    writeFileSync(anchorPath(path), JSON.stringify({ seq: 7, hash: records[6]!.hash }));
    const reopened = await DecisionLog.open(path);
    assert.deepEqual([reopened.lastSeq, reopened.anchor?.seq], [10, 7]);
    await reopened.close();
    assert.equal((await verifyLogFile(path)).ok, true);
  });

  test("a log whose first record does not continue the anchor is refused with check anchor", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 6);
    const log = await DecisionLog.open(path);
    await log.prune(3);
    await log.close();
    writeFileSync(anchorPath(path), JSON.stringify({ seq: 3, hash: records[0]!.hash }));
    const verified = await verifyLogFile(path);
    assert.deepEqual(verified.ok ? null : [verified.check, verified.seq, verified.line], ["anchor", 4, 1]);
    await assert.rejects(DecisionLog.open(path), rejectsWith("anchor", /record seq 4 \(line 1\): prev does not match the anchor's hash \(seq 3\)/));
    const dir = join(path, "..");
    assert.deepEqual(await cli(["log", "verify", "decisions.log"], dir), {
      code: 1, out: "",
      err: "log verify: record seq 4 (line 1): prev does not match the anchor's hash (seq 3) — the anchor or the start of the log was replaced\n",
    });
  });

  test("records removed between the anchor and the log's first record are refused with check anchor", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 6);
    const log = await DecisionLog.open(path);
    await log.prune(4);
    await log.close();
    writeFileSync(anchorPath(path), JSON.stringify({ seq: 2, hash: records[1]!.hash }));
    await assert.rejects(DecisionLog.open(path), rejectsWith("anchor", /starts at seq 5, after its anchor at seq 2/));
  });

  test("a whole log whose record at the anchor's seq differs, or that ends before it, is refused", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 6);
    writeFileSync(anchorPath(path), JSON.stringify({ seq: 4, hash: records[2]!.hash }));
    await assert.rejects(DecisionLog.open(path), rejectsWith("anchor", /record seq 4 does not match the anchor's hash/));
    writeFileSync(anchorPath(path), JSON.stringify({ seq: 9, hash: records[2]!.hash }));
    const verified = await verifyLogFile(path);
    assert.deepEqual(verified.ok ? null : [verified.check, verified.message], ["anchor", "the log ends at seq 6, before its anchor at seq 9 — records were removed"]);
  });

  test("a pruned log without its anchor no longer starts at seq 1 and is refused", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    await writeLog(path, 5);
    const log = await DecisionLog.open(path);
    await log.prune(2);
    await log.close();
    writeFileSync(anchorPath(path), "");
    await assert.rejects(DecisionLog.open(path), rejectsWith("anchor", /decisions\.log\.anchor: not JSON/));
    for (const [text, problem] of [
      ["[1]", "not a JSON object"],
      [`{"seq":0,"hash":"${GENESIS_HASH}"}`, "seq is not a positive integer"],
      [`{"seq":2,"hash":"ABC"}`, "hash is not a lowercase sha256 hex digest"],
      [`{"seq":2,"hash":"${GENESIS_HASH}","note":"x"}`, "unknown field \"note\""],
      [`{"seq":2,"hash":"${GENESIS_HASH}"}${" ".repeat(2000)}`, "more than an anchor's 1024"],
    ] as const) {
      writeFileSync(anchorPath(path), text);
      await assert.rejects(verifyLogFile(path), rejectsWith("anchor", new RegExp(problem.replace(/[()]/g, "\\$&"))), text.slice(0, 40));
    }
    const { rmSync } = await import("node:fs");
    rmSync(anchorPath(path));
    await assert.rejects(DecisionLog.open(path), rejectsWith("sequence", /expected seq 1, found 3/));
  });

  test("edgeward log verify reports a pruned log as intact from its anchor", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "decisions.log");
    const records = await writeLog(path, 5);
    const log = await DecisionLog.open(path);
    await log.prune(2);
    await log.close();
    assert.deepEqual(await cli(["log", "verify", "decisions.log"], dir), {
      code: 0, err: "",
      out: `ok: 3 records (pruned through seq 2, verified from its anchor), last seq 5, head ${records[4]!.hash}\n`,
    });
  });
});

describe("DecisionLog.readAfter", () => {
  test("reads durable lines after a record in bounded batches, exactly as they are in the file", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 10);
    const file = lines(path);
    const log = await DecisionLog.open(path);
    const first = await log.readAfter({ seq: 0, hash: GENESIS_HASH }, { maxRecords: 4, maxBytes: 1 << 20 });
    assert.deepEqual([first.lines, first.hashes, first.firstSeq], [file.slice(0, 4), records.slice(0, 4).map((r) => r.hash), 1]);
    assert.equal(first.bytes, file.slice(0, 4).join("\n").length + 1);
    const second = await log.readAfter({ seq: 4, hash: records[3]!.hash }, { maxRecords: 4, maxBytes: 1 << 20 });
    assert.deepEqual(second.lines, file.slice(4, 8));
    const byBytes = await log.readAfter({ seq: 8, hash: records[7]!.hash }, { maxRecords: 100, maxBytes: file[8]!.length + 1 });
    assert.deepEqual(byBytes.lines, [file[8]]);
    const tiny = await log.readAfter({ seq: 8, hash: records[7]!.hash }, { maxRecords: 100, maxBytes: 1 });
    assert.deepEqual(tiny.lines, [file[8]], "the first record goes whatever its size");
    const none = await log.readAfter({ seq: 10, hash: records[9]!.hash }, LIMITS);
    assert.deepEqual(none.lines, []);
    await log.close();
  });

  test("refuses a starting point that is not this log's: ahead, another hash, pruned", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 10);
    const log = await DecisionLog.open(path);
    await assert.rejects(log.readAfter({ seq: 11, hash: records[9]!.hash }, LIMITS), rejectsWith("ahead", /seq 11 is beyond the log's last record \(seq 10\)/));
    await assert.rejects(log.readAfter({ seq: 10, hash: records[8]!.hash }, LIMITS), rejectsWith("chain"));
    await assert.rejects(log.readAfter({ seq: 3, hash: records[8]!.hash }, LIMITS), rejectsWith("chain", /record seq 3 is not the one expected/));
    await assert.rejects(log.readAfter({ seq: 0, hash: records[8]!.hash }, LIMITS), rejectsWith("chain", /record seq 1 does not follow/));
    await log.prune(5);
    await assert.rejects(log.readAfter({ seq: 2, hash: records[1]!.hash }, LIMITS), rejectsWith("pruned", /no longer holds record seq 3 \(it starts at seq 6\)/));
    assert.deepEqual((await log.readAfter({ seq: 5, hash: records[4]!.hash }, LIMITS)).firstSeq, 6);
    await log.close();
  });

  test("a remembered position from before a prune is not trusted", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 12);
    const log = await DecisionLog.open(path);
    await log.readAfter({ seq: 0, hash: GENESIS_HASH }, { maxRecords: 8, maxBytes: 1 << 20 });
    await log.prune(6);
    const batch = await log.readAfter({ seq: 8, hash: records[7]!.hash }, LIMITS);
    assert.deepEqual(batch.hashes, records.slice(8).map((r) => r.hash));
    await log.close();
  });

  test("never returns a record that is not yet durable", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    await writeLog(path, 10);
    const log = await DecisionLog.open(path);
    const appends = [log.append(entry(11)), log.append(entry(12))];
    const batch = await log.readAfter({ seq: 0, hash: GENESIS_HASH }, LIMITS);
    assert.equal(batch.lines.length, 10);
    await Promise.all(appends);
    assert.equal((await log.readAfter({ seq: 0, hash: GENESIS_HASH }, LIMITS)).lines.length, 12);
    await log.close();
  });
});

describe("DecisionLog.applyRetention", () => {
  const old = (i: number) => new Date(NOW - 10 * DAY + i).toISOString();
  const young = (i: number) => new Date(NOW - DAY + i).toISOString();
  const cutoff = NOW - 7 * DAY;

  test("keeps records younger than the cutoff", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    const records = await writeLog(path, 10, (i) => (i <= 6 ? old(i) : young(i)));
    const log = await DecisionLog.open(path);
    assert.deepEqual(await log.applyRetention(10, cutoff), { seq: 6, hash: records[5]!.hash });
    await log.close();
    assert.deepEqual(fileSeqs(path), [7, 8, 9, 10]);
  });

  test("keeps unacknowledged records however old", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    await writeLog(path, 10, old);
    const log = await DecisionLog.open(path);
    assert.equal((await log.applyRetention(4, cutoff))?.seq, 4);
    assert.equal(await log.applyRetention(4, cutoff), null);
    assert.equal(await log.applyRetention(0, cutoff), null);
    await log.close();
    assert.deepEqual(fileSeqs(path), [5, 6, 7, 8, 9, 10]);
  });

  test("a young record stops the run even when older ones follow it (the clock went back)", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    await writeLog(path, 10, (i) => (i === 4 ? young(i) : old(i)));
    const log = await DecisionLog.open(path);
    assert.equal((await log.applyRetention(10, cutoff))?.seq, 3);
    await log.close();
    assert.deepEqual(fileSeqs(path), [4, 5, 6, 7, 8, 9, 10]);
  });

  test("waits until the records to remove are a quarter of the file, then resumes its scan where it stopped", async (t) => {
    const path = join(tempDir(t), "decisions.log");
    await writeLog(path, 10, (i) => (i === 1 ? old(i) : young(i)));
    const log = await DecisionLog.open(path);
    assert.equal(await log.applyRetention(10, cutoff), null);
    assert.deepEqual(fileSeqs(path), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // A day later records 2..4 are old too: 4 of 10 records make the rewrite worth it.
    assert.equal((await log.applyRetention(10, NOW - DAY + 4))?.seq, 4);
    // An earlier cutoff (the clock went back) is not answered from the remembered scan.
    assert.equal(await log.applyRetention(10, cutoff), null);
    await log.close();
    assert.deepEqual(fileSeqs(path), [5, 6, 7, 8, 9, 10]);
  });
});

describe("prune properties", () => {
  test("any interleaving of appends and prunes: the file verifies and holds every record after the last prune", async (t) => {
    const dir = tempDir(t);
    let run = 0;
    const op = fc.oneof(
      fc.record({ kind: fc.constant("append" as const), n: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ kind: fc.constant("prune" as const), back: fc.nat({ max: 8 }) }),
      fc.record({ kind: fc.constant("settle" as const) }),
    );
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 14 }), async (ops) => {
      const path = join(dir, `run-${run++}.log`);
      const log = await DecisionLog.open(path);
      const appends: Promise<DecisionRecord>[] = [];
      const prunes: Promise<unknown>[] = [];
      let pruneTo = 0;
      let next = 1;
      for (const o of ops) {
        if (o.kind === "append") {
          for (let k = 0; k < o.n; k++) appends.push(log.append(entry(next++)));
        } else if (o.kind === "prune") {
          const target = log.lastSeq - o.back;
          if (target >= 1) {
            pruneTo = Math.max(pruneTo, target);
            prunes.push(log.prune(target));
          }
        } else {
          await new Promise((r) => setImmediate(r));
        }
      }
      const written = await Promise.all(appends);
      await Promise.all(prunes);
      await log.close();
      const last = next - 1;
      const verified = await verifyLogFile(path);
      assert.ok(verified.ok, JSON.stringify(verified));
      assert.equal(verified.lastSeq, last);
      assert.equal(verified.anchor?.seq ?? 0, pruneTo);
      assert.deepEqual(fileSeqs(path), Array.from({ length: last - pruneTo }, (_, i) => pruneTo + 1 + i));
      assert.deepEqual(lines(path).map((l) => JSON.parse(l).hash), written.slice(pruneTo).map((r) => r.hash));
      const reopened = await DecisionLog.open(path);
      assert.equal(reopened.lastSeq, last);
      await reopened.close();
    }), { numRuns: 40 });
  });
});
