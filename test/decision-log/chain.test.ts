import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import {
  DecisionLogError, GENESIS_HASH, MAX_RECORD_BYTES, sealRecord, serializeRecord, verifyRecords,
} from "../../src/decision-log/index.ts";
import type { DecisionEntry, DecisionRecord } from "../../src/decision-log/index.ts";
import { entry } from "./fixtures.ts";

function chain(n: number): DecisionRecord[] {
  const records: DecisionRecord[] = [];
  let prev = GENESIS_HASH;
  for (let i = 1; i <= n; i++) {
    const record = sealRecord(entry(i), i, prev);
    records.push(record);
    prev = record.hash;
  }
  return records;
}

const lines = (n: number) => chain(n).map(serializeRecord);

describe("sealRecord", () => {
  test("genesis hash is 64 zeros", () => {
    assert.equal(GENESIS_HASH, "0".repeat(64));
  });

  test("hashes the canonical serialization of every field except hash, in fixed order", () => {
    const record = sealRecord(entry(1), 1, GENESIS_HASH);
    const canonical =
      '{"seq":1,"time":"2026-01-01T00:00:00.001Z","requestId":"req-1","principal":"example.org/ns/apps/sa/chat",' +
      '"method":"POST","path":"/v1/chat/completions","model":"llama-3.1-8b","decision":"ALLOW","policy":"chat-allow",' +
      `"rule":0,"reason":"rule 0 matched","revision":"sha256:4f2c","prev":"${GENESIS_HASH}"}`;
    const expected = createHash("sha256").update(canonical).digest("hex");
    assert.equal(record.hash, expected);
    assert.equal(serializeRecord(record), `${canonical.slice(0, -1)},"hash":"${expected}"}`);
  });

  test("status is placed after revision and covered by the hash", () => {
    const denied = sealRecord(entry(3), 1, GENESIS_HASH);
    const line = serializeRecord(denied);
    assert.match(line, /"revision":"sha256:4f2c","status":403,"prev":"0{64}","hash":"[0-9a-f]{64}"}$/);
    const { status: _status, ...withoutStatus } = entry(3);
    assert.notEqual(sealRecord(withoutStatus, 1, GENESIS_HASH).hash, denied.hash);
  });

  test("the same record always hashes the same, whatever the caller's key order", () => {
    const e = entry(7);
    const reversed = Object.fromEntries(Object.entries(e).reverse()) as unknown as DecisionEntry;
    assert.equal(sealRecord(reversed, 4, GENESIS_HASH).hash, sealRecord(e, 4, GENESIS_HASH).hash);
    assert.equal(serializeRecord(sealRecord(reversed, 4, GENESIS_HASH)), serializeRecord(sealRecord(e, 4, GENESIS_HASH)));
  });

  test("fields beyond the schema (a prompt) never reach the record", () => {
    const withPrompt = { ...entry(1), prompt: "my secret prompt", messages: [{ content: "x" }] } as DecisionEntry;
    const line = serializeRecord(sealRecord(withPrompt, 1, GENESIS_HASH));
    assert.doesNotMatch(line, /prompt|messages|secret/);
    assert.equal(sealRecord(withPrompt, 1, GENESIS_HASH).hash, sealRecord(entry(1), 1, GENESIS_HASH).hash);
  });

  const bad: Array<[string, Partial<DecisionEntry> | Record<string, unknown>, RegExp]> = [
    ["time without milliseconds", { time: "2026-01-01T00:00:00Z" }, /time is not an RFC 3339/],
    ["time with an offset", { time: "2026-01-01T00:00:00.000+01:00" }, /time is not an RFC 3339/],
    ["impossible time", { time: "2026-13-45T99:00:00.000Z" }, /time is not an RFC 3339/],
    ["empty request id", { requestId: "" }, /requestId/],
    ["unknown decision", { decision: "MAYBE" }, /decision is not ALLOW or DENY/],
    ["fractional rule", { rule: 1.5 }, /rule is not a non-negative integer/],
    ["negative rule", { rule: -1 }, /rule/],
    ["status out of range", { status: 99 }, /status is not an HTTP status code/],
    ["NaN status", { status: Number.NaN }, /status/],
    ["numeric principal", { principal: 42 }, /principal/],
    ["missing reason", { reason: undefined }, /reason/],
  ];
  for (const [name, override, message] of bad) {
    test(`rejects an entry with ${name}`, () => {
      assert.throws(
        () => sealRecord({ ...entry(1), ...override } as DecisionEntry, 1, GENESIS_HASH),
        (err: unknown) => err instanceof DecisionLogError && err.check === "entry" && message.test(err.message),
      );
    });
  }

  test("rejects a bad seq or prev", () => {
    assert.throws(() => sealRecord(entry(1), 0, GENESIS_HASH), /decision log: seq 0 is not a positive integer/);
    assert.throws(() => sealRecord(entry(1), 1.5, GENESIS_HASH), /seq 1.5/);
    assert.throws(() => sealRecord(entry(1), 1, "ABC"), /prev is not a lowercase sha256 hex digest/);
  });

  test("rejects an oversized record", () => {
    assert.throws(
      () => sealRecord(entry(1, { reason: "x".repeat(MAX_RECORD_BYTES) }), 1, GENESIS_HASH),
      /decision log: entry rejected: the record is larger than 65536 bytes/,
    );
  });
});

