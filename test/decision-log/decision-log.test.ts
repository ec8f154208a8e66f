import assert from "node:assert/strict";
import fs, { appendFileSync, existsSync, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { syncBuiltinESMExports } from "node:module";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  DecisionLog, DecisionLogError, GENESIS_HASH, MAX_RECORD_BYTES, sealRecord, serializeRecord, verifyLogFile,
} from "../../src/decision-log/index.ts";
import { waitFor } from "../support/wait.ts";
import { entry, tempDir } from "./fixtures.ts";

async function writeLog(path: string, n: number): Promise<string[]> {
  const log = await DecisionLog.open(path);
  for (let i = 1; i <= n; i++) await log.append(entry(i));
  await log.close();
  return readFileSync(path, "utf8").split("\n").slice(0, -1);
}

function rejectsWith(check: string, message: RegExp) {
  return (err: unknown) => err instanceof DecisionLogError && err.check === check && message.test(err.message);
}

describe("DecisionLog.open", () => {
  test("creates the file 0600 in a new 0700 directory, empty at genesis", async (t) => {
    const path = join(tempDir(t), "logs", "decisions.jsonl");
    const log = await DecisionLog.open(path);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(path, "..")).mode & 0o777, 0o700);
    assert.equal(log.lastSeq, 0);
    assert.equal(log.lastHash, GENESIS_HASH);
    await log.close();
    assert.equal(readFileSync(path, "utf8"), "");
  });

  test("appends sealed records, one JSON line each, and reopening continues the chain", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const log = await DecisionLog.open(path);
    const first = await log.append(entry(1));
    const second = await log.append(entry(2));
    assert.equal(first.seq, 1);
    assert.equal(first.prev, GENESIS_HASH);
    assert.equal(second.prev, first.hash);
    assert.equal(log.lastSeq, 2);
    assert.equal(log.lastHash, second.hash);
    await log.close();
    assert.equal(readFileSync(path, "utf8"), `${serializeRecord(first)}\n${serializeRecord(second)}\n`);

    const reopened = await DecisionLog.open(path);
    assert.equal(reopened.lastSeq, 2);
    assert.equal(reopened.lastHash, second.hash);
    const third = await reopened.append(entry(3));
    assert.deepEqual([third.seq, third.prev], [3, second.hash]);
    await reopened.close();
    assert.deepEqual(await verifyLogFile(path), { ok: true, records: 3, lastSeq: 3, lastHash: third.hash });
  });

  test("an invalid entry is rejected without using up a sequence number", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const log = await DecisionLog.open(path);
    await assert.rejects(log.append(entry(1, { time: "yesterday" })), rejectsWith("entry", /time is not an RFC 3339/));
    assert.equal((await log.append(entry(2))).seq, 1);
    await log.close();
  });

  test("a torn last record (no trailing newline) is cut off, kept in .torn, and the chain continues", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const good = await writeLog(path, 3);
    const torn = serializeRecord(sealRecord(entry(4), 4, JSON.parse(good[2]!).hash)).slice(0, 50);
    appendFileSync(path, torn);
    const repairs: number[] = [];
    const log = await DecisionLog.open(path, { onRepair: ({ droppedBytes }) => repairs.push(droppedBytes) });
    assert.deepEqual(repairs, [50]);
    assert.equal(readFileSync(`${path}.torn`, "utf8"), torn);
    assert.equal(statSync(`${path}.torn`).mode & 0o777, 0o600);
    assert.equal(log.lastSeq, 3);
    const next = await log.append(entry(4));
    assert.equal(next.seq, 4);
    await log.close();
    assert.deepEqual(await verifyLogFile(path), { ok: true, records: 4, lastSeq: 4, lastHash: next.hash });
  });

  test("a complete last record that lost only its newline is dropped too (it was never acknowledged)", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    await writeLog(path, 3);
    const size = statSync(path).size;
    truncateSync(path, size - 1);
    const repairs: number[] = [];
    const log = await DecisionLog.open(path, { onRepair: ({ droppedBytes }) => repairs.push(droppedBytes) });
    assert.equal(log.lastSeq, 2);
    assert.equal(repairs.length, 1);
    await log.close();
  });

  test("a final newline-terminated line that does not parse or hash is repaired", async (t) => {
    const dir = tempDir(t);
    for (const [name, mutate] of [
      ["garbage", () => "\u0000\u0000\u0000"],
      ["edited", (l: string) => l.replace("req-3", "req-X")],
    ] as const) {
      const path = join(dir, `${name}.jsonl`);
      const good = await writeLog(path, 3);
      const bad = `${mutate(good[2]!)}\n`;
      writeFileSync(path, `${good[0]}\n${good[1]}\n${bad}`);
      const repairs: number[] = [];
      const log = await DecisionLog.open(path, { onRepair: ({ droppedBytes }) => repairs.push(droppedBytes) });
      assert.deepEqual(repairs, [Buffer.byteLength(bad)]);
      assert.equal(log.lastSeq, 2);
      await log.close();
    }
  });

  test("repairs append to an existing .torn file rather than overwrite it", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    await writeLog(path, 1);
    appendFileSync(path, "first-torn");
    await (await DecisionLog.open(path)).close();
    appendFileSync(path, "second-torn");
    await (await DecisionLog.open(path)).close();
    assert.equal(readFileSync(`${path}.torn`, "utf8"), "first-tornsecond-torn");
  });

  test("corruption before the last line refuses to open, naming the first bad seq", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const good = await writeLog(path, 20);
    const edited = [...good];
    edited[16] = edited[16]!.replace('"reason":"rule 0 matched"', '"reason":"rule 1 matched"');
    writeFileSync(path, `${edited.join("\n")}\n`);
    await assert.rejects(
      DecisionLog.open(path),
      rejectsWith("hash", /record seq 17 \(line 17\): hash mismatch — the record was edited; refusing to open/),
    );
    assert.equal(existsSync(`${path}.torn`), false);
    assert.equal(readFileSync(path, "utf8"), `${edited.join("\n")}\n`, "nothing is repaired");
  });

  test("a torn line before the last line is not repaired", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const good = await writeLog(path, 4);
    writeFileSync(path, `${good[0]}\n${good[1]!.slice(0, 30)}\n${good[2]}\n${good[3]}\n`);
    await assert.rejects(DecisionLog.open(path), rejectsWith("malformed", /record seq 2 \(line 2\): line is not valid JSON/));
  });

  test("a last line that is intact but out of sequence is tampering, not a torn write", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const good = await writeLog(path, 3);
    appendFileSync(path, `${good[1]}\n`);
    await assert.rejects(DecisionLog.open(path), rejectsWith("sequence", /record seq 4 \(line 4\): expected seq 4, found 2/));
  });

  test("a removed newline merging the last two records is tampering, not a torn write", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const good = await writeLog(path, 4);
    writeFileSync(path, `${good[0]}\n${good[1]}\n${good[2]}X${good[3]}\n`);
    await assert.rejects(DecisionLog.open(path), rejectsWith("malformed", /record seq 3 \(line 3\): line is not valid JSON; refusing/));
  });

  test("a final line longer than any record is not treated as torn", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const good = await writeLog(path, 2);
    writeFileSync(path, `${good[0]}\n${good[1]}\n${"x".repeat(MAX_RECORD_BYTES + 1)}`);
    await assert.rejects(DecisionLog.open(path), rejectsWith("truncated", /record seq 3 \(line 3\)/));
  });

  test("a path that is a directory cannot be opened", async (t) => {
    const path = join(tempDir(t), "dir.jsonl");
    mkdirSync(path);
    await assert.rejects(DecisionLog.open(path), rejectsWith("io", /cannot open .*dir\.jsonl: is a directory/));
  });

  test("maxBatch must be a positive integer", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    await assert.rejects(DecisionLog.open(path, { maxBatch: 0 }), rejectsWith("options", /maxBatch/));
  });
});

