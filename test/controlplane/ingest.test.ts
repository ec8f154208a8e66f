import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { GENESIS_HASH, sealRecord, serializeRecord } from "../../src/decision-log/index.ts";
import { checkBatch, overlap, planIngest, splitBatch, toIngestRecord, type IngestPlan, type IngestRefusal } from "../../src/controlplane/ingest.ts";
import type { IngestRecord, LogHead } from "../../src/controlplane/storage/index.ts";
import { entry } from "../decision-log/fixtures.ts";
import { makeChain, ndjson, type Chain } from "./records.ts";

/** The storage side of ingestion, in memory: what the server does around the pure functions. */
class MemoryLog {
  records: IngestRecord[] = [];

  get head(): LogHead {
    const last = this.records.at(-1);
    return last === undefined ? { ackSeq: 0, ackHash: GENESIS_HASH, lastTime: null } : { ackSeq: last.seq, ackHash: last.hash, lastTime: last.time };
  }

  upload(body: Buffer): IngestPlan | IngestRefusal {
    const head = this.head;
    const batch = checkBatch(body);
    const span = overlap(head, batch);
    const stored = new Map(span === null ? [] : this.records.slice(span.from - 1, span.to).map((r) => [r.seq, r.hash] as const));
    const plan = planIngest(head, batch, stored);
    if (plan.ok) this.records.push(...plan.records.map(toIngestRecord));
    return plan;
  }
}

function refusal(result: IngestPlan | IngestRefusal): IngestRefusal {
  assert.equal(result.ok, false, "expected a refusal");
  return result as IngestRefusal;
}

function accepted(result: IngestPlan | IngestRefusal): IngestPlan {
  assert.equal(result.ok, true, `expected acceptance, got ${JSON.stringify(result)}`);
  return result as IngestPlan;
}

const chain = makeChain(12);

function logWith(n: number): MemoryLog {
  const log = new MemoryLog();
  if (n > 0) accepted(log.upload(ndjson(chain, 1, n)));
  return log;
}

describe("splitBatch", () => {
  test("lines end with newlines; bytes after the last one are an unterminated line", () => {
    assert.deepEqual(splitBatch(Buffer.from("")), { lines: [], terminated: true });
    assert.deepEqual(splitBatch(Buffer.from("a\nb\n")), { lines: [Buffer.from("a"), Buffer.from("b")], terminated: true });
    assert.deepEqual(splitBatch(Buffer.from("a\nb")), { lines: [Buffer.from("a"), Buffer.from("b")], terminated: false });
    assert.deepEqual(splitBatch(Buffer.from("\n\n")), { lines: [Buffer.from(""), Buffer.from("")], terminated: true });
  });
});

