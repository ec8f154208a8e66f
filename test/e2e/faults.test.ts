import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import type { Agent } from "undici";
import { GENESIS_HASH, sealRecord, serializeRecord, type DecisionEntry, type DecisionRecord } from "../../src/decision-log/index.ts";
import { Fleet, NODE, pool, waitFor, type GatewayProcess } from "../support/fleet.ts";

/**
 * Crashes at the worst moments, with real processes: a gateway SIGKILLed while appending and while uploading, the
 * control plane SIGKILLed while storing batches, and batches a node posts by hand (tampered, resent, out of order).
 * After each, the decisions held centrally are exactly the gateway's log: none lost, none twice, heads equal.
 */

const NDJSON = { "content-type": "application/x-ndjson", "content-encoding": "gzip" };

type Outcome = { status: number; requestId: string } | { error: string };

describe("faults: SIGKILL during appends, uploads and ingestion; hostile batches", () => {
  let fleet: Fleet;
  let gwA: GatewayProcess;
  let gwB: GatewayProcess;
  let alice: Agent;

  /** `n` chat requests through `gw`, `concurrency` at a time; a request the gateway never answered is an error. */
  function burst(gw: GatewayProcess, n: number, concurrency: number, onOk?: (okSoFar: number) => void): Promise<Outcome[]> {
    let ok = 0;
    return pool(n, concurrency, async (): Promise<Outcome> => {
      try {
        const r = await gw.chat(alice);
        if (r.status === 200) onOk?.(++ok);
        return { status: r.status, requestId: String(r.headers["x-request-id"]) };
      } catch (err) {
        return { error: (err as Error).message };
      }
    });
  }

  /** The gateway's log and what the control plane holds for it are the same records: none missing, none twice. */
  async function exactlyOnce(gw: GatewayProcess): Promise<void> {
    const log = gw.log();
    await waitFor(`${gw.name}: all ${log.length} records at the control plane`, () => fleet.central(gw.id).head?.ackSeq === log.length, 30_000);
    const central = fleet.central(gw.id);
    assert.deepEqual(central.seqs, log.map((_, i) => i + 1), `${gw.name}: seqs 1..${log.length}, each once`);
    assert.deepEqual(central.lines, log.map((r) => r.line), `${gw.name}: byte for byte`);
    const last = log.at(-1)!;
    assert.deepEqual(central.head, { ackSeq: last.seq, ackHash: last.hash });
    // And the node agrees: its cursor is the same head, checked against its own record.
    await waitFor(`${gw.name}: cursor at ${last.seq}`, () => JSON.parse(readFileSync(join(gw.dir, "upload", "cursor.json"), "utf8")).ackSeq === last.seq);
    assert.deepEqual(JSON.parse(readFileSync(join(gw.dir, "upload", "cursor.json"), "utf8")), { ackSeq: last.seq, ackHash: last.hash });
  }

  async function verifyLog(gw: GatewayProcess): Promise<void> {
    const verified = await fleet.cli(["log", "verify", gw.logPath]);
    assert.equal(verified.code, 0, `${verified.stdout}${verified.stderr}`);
    const last = gw.log().at(-1)!;
    assert.equal(verified.stdout, `ok: ${last.seq} records, last seq ${last.seq}, head ${last.hash}\n`);
  }

  before(async () => {
    fleet = await Fleet.create({ nodes: ["gw-a", "gw-b", "gw-c"], callers: ["alice"] });
    await fleet.startControlPlane();
    // Small batches, so that a backlog takes many round trips.
    const start = (name: string) => fleet.gateway(name, { policy: { callers: ["alice"] }, maxBatchRecords: 10 });
    [gwA, gwB] = await Promise.all([start("gw-a"), start("gw-b")]);
    alice = fleet.agent("alice");
  });

  after(async () => {
    await fleet?.cleanup();
  });

  test("a gateway SIGKILLed with appends in flight restarts on its files: every answered request is recorded once, then uploaded once", async (t) => {
    let killing: Promise<void> | null = null;
    // Killed once 60 requests were answered, with up to 24 more in flight.
    const outcomes = await burst(gwA, 300, 24, (ok) => {
      if (ok === 60) killing = gwA.kill();
    });
    await killing;
    const answered = outcomes.filter((o): o is { status: number; requestId: string } => "status" in o);
    const lost = outcomes.filter((o) => "error" in o);
    assert.ok(answered.length >= 60 && lost.length > 0, `killed mid-traffic: ${answered.length} answered, ${lost.length} not`);
    assert.ok(answered.every((o) => o.status === 200));

    await gwA.start(); // the same config, log, cursor
    await verifyLog(gwA);
    const log = gwA.log();
    t.diagnostic(`${answered.length} answered, ${lost.length} not; ${log.length} records after the restart; torn bytes repaired: ${/torn last record was repaired/.test(gwA.proc!.stderr())}`);
    const ids = log.map((r) => r.requestId);
    assert.equal(new Set(ids).size, ids.length, "no record twice");
    const missing = answered.filter((o) => !ids.includes(o.requestId));
    assert.deepEqual(missing, [], "every request answered 200 has its record");
    // The gateway serves on after the restart, continuing the chain.
    assert.equal((await gwA.chat(alice)).status, 200);
    await exactlyOnce(gwA);
  });

  test("a gateway SIGKILLed in the middle of uploading a backlog loses and duplicates nothing centrally", async (t) => {
    const already = fleet.central(gwB.id).seqs.length;
    gwB.relay.cut();
    const outcomes = await burst(gwB, 200, 16);
    assert.ok(outcomes.every((o) => "status" in o && o.status === 200), "served while the link is down");
    const total = gwB.log().length;
    assert.equal(total, already + 200);

    // A slow link: each batch of 10 takes a few hundred ms, the backlog many seconds.
    gwB.relay.delayMs = 40;
    gwB.relay.restore();
    // Killed (in the same tick as the check) once three batches are in and an exchange with the control plane is
    // under way: often just after the control plane stored a batch and before the gateway saw its acknowledgement.
    await waitFor("three batches of the backlog stored, a call in flight", () => fleet.central(gwB.id).seqs.length >= already + 30 && gwB.relay.open > 0, 20_000);
    await gwB.kill();
    const storedAtKill = fleet.central(gwB.id).seqs.length;
    assert.ok(storedAtKill < total, `killed mid-upload: ${storedAtKill} of ${total} stored`);
    t.diagnostic(`killed with ${storedAtKill - already} of 200 records stored centrally`);

    gwB.relay.delayMs = 0;
    await gwB.start();
    await verifyLog(gwB);
    await exactlyOnce(gwB);
  });

  test("the control plane SIGKILLed while storing batches restarts on its database; the gateways resume, exactly once", async (t) => {
    const gws = [gwA, gwB];
    for (const gw of gws) gw.relay.cut();
    await Promise.all(gws.map((gw) => burst(gw, 150, 8)));
    const totals = gws.map((gw) => gw.log().length);
    const stored = gws.map((gw) => fleet.central(gw.id).seqs.length);
    for (const [i, gw] of gws.entries()) assert.ok(totals[i]! >= stored[i]! + 150, gw.name);

    for (const gw of gws) {
      gw.relay.delayMs = 40;
      gw.relay.restore();
    }
    await waitFor("ingestion under way on both nodes, a batch in flight",
      () => gws.every((gw, i) => fleet.central(gw.id).seqs.length >= stored[i]! + 20) && gws.some((gw) => gw.relay.open > 0), 20_000);
    const atKill = gws.map((gw) => fleet.central(gw.id).seqs.length);
    assert.equal(await fleet.stopControlPlane("SIGKILL"), null);
    assert.ok(atKill.some((n, i) => n < totals[i]!), `killed mid-ingestion: ${atKill.join(", ")} of ${totals.join(", ")}`);
    t.diagnostic(`killed with ${atKill.join(", ")} of ${totals.join(", ")} records stored`);

    // Meanwhile the gateways keep serving and logging.
    for (const gw of gws) assert.equal((await gw.chat(alice)).status, 200);
    for (const gw of gws) gw.relay.delayMs = 0;
    await fleet.startControlPlane(); // the same database; the relays follow it to its new port
    for (const gw of gws) await exactlyOnce(gw);
    const nodes = JSON.parse((await fleet.operatorCli(["nodes", "list", "--output", "json"])).stdout) as { id: string; ackSeq: number; logSeq: number }[];
    assert.deepEqual(nodes.filter((n) => n.id !== NODE("gw-c")).map((n) => [n.id, n.ackSeq]), gws.map((gw) => [gw.id, gw.log().length]));
    const findings = await fleet.operatorCli(["findings", "list", "--output", "json"]);
    assert.deepEqual(JSON.parse(findings.stdout), [], "an interrupted upload is not a refused one");
  });

  test("batches posted by hand: another node's records and a tampered record are refused and reported; a resend is duplicates; a gap is refused until filled", async () => {
    const post = (payload: Buffer) => fleet.asNode("gw-c", "/v1/logs", { method: "POST", body: payload, headers: NDJSON });
    // Real records (gw-a's first ten) posted as another node, gw-c, whose log at the control plane is empty: they
    // verify as a chain, but the control plane holds them as gw-a's.
    const theirs = gwA.log().slice(0, 10).map((r) => r.line);
    const copied = await post(gzipSync(theirs.slice(0, 5).map((l) => `${l}\n`).join("")));
    assert.equal(copied.status, 409, copied.text);
    assert.deepEqual([copied.json().error.code, copied.json().error.seq, copied.json().ackSeq], ["foreign-chain", 1, 0]);
    assert.equal(fleet.central(NODE("gw-c")).seqs.length, 0, "nothing of the copy was stored");

    // gw-c's own records: the same decisions under its own request ids, sealed into a chain of its own.
    let prev = GENESIS_HASH;
    const own = theirs.map((line, i) => {
      const { seq: _seq, prev: _prev, hash: _hash, ...decision } = JSON.parse(line) as DecisionRecord;
      const record = sealRecord({ ...(decision as DecisionEntry), requestId: `gw-c-${i + 1}` }, i + 1, prev);
      prev = record.hash;
      return record;
    });
    const lines = own.map(serializeRecord);
    const hashes = own.map((r) => r.hash);
    const body = (from: number, to: number, edit?: (text: string) => string) => {
      const text = lines.slice(from - 1, to).map((l) => `${l}\n`).join("");
      return gzipSync(edit ? edit(text) : text);
    };

    // One byte of record 3's requestId changed: still JSON in canonical form, but no longer its hash.
    const third = lines[2]!;
    const at = third.indexOf('"requestId":"') + '"requestId":"'.length;
    const flipped = `${third.slice(0, at)}${third[at] === "a" ? "b" : "a"}${third.slice(at + 1)}`;
    assert.equal(Buffer.byteLength(flipped), Buffer.byteLength(third));
    const tampered = await post(body(1, 5, (t) => t.replace(third, flipped)));
    assert.equal(tampered.status, 409, tampered.text);
    assert.deepEqual([tampered.json().error.code, tampered.json().error.seq, tampered.json().ackSeq], ["tampered", 3, 0]);
    assert.equal(fleet.central(NODE("gw-c")).seqs.length, 0, "nothing of the batch was stored");
    const reported = await fleet.operatorCli(["findings", "list", "--node", NODE("gw-c"), "--kind", "upload-tampered", "--output", "json"]);
    assert.equal(reported.code, 0, reported.stderr);
    assert.deepEqual((JSON.parse(reported.stdout) as { kind: string; severity: string; seqFrom: number }[]).map((f) => [f.kind, f.severity, f.seqFrom]), [["upload-tampered", "critical", 3]]);

    const first = await post(body(1, 5));
    assert.deepEqual(first.json(), { ackSeq: 5, ackHash: hashes[4], accepted: 5, duplicates: 0 });
    const resent = await post(body(1, 5));
    assert.deepEqual(resent.json(), { ackSeq: 5, ackHash: hashes[4], accepted: 0, duplicates: 5 });

    const early = await post(body(8, 10));
    assert.equal(early.status, 409);
    assert.deepEqual([early.json().error.code, early.json().error.seq, early.json().ackSeq], ["gap", 6, 5]);
    assert.deepEqual((await post(body(6, 7))).json(), { ackSeq: 7, ackHash: hashes[6], accepted: 2, duplicates: 0 });
    assert.deepEqual((await post(body(8, 10))).json(), { ackSeq: 10, ackHash: hashes[9], accepted: 3, duplicates: 0 });
    assert.deepEqual(fleet.central(NODE("gw-c")).lines, lines);

    const kinds = (JSON.parse((await fleet.operatorCli(["findings", "list", "--node", NODE("gw-c"), "--output", "json"])).stdout) as { kind: string }[]).map((f) => f.kind);
    assert.deepEqual(kinds.sort(), ["upload-foreign-chain", "upload-gap", "upload-tampered"]);
  });
});