describe("group commit", () => {
  test("200 concurrent appends: all durable, in call order, with far fewer fsyncs than records", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const log = await DecisionLog.open(path);
    const records = await Promise.all(Array.from({ length: 200 }, (_, i) => log.append(entry(i + 1))));
    assert.deepEqual(records.map((r) => r.seq), Array.from({ length: 200 }, (_, i) => i + 1));
    assert.deepEqual(records.map((r) => r.requestId), Array.from({ length: 200 }, (_, i) => `req-${i + 1}`));
    const { batches, records: written } = log.stats;
    t.diagnostic(`200 concurrent appends: ${batches} write+fsync batches`);
    assert.equal(written, 200);
    assert.ok(batches <= 10, `expected far fewer than 200 batches, got ${batches}`);
    assert.equal(log.lastSeq, 200);
    await log.close();
    assert.deepEqual(await verifyLogFile(path), { ok: true, records: 200, lastSeq: 200, lastHash: records[199]!.hash });
  });

  test("appends arriving while a batch is in flight share the next batch", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const log = await DecisionLog.open(path);
    const first = log.append(entry(1));
    await new Promise((resolve) => setImmediate(resolve)); // the first batch is now writing
    const rest = Array.from({ length: 50 }, (_, i) => log.append(entry(i + 2)));
    await Promise.all([first, ...rest]);
    assert.ok(log.stats.batches <= 3, `got ${log.stats.batches} batches`);
    assert.equal(log.stats.records, 51);
    await log.close();
    assert.equal((await verifyLogFile(path)).ok, true);
  });

  test("maxBatch bounds the records per write", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const log = await DecisionLog.open(path, { maxBatch: 10 });
    await Promise.all(Array.from({ length: 100 }, (_, i) => log.append(entry(i + 1))));
    assert.deepEqual(log.stats, { batches: 10, records: 100 });
    await log.close();
  });

  test("close flushes pending appends; appends after close reject", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const log = await DecisionLog.open(path);
    const pending = Array.from({ length: 20 }, (_, i) => log.append(entry(i + 1)));
    await log.close();
    assert.equal((await Promise.all(pending)).length, 20);
    assert.deepEqual((await verifyLogFile(path)).ok && (await verifyLogFile(path)), {
      ok: true, records: 20, lastSeq: 20, lastHash: (await pending[19])!.hash,
    });
    await assert.rejects(log.append(entry(21)), rejectsWith("closed", /decision log: the log is closed/));
    await log.close(); // idempotent
  });

  test("a failed fsync rejects every pending append and refuses later ones (fail closed)", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const probe = await open(path, "w");
    const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    const original = proto.datasync;
    const log = await DecisionLog.open(path);
    await log.append(entry(1));
    proto.datasync = () => Promise.reject(Object.assign(new Error("EIO: i/o error"), { code: "EIO" }));
    t.after(() => {
      proto.datasync = original;
    });
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => log.append(entry(i + 2))));
    proto.datasync = original;
    assert.ok(results.every((r) => r.status === "rejected"));
    for (const r of results) {
      assert.ok(r.status === "rejected" && rejectsWith("write", /write or fsync failed \(EIO\); appends are refused until the log recovers/)(r.reason));
    }
    assert.equal(log.lastSeq, 1, "the durable head did not move");
    await assert.rejects(log.append(entry(50)), rejectsWith("write", /appends are refused/));
    await log.close();
    // The rejected appends' bytes did reach the file; closing cut them off, so reopening goes on from the durable head.
    const reopened = await DecisionLog.open(path);
    assert.equal(reopened.lastSeq, 1);
    await reopened.close();
  });
});