describe("verifyRecords", () => {
  test("an intact chain verifies and reports its head", () => {
    const records = chain(5);
    assert.deepEqual(verifyRecords(records.map(serializeRecord)), {
      ok: true, records: 5, lastSeq: 5, lastHash: records[4]?.hash,
    });
  });

  test("an empty log verifies with the genesis head", () => {
    assert.deepEqual(verifyRecords([]), { ok: true, records: 0, lastSeq: 0, lastHash: GENESIS_HASH });
    assert.deepEqual(verifyRecords([""]), { ok: true, records: 0, lastSeq: 0, lastHash: GENESIS_HASH });
  });

  test("a split of newline-terminated text verifies", () => {
    const text = lines(3).map((l) => `${l}\n`).join("");
    assert.equal(verifyRecords(text.split("\n")).ok, true);
  });

  test("an edited field is a hash mismatch at that record", () => {
    const l = lines(20);
    l[16] = l[16]!.replace('"decision":"ALLOW"', '"decision":"DENY"');
    assert.deepEqual(verifyRecords(l), {
      ok: false, seq: 17, line: 17, check: "hash", message: "hash mismatch — the record was edited",
    });
  });

  test("an edited seq or prev is a hash mismatch too", () => {
    const l = lines(5);
    l[2] = l[2]!.replace('"seq":3', '"seq":4');
    assert.deepEqual(verifyRecords(l), {
      ok: false, seq: 3, line: 3, check: "hash", message: "hash mismatch — the record was edited",
    });
  });

  test("a deleted middle record names the missing seq", () => {
    const l = lines(6);
    l.splice(2, 1);
    assert.deepEqual(verifyRecords(l), {
      ok: false, seq: 3, line: 3, check: "sequence",
      message: "expected seq 3, found 4 — a record was deleted, inserted or reordered",
    });
  });

  test("two swapped records are detected at the first", () => {
    const l = lines(6);
    [l[3], l[4]] = [l[4]!, l[3]!];
    const result = verifyRecords(l);
    assert.equal(result.ok, false);
    assert.deepEqual(result.ok ? null : [result.seq, result.check], [4, "sequence"]);
  });

  test("an inserted forged record with a valid own hash breaks the sequence after it", () => {
    const records = chain(5);
    const forged = sealRecord(entry(99, { decision: "ALLOW", reason: "forged" }), 4, records[2]!.hash);
    const l = records.map(serializeRecord);
    l.splice(3, 0, serializeRecord(forged));
    const result = verifyRecords(l);
    assert.deepEqual(result.ok ? null : [result.seq, result.line, result.check], [5, 5, "sequence"]);
  });

  test("a replaced record with a valid own hash breaks the next record's prev", () => {
    const records = chain(5);
    const forged = sealRecord(entry(99, { reason: "forged" }), 3, records[1]!.hash);
    const l = records.map(serializeRecord);
    l[2] = serializeRecord(forged);
    assert.deepEqual(verifyRecords(l), {
      ok: false, seq: 4, line: 4, check: "chain",
      message: "prev does not match the hash of record seq 3 — a record was replaced or forged",
    });
  });

  test("a first record that does not start at genesis is a chain break", () => {
    const forged = sealRecord(entry(1), 1, "f".repeat(64));
    assert.deepEqual(verifyRecords([serializeRecord(forged)]), {
      ok: false, seq: 1, line: 1, check: "chain", message: "prev is not the genesis hash — the start of the log was replaced",
    });
  });

  test("a log that starts after seq 1 is a sequence break", () => {
    const l = lines(4).slice(2);
    const result = verifyRecords(l);
    assert.deepEqual(result.ok ? null : [result.seq, result.check], [1, "sequence"]);
  });

  test("a re-encoded line with the same fields is not canonical", () => {
    const l = lines(4);
    l[1] = l[1]!.replace('"path":"/v1/chat/completions"', '"path":"\\/v1/chat/completions"');
    assert.deepEqual(verifyRecords(l), {
      ok: false, seq: 2, line: 2, check: "malformed",
      message: "record is not in canonical form — the line was re-encoded or edited",
    });
    const reordered = lines(4);
    const parsed = JSON.parse(reordered[1]!) as Record<string, unknown>;
    reordered[1] = JSON.stringify(Object.fromEntries(Object.entries(parsed).reverse()));
    const result = verifyRecords(reordered);
    assert.deepEqual(result.ok ? null : [result.seq, result.check], [2, "malformed"]);
  });

  const malformed: Array<[string, (line: string) => string, string]> = [
    ["not JSON", () => "{not json", "line is not valid JSON"],
    ["a JSON array", () => "[1,2]", "line is not a JSON object"],
    ["JSON null", () => "null", "line is not a JSON object"],
    ["an unknown field", (l) => l.replace('{"seq"', '{"prompt":"hi","seq"'), 'unknown field "prompt"'],
    ["a __proto__ field", (l) => l.replace('{"seq"', '{"__proto__":{},"seq"'), 'unknown field "__proto__"'],
    ["a missing field", (l) => l.replace(/"policy":"chat-allow",/, ""), 'missing field "policy"'],
    ["an uppercase hash", (l) => l.replace(/"hash":"([0-9a-f]{64})"/, (_m, h: string) => `"hash":"${h.toUpperCase()}"`),
      "hash is not a lowercase sha256 hex digest"],
    ["a string seq", (l) => l.replace('"seq":2', '"seq":"2"'), "seq is not a positive integer"],
    ["a null status", (l) => l.replace('"revision":"sha256:4f2c"', '"revision":"sha256:4f2c","status":null'),
      "status is not an HTTP status code"],
    ["an empty line", () => "", "empty line"],
    ["an oversized line", () => "x".repeat(MAX_RECORD_BYTES + 1), "line is longer than 65536 bytes"],
  ];
  for (const [name, mutate, message] of malformed) {
    test(`a middle line that is ${name} is malformed`, () => {
      const l = lines(4);
      l[1] = mutate(l[1]!);
      assert.deepEqual(verifyRecords(l), { ok: false, seq: 2, line: 2, check: "malformed", message });
    });
  }

  test("a duplicated record is a sequence break", () => {
    const l = lines(3);
    l.splice(2, 0, l[1]!);
    const result = verifyRecords(l);
    assert.deepEqual(result.ok ? null : [result.seq, result.line, result.check], [3, 3, "sequence"]);
  });
});

describe("the bundle stage field", () => {
  test("is hashed between revision and status, and verifies", () => {
    const record = sealRecord({ ...entry(1), stage: "restricted", status: 403 }, 1, GENESIS_HASH);
    const line = serializeRecord(record);
    assert.match(line, /"revision":[^,]*,"stage":"restricted","status":403,"prev":/);
    assert.deepEqual(verifyRecords([line]), { ok: true, records: 1, lastSeq: 1, lastHash: record.hash });
  });

  test("an unknown stage is refused when sealing and reported when verifying", () => {
    assert.throws(() => sealRecord({ ...entry(1), stage: "thawed" as "fresh" }, 1, GENESIS_HASH), DecisionLogError);
    const line = serializeRecord(sealRecord({ ...entry(1), stage: "fresh" }, 1, GENESIS_HASH)).replace('"stage":"fresh"', '"stage":"thawed"');
    const result = verifyRecords([line]);
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.check, "malformed");
  });
});