describe("planIngest against the stored head", () => {
  test("a first batch from genesis is accepted whole", () => {
    const log = new MemoryLog();
    const plan = accepted(log.upload(ndjson(chain, 1, 5)));
    assert.equal(plan.records.length, 5);
    assert.equal(plan.duplicates, 0);
    assert.deepEqual(log.records.map((r) => r.line), chain.lines.slice(0, 5));
    assert.deepEqual(log.records[4], { seq: 5, hash: chain.records[4]!.hash, prev: chain.records[3]!.hash, time: chain.records[4]!.time, line: chain.lines[4] });
  });

  test("an empty batch changes nothing", () => {
    const log = logWith(3);
    assert.deepEqual(log.upload(Buffer.alloc(0)), { ok: true, records: [], duplicates: 0 });
    assert.equal(log.head.ackSeq, 3);
  });

  test("a resent batch is all duplicates; an overlapping one stores only what is new", () => {
    const log = logWith(5);
    assert.deepEqual(log.upload(ndjson(chain, 1, 5)), { ok: true, records: [], duplicates: 5 });
    assert.deepEqual(log.upload(ndjson(chain, 2, 4)), { ok: true, records: [], duplicates: 3 });
    const plan = accepted(log.upload(ndjson(chain, 4, 8)));
    assert.equal(plan.duplicates, 2);
    assert.deepEqual(plan.records.map((r) => r.record.seq), [6, 7, 8]);
    assert.deepEqual(log.records.map((r) => r.line), chain.lines.slice(0, 8));
  });

  test("a batch past the head is a gap naming the first missing seq", () => {
    const log = logWith(3);
    const r = refusal(log.upload(ndjson(chain, 6, 8)));
    assert.equal(r.code, "gap");
    assert.equal(r.seq, 4);
    assert.match(r.message, /records 4\.\.5 are missing/);
    assert.equal(log.head.ackSeq, 3, "nothing stored");
  });

  test("a different record under an acknowledged seq is a fork", () => {
    const log = logWith(4);
    const other = makeChain([entry(1), entry(2), entry(99), entry(4)]);
    const r = refusal(log.upload(ndjson(other, 1, 4)));
    assert.equal(r.code, "fork");
    assert.equal(r.seq, 3);
    assert.match(r.message, new RegExp(`holds hash ${chain.records[2]!.hash}`));
    assert.equal(log.records.length, 4);
  });

  test("a fork in the overlap refuses the whole batch, new records included", () => {
    const log = logWith(4);
    const other = makeChain([entry(1), entry(2), entry(3), entry(44), entry(5), entry(6)]);
    assert.equal(refusal(log.upload(ndjson(other, 3, 6))).code, "fork");
    assert.equal(log.head.ackSeq, 4);
  });

  test("a next record that does not name the head's hash breaks the chain", () => {
    const log = logWith(4);
    const forged = sealRecord(entry(5), 5, "a".repeat(64));
    const r = refusal(log.upload(Buffer.from(`${serializeRecord(forged)}\n`)));
    assert.equal(r.code, "chain");
    assert.equal(r.seq, 5);
    assert.match(r.message, /acknowledged record seq 4/);
  });

  test("a first upload that does not start at genesis is a chain break; one that starts past seq 1 is a gap", () => {
    assert.equal(refusal(new MemoryLog().upload(Buffer.from(`${serializeRecord(sealRecord(entry(1), 1, "b".repeat(64)))}\n`))).code, "chain");
    const r = refusal(new MemoryLog().upload(ndjson(chain, 2, 3)));
    assert.deepEqual([r.code, r.seq], ["gap", 1]);
  });
});

describe("checkBatch: every line through the audit verifier", () => {
  const tampered = (body: Buffer | string, at = 0) => {
    const log = logWith(at);
    const r = refusal(log.upload(typeof body === "string" ? Buffer.from(body) : body));
    assert.equal(log.head.ackSeq, at, "nothing stored");
    return r;
  };

  test("an edited field fails its hash", () => {
    const lines = chain.lines.slice(0, 3).map((l) => `${l}\n`);
    lines[1] = lines[1]!.replace('"requestId":"req-2"', '"requestId":"req-X"');
    const r = tampered(lines.join(""));
    assert.deepEqual([r.code, r.seq], ["tampered", 2]);
    assert.match(r.message, /hash mismatch/);
  });

  test("a re-encoded record (same JSON value, other bytes) is refused", () => {
    const spaced = chain.lines[0]!.replace('"seq":1,', '"seq": 1,');
    const r = tampered(`${spaced}\n`);
    assert.equal(r.code, "tampered");
    assert.match(r.message, /canonical/);
  });

  test("an unknown field, a non-object, invalid JSON, an empty line, invalid UTF-8, a missing final newline", () => {
    const withField = chain.lines[0]!.replace('"seq":1,', '"seq":1,"prompt":"hi",');
    assert.match(tampered(`${withField}\n`).message, /unknown field "prompt"/);
    assert.match(tampered("[1,2]\n").message, /not a JSON object/);
    assert.match(tampered("{nope\n").message, /not valid JSON/);
    assert.equal(tampered(`${chain.lines[0]}\n\n${chain.lines[1]}\n`).code, "tampered");
    const bad = Buffer.concat([Buffer.from(`${chain.lines[0]}\n`), Buffer.from([0xc3, 0x28, 0x0a])]);
    const utf8 = tampered(bad);
    assert.deepEqual([utf8.code, utf8.seq], ["tampered", 2]);
    assert.match(utf8.message, /UTF-8/);
    const cut = tampered(`${chain.lines[0]}\n${chain.lines[1]}`);
    assert.deepEqual([cut.code, cut.seq], ["tampered", 2]);
    assert.match(cut.message, /ends inside a line/);
  });

  test("an unreadable first line is reported at the seq after the head", () => {
    const r = tampered("garbage\n", 3);
    assert.deepEqual([r.code, r.seq], ["tampered", 4]);
  });

  test("a byte-order mark is not skipped", () => {
    assert.equal(tampered(`\uFEFF${chain.lines[0]}\n`).code, "tampered");
  });

  test("a hole inside the batch is a gap, a line out of order a chain break", () => {
    const hole = `${chain.lines[0]}\n${chain.lines[2]}\n`;
    const r = tampered(hole);
    assert.deepEqual([r.code, r.seq], ["gap", 2]);
    const swapped = `${chain.lines[1]}\n${chain.lines[0]}\n`;
    assert.equal(tampered(swapped).code, "chain");
  });

  test("a record spliced in from another chain breaks the chain inside the batch", () => {
    const other = makeChain([entry(50), entry(2), entry(3)]);
    const r = tampered(`${chain.lines[0]}\n${other.lines[1]}\n`);
    assert.deepEqual([r.code, r.seq], ["chain", 2]);
  });
});