describe("verifyLogFile", () => {
  test("a missing file is an io error, not a verification result", async (t) => {
    await assert.rejects(verifyLogFile(join(tempDir(t), "nope.jsonl")), rejectsWith("io", /cannot read .*nope\.jsonl: no such file/));
  });

  test("a log cut in the middle of a record is truncated", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const good = await writeLog(path, 5);
    truncateSync(path, good.slice(0, 2).join("\n").length + 1 + 40);
    assert.deepEqual(await verifyLogFile(path), {
      ok: false, seq: 3, line: 3, check: "truncated", message: "the log ends inside a record (torn write or truncation)",
    });
  });

  test("an oversized middle line is malformed without being buffered", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const good = await writeLog(path, 3);
    writeFileSync(path, `${good[0]}\n${"x".repeat(MAX_RECORD_BYTES * 4)}\n${good[2]}\n`);
    assert.deepEqual(await verifyLogFile(path), {
      ok: false, seq: 2, line: 2, check: "malformed", message: "line is longer than 65536 bytes",
    });
  });

  test("invalid UTF-8 is malformed", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const good = await writeLog(path, 3);
    const bytes = Buffer.from(`${good.join("\n")}\n`);
    bytes[good[0]!.length + 10] = 0xff;
    writeFileSync(path, bytes);
    assert.deepEqual(await verifyLogFile(path), {
      ok: false, seq: 2, line: 2, check: "malformed", message: "line is not valid UTF-8",
    });
  });

  test("a log larger than one read chunk verifies", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const log = await DecisionLog.open(path);
    const big = await Promise.all(Array.from({ length: 1500 }, (_, i) => log.append(entry(i + 1, { reason: "é".repeat(i % 50) }))));
    await log.close();
    assert.ok(statSync(path).size > 3 * 64 * 1024);
    assert.deepEqual(await verifyLogFile(path), { ok: true, records: 1500, lastSeq: 1500, lastHash: big[1499]!.hash });
  });
});

