import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import {
  DecisionLog, DecisionLogError, GENESIS_HASH, sealRecord, serializeRecord, verifyLogFile, verifyRecords,
} from "../../src/decision-log/index.ts";
import type { DecisionRecord } from "../../src/decision-log/index.ts";
import { entry, entryArb, tempDir } from "./fixtures.ts";

test("any sequence of entries seals, round-trips through JSON and verifies", () => {
  fc.assert(
    fc.property(fc.array(entryArb, { maxLength: 15 }), (entries) => {
      let prev = GENESIS_HASH;
      const records: DecisionRecord[] = entries.map((e, i) => {
        const record = sealRecord(e, i + 1, prev);
        prev = record.hash;
        return record;
      });
      const lines = records.map(serializeRecord);
      for (const [i, line] of lines.entries()) {
        assert.ok(!line.includes("\n"));
        assert.deepEqual(JSON.parse(line), records[i]);
        assert.equal(serializeRecord(JSON.parse(line) as DecisionRecord), line);
      }
      assert.deepEqual(verifyRecords(lines), { ok: true, records: records.length, lastSeq: records.length, lastHash: prev });
    }),
    { numRuns: 200 },
  );
});

test("a log written by DecisionLog round-trips any entries", async (t) => {
  const dir = tempDir(t);
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(entryArb, { minLength: 1, maxLength: 10 }), async (entries) => {
      const path = join(dir, `log-${run++}.jsonl`);
      const log = await DecisionLog.open(path);
      const records = await Promise.all(entries.map((e) => log.append(e)));
      await log.close();
      const lines = readFileSync(path, "utf8").split("\n");
      assert.deepEqual(lines.slice(0, -1).map((l) => JSON.parse(l)), records);
      assert.deepEqual(await verifyLogFile(path), { ok: true, records: records.length, lastSeq: records.length, lastHash: records.at(-1)!.hash });
    }),
    { numRuns: 40 },
  );
});

/** A fixed log whose records hold multi-byte text, escapes and lone surrogates, to mutate byte by byte. */
async function sampleLog(path: string): Promise<Buffer> {
  const log = await DecisionLog.open(path);
  for (let i = 1; i <= 6; i++) {
    await log.append(entry(i, { reason: i === 2 ? "café \"quoted\" \\ \n tab\t \ud800 😀" : `reason ${i}`, model: i === 4 ? null : "m/ü" }));
  }
  await log.close();
  return readFileSync(path);
}

test("any single-byte change anywhere in a log is detected by verify", async (t) => {
  const dir = tempDir(t);
  const original = await sampleLog(join(dir, "original.jsonl"));
  const path = join(dir, "mutated.jsonl");
  await fc.assert(
    fc.asyncProperty(fc.nat({ max: original.length - 1 }), fc.integer({ min: 1, max: 255 }), async (index, delta) => {
      const mutated = Buffer.from(original);
      mutated[index] = (mutated[index]! + delta) % 256;
      writeFileSync(path, mutated);
      const result = await verifyLogFile(path);
      assert.equal(result.ok, false, `byte ${index} changed by ${delta} went unnoticed`);
    }),
    { numRuns: 400 },
  );
});

test("any single-byte change before the last record makes open refuse the log", async (t) => {
  const dir = tempDir(t);
  const original = await sampleLog(join(dir, "original.jsonl"));
  const lastLineStart = original.subarray(0, -1).lastIndexOf(0x0a) + 1;
  const path = join(dir, "mutated.jsonl");
  await fc.assert(
    fc.asyncProperty(fc.nat({ max: lastLineStart - 1 }), fc.integer({ min: 1, max: 255 }), async (index, delta) => {
      const mutated = Buffer.from(original);
      mutated[index] = (mutated[index]! + delta) % 256;
      writeFileSync(path, mutated);
      await assert.rejects(DecisionLog.open(path), (err: unknown) => err instanceof DecisionLogError);
      assert.deepEqual(readFileSync(path), mutated, "a refused log is left as it was");
    }),
    { numRuns: 150, examples: [[lastLineStart - 1, 1], [lastLineStart - 1, 0x20]] },
  );
});