/** A chain, cut into consecutive batches at arbitrary points. */
const partitioned = fc.integer({ min: 1, max: 40 }).chain((n) =>
  fc.record({
    chain: fc.constant(makeChain(n)),
    cuts: fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, n - 1) }), { maxLength: n - 1 }).map((c) => c.filter((x) => x < n).sort((a, b) => a - b)),
  }));

function batchesOf(chain: Chain, cuts: readonly number[]): [number, number][] {
  const bounds = [0, ...cuts, chain.lines.length];
  return bounds.slice(1).map((end, i) => [bounds[i]! + 1, end]);
}

describe("properties", () => {
  test("any chain, cut into batches sent in any order with repeats and arbitrary overlapping resends, ends as exactly the chain", () => {
    fc.assert(
      fc.property(partitioned, fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 30 }), ({ chain, cuts }, picks) => {
        const batches = batchesOf(chain, cuts);
        const n = chain.lines.length;
        // Any order, repeats, and arbitrary ranges (a resend from a stale cursor, a batch cut differently).
        const deliveries: [number, number][] = picks.map(([a, b], i) =>
          i % 2 === 0 ? batches[a % batches.length]! : [Math.min(a % n, b % n) + 1, Math.max(a % n, b % n) + 1]);
        // ...then what a well-behaved uploader ends with: each batch once, in order.
        deliveries.push(...batches);
        const log = new MemoryLog();
        let acceptedTotal = 0;
        for (const [from, to] of deliveries) {
          const before = log.head.ackSeq;
          const result = log.upload(ndjson(chain, from, to));
          if (from <= before + 1) {
            const plan = accepted(result);
            assert.equal(plan.duplicates, Math.max(0, Math.min(to, before) - from + 1));
            acceptedTotal += plan.records.length;
          } else {
            assert.deepEqual([refusal(result).code, refusal(result).seq], ["gap", before + 1]);
          }
          assert.deepEqual(log.records.map((r) => r.line), chain.lines.slice(0, log.head.ackSeq), "the stored log is always a prefix of the chain");
        }
        assert.deepEqual(log.records.map((r) => r.line), chain.lines);
        assert.equal(acceptedTotal, n, "every record accepted exactly once");
        assert.equal(log.head.ackHash, chain.records.at(-1)!.hash);
      }),
      { numRuns: 300 },
    );
  });

  test("any single-byte change of a line in an otherwise acceptable batch is refused and nothing is stored", () => {
    const chainOf = makeChain(8);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 7 }), // stored before
        fc.integer({ min: 1, max: 8 }), // batch length
        fc.nat(), // which line of the batch
        fc.nat(), // which byte of the line
        fc.integer({ min: 1, max: 255 }), // xor: the byte always changes
        (stored, length, lineIndex, byteIndex, xor) => {
          const log = new MemoryLog();
          if (stored > 0) accepted(log.upload(ndjson(chainOf, 1, stored)));
          const from = Math.max(1, stored + 1 - (length >> 1));
          const to = Math.min(8, from + length - 1);
          const lines = chainOf.lines.slice(from - 1, to).map((l) => Buffer.from(l));
          const target = lines[lineIndex % lines.length]!;
          const at = byteIndex % target.length;
          target[at] = target[at]! ^ xor;
          const body = Buffer.concat(lines.flatMap((l) => [l, Buffer.from("\n")]));
          const result = refusal(log.upload(body));
          assert.equal(result.code, "tampered");
          assert.equal(log.head.ackSeq, stored);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