describe("recovery after a failed write", () => {
  /** Makes every fdatasync fail (as a full disk does) until restored, and restores it at the end of the test. */
  async function datasyncFault(t: { after: (fn: () => void) => void }, dir: string) {
    const probe = await open(join(dir, "handle-probe"), "w");
    const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    const original = proto.datasync;
    t.after(() => {
      proto.datasync = original;
    });
    return {
      fail(code = "ENOSPC") {
        proto.datasync = () => Promise.reject(Object.assign(new Error(`${code}: injected`), { code }));
      },
      restore() {
        proto.datasync = original;
      },
    };
  }

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  // Polled every millisecond: the waits between retries are observed as they pass.
  const until = (what: string, check: () => boolean) => waitFor(what, check, 20_000, 1);

  test("a failed batch whose bytes reached the file is cut off (kept in .torn); the next append chains onto the last durable record", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "decisions.jsonl");
    const fault = await datasyncFault(t, dir);
    // No timer fires during the test: recovery is asked for.
    const log = await DecisionLog.open(path, { retry: { initialMs: 60_000 } });
    const durable = [];
    for (let i = 1; i <= 3; i++) durable.push(await log.append(entry(i)));
    const durableBytes = readFileSync(path);
    fault.fail();
    const rejected = await Promise.allSettled([log.append(entry(4)), log.append(entry(5))]);
    assert.ok(rejected.every((r) => r.status === "rejected"));
    assert.ok(statSync(path).size > durableBytes.length, "the failed batch's bytes landed in the file");
    assert.equal(log.health.writable, false);
    assert.ok(log.refusal !== null);
    await assert.rejects(log.append(entry(6)), rejectsWith("write", /write or fsync failed \(ENOSPC\)/));

    fault.restore();
    assert.equal(await log.recover(), true);
    assert.equal(log.refusal, null);
    assert.equal(log.health.writable, true);
    assert.deepEqual(readFileSync(path), durableBytes, "the rejected records were cut off");
    assert.match(readFileSync(`${path}.torn`, "utf8"), /"requestId":"req-4".*\n.*"requestId":"req-5"/);
    const next = await log.append(entry(7));
    assert.deepEqual([next.seq, next.prev], [4, durable[2]!.hash]);
    await log.close();
    assert.deepEqual(await verifyLogFile(path), { ok: true, records: 4, lastSeq: 4, lastHash: next.hash });
    assert.doesNotMatch(readFileSync(path, "utf8"), /req-4|req-5|req-6/);
    assert.equal(existsSync(`${path}.probe`), false);
  });

  test("a write that landed only in part before it failed is cut off too", async (t) => {
    const path = join(tempDir(t), "decisions.jsonl");
    const log = await DecisionLog.open(path, { retry: { initialMs: 60_000 } });
    const first = await log.append(entry(1));
    const original = fs.writeSync;
    const restore = () => {
      fs.writeSync = original;
      syncBuiltinESMExports();
    };
    t.after(restore);
    // Half of the batch reaches the file, then the disk is full.
    fs.writeSync = ((fd: number, data: Buffer, offset: number, length: number) => {
      if (!Buffer.isBuffer(data) || !data.includes('"requestId":"req-2"')) return (original as (...a: unknown[]) => number)(fd, data, offset, length);
      original(fd, data, offset, Math.floor(length / 2));
      throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
    }) as typeof fs.writeSync;
    syncBuiltinESMExports();
    await assert.rejects(log.append(entry(2)), rejectsWith("write", /ENOSPC/));
    restore();
    assert.equal((await verifyLogFile(path)).ok, false, "a torn record is left in the file");
    assert.equal(await log.recover(), true);
    const next = await log.append(entry(3));
    assert.deepEqual([next.seq, next.prev], [2, first.hash]);
    await log.close();
    assert.deepEqual(await verifyLogFile(path), { ok: true, records: 2, lastSeq: 2, lastHash: next.hash });
  });

  test("retries on a timer with exponential backoff while the disk refuses, then recovers by itself", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "decisions.jsonl");
    const fault = await datasyncFault(t, dir);
    const T = 1_000_000;
    const recovered: { retries: number; droppedBytes: number }[] = [];
    const log = await DecisionLog.open(path, { retry: { initialMs: 5, maxMs: 20 }, clock: () => T, onRecover: (info) => recovered.push(info) });
    t.after(() => log.close());
    const first = await log.append(entry(1));
    fault.fail();
    await assert.rejects(log.append(entry(2)));
    const failed = log.health;
    assert.deepEqual({ ...failed, lastError: null }, { writable: false, since: T, lastError: null, retries: 0, nextRetryAt: T + 5 });
    assert.match(failed.lastError!, /ENOSPC/);
    // Each failed attempt doubles the wait, up to the maximum.
    const delays = new Map<number, number>();
    await until("four failed attempts", () => {
      const h = log.health;
      if (h.nextRetryAt !== null) delays.set(h.retries, h.nextRetryAt - T); // null while an attempt is under way
      return h.retries >= 4;
    });
    assert.ok(delays.size >= 2, "the waits were seen between attempts");
    for (const [retries, delay] of delays) assert.equal(delay, Math.min(20, 5 * 2 ** retries), `delay after ${retries} attempts`);
    assert.equal(log.health.writable, false);
    assert.match(log.health.lastError!, /ENOSPC/);
    assert.ok(log.refusal !== null, "appends stay refused while the disk refuses");
    assert.equal(recovered.length, 0);

    fault.restore();
    await until("recovered", () => log.health.writable);
    assert.deepEqual(log.health, { writable: true, since: null, lastError: null, retries: 0, nextRetryAt: null });
    assert.equal(recovered.length, 1);
    assert.ok(recovered[0]!.retries >= 4);
    assert.ok(recovered[0]!.droppedBytes > 0, "the rejected record had reached the file");
    const next = await log.append(entry(3));
    assert.deepEqual([next.seq, next.prev], [2, first.hash]);
  });

  test("after a prune the durable end is where the pruned file ends: recovery cuts there", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "decisions.jsonl");
    const fault = await datasyncFault(t, dir);
    const log = await DecisionLog.open(path, { retry: { initialMs: 60_000 } });
    t.after(() => log.close());
    for (let i = 1; i <= 10; i++) await log.append(entry(i));
    await log.prune(6);
    const kept = readFileSync(path);
    fault.fail();
    await assert.rejects(log.append(entry(11)));
    fault.restore();
    assert.equal(await log.recover(), true);
    assert.deepEqual(readFileSync(path), kept);
    const next = await log.append(entry(12));
    assert.equal(next.seq, 11);
    assert.deepEqual(await verifyLogFile(path), { ok: true, records: 5, lastSeq: 11, lastHash: next.hash, anchor: log.anchor! });
  });

  test("a log that lost durable records while it could not write is not taken back into use", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "decisions.jsonl");
    const fault = await datasyncFault(t, dir);
    const log = await DecisionLog.open(path, { retry: { initialMs: 60_000 } });
    t.after(() => log.close());
    await log.append(entry(1));
    await log.append(entry(2));
    fault.fail();
    await assert.rejects(log.append(entry(3)));
    fault.restore();
    truncateSync(path, 10);
    assert.equal(await log.recover(), false);
    assert.match(log.health.lastError!, /shorter than its durable records/);
    assert.equal(log.health.retries, 1);
    assert.ok(log.refusal !== null);
  });

  test("a closed log is not writable and stops retrying", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "decisions.jsonl");
    const fault = await datasyncFault(t, dir);
    const log = await DecisionLog.open(path, { retry: { initialMs: 1, maxMs: 1 } });
    await log.append(entry(1));
    fault.fail();
    await assert.rejects(log.append(entry(2)));
    await log.close();
    const retries = log.health.retries;
    await sleep(20);
    assert.equal(log.health.retries, retries);
    assert.equal(log.health.writable, false);
    assert.equal(log.health.nextRetryAt, null);
    assert.equal(await log.recover(), false);
  });
});
