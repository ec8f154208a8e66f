import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { DecisionEntry, DecisionRecord } from "../../src/decision-log/index.ts";
import { analyze, claimFindings, refusalFinding, type AnalysisInput, type ClaimInput } from "../../src/controlplane/analysis.ts";
import type { StoredBundle, StoredRevocation } from "../../src/controlplane/storage/index.ts";
import { entry } from "../decision-log/fixtures.ts";
import { makeChain } from "./records.ts";

const T = Date.UTC(2026, 10, 23, 12, 0, 0);
const at = (minutes: number) => new Date(T + minutes * 60_000).toISOString();
const NOW = at(600);
const MALLORY = "spiffe://example.org/ns/apps/sa/mallory";
const ALICE = "spiffe://example.org/ns/apps/sa/alice";

/** Records whose times are `minutes` after T, one per entry. */
function records(specs: readonly (Partial<DecisionEntry> & { minute: number })[]): DecisionRecord[] {
  return makeChain(specs.map(({ minute, ...rest }, i) => entry(i + 1, { decision: "ALLOW", principal: ALICE, status: undefined, revision: "edge-policy@3", time: at(minute), ...rest })))
    .records.map((r) => {
      const { status, ...rest } = r;
      return status === undefined ? (rest as DecisionRecord) : r;
    });
}

function revocation(value: string, minute: number, kind: StoredRevocation["kind"] = "spiffe-id"): StoredRevocation {
  return { id: 1, kind, value, reason: "key leaked", revokedAt: at(minute) };
}

function bundle(revision: number, publishedMinute: number, graceSeconds = 3600): Omit<StoredBundle, "archive"> {
  return { group: "kiosks", revision, name: "edge-policy", digest: "d".repeat(64), etag: "e".repeat(64), createdAt: at(publishedMinute), notAfter: at(publishedMinute + 1440), graceSeconds, publishedAt: at(publishedMinute) };
}

function input(patch: Partial<AnalysisInput>): AnalysisInput {
  return { node: "spiffe://example.org/edge/node/kiosk-1", records: [], revocations: [], history: [], previousLastTime: null, clockSkewMs: 5 * 60_000, now: NOW, ...patch };
}

describe("revoked-caller-allowed", () => {
  test("ALLOWs of a caller revoked at or before their time are one finding per run; earlier ones and DENYs are not", () => {
    const batch = records([
      { minute: 5, principal: MALLORY }, // before the revocation
      { minute: 10, principal: MALLORY }, // at it
      { minute: 11, principal: MALLORY },
      { minute: 12, principal: MALLORY, decision: "DENY" },
      { minute: 13, principal: ALICE },
      { minute: 14, principal: MALLORY },
    ]);
    const findings = analyze(input({ records: batch, revocations: [revocation(MALLORY, 10)] }));
    assert.deepEqual(findings.map((f) => [f.kind, f.severity, f.seqFrom, f.seqTo]), [
      ["revoked-caller-allowed", "high", 2, 3],
      ["revoked-caller-allowed", "high", 6, 6],
    ]);
    assert.equal(findings[0]!.node, "spiffe://example.org/edge/node/kiosk-1");
    assert.equal(findings[0]!.createdAt, NOW);
    assert.match(findings[0]!.explanation, /2 ALLOW decisions \(seq 2-3/);
    assert.match(findings[0]!.explanation, new RegExp(`${MALLORY} \\(revoked ${at(10)}: key leaked\\)`));
  });

  test("the Istio spelling of a principal matches its SPIFFE ID; the earliest of two revocations counts; serials do not match principals", () => {
    const batch = records([{ minute: 20, principal: "example.org/ns/apps/sa/mallory" }]);
    assert.equal(analyze(input({ records: batch, revocations: [revocation(MALLORY, 30), revocation(MALLORY, 15)] })).length, 1);
    assert.equal(analyze(input({ records: batch, revocations: [revocation("0a1b", 0, "serial")] })).length, 0);
    assert.equal(analyze(input({ records: records([{ minute: 20, principal: null }]), revocations: [revocation(MALLORY, 0)] })).length, 0);
  });
});

describe("superseded-bundle", () => {
  test("a decision under revision N when N+1 was published more than N's grace before it", () => {
    const history = [bundle(3, 0, 3600), bundle(4, 60, 60)];
    const batch = records([
      { minute: 100 }, // 40 min after rev 4: within rev 3's 1h grace
      { minute: 120 }, // exactly the grace: not more than it
      { minute: 121 },
      { minute: 122 },
      { minute: 123, revision: "edge-policy@4" },
      { minute: 124, revision: "sha256:4f2c" },
      { minute: 125, revision: null },
    ]);
    const findings = analyze(input({ records: batch, history }));
    assert.deepEqual(findings.map((f) => [f.kind, f.severity, f.seqFrom, f.seqTo]), [["superseded-bundle", "medium", 3, 4]]);
    assert.match(findings[0]!.explanation, /made under edge-policy@3, although revision 4 was published at 2026-11-23T13:00:00.000Z, more than the 3600s grace/);
  });

  test("revisions need not be consecutive; an unknown old revision uses the newer one's grace; the newest revision is never superseded", () => {
    const history = [bundle(7, 0, 600)];
    assert.deepEqual(analyze(input({ records: records([{ minute: 11, revision: "edge-policy@5" }]), history })).map((f) => f.seqFrom), [1]);
    assert.equal(analyze(input({ records: records([{ minute: 9, revision: "edge-policy@5" }]), history })).length, 0);
    assert.equal(analyze(input({ records: records([{ minute: 500, revision: "edge-policy@7" }]), history })).length, 0);
  });
});

describe("degraded-stage", () => {
  test("one finding per run of one stage, severity by stage", () => {
    const batch = records([
      { minute: 1, stage: "fresh" },
      { minute: 2, stage: "grace" },
      { minute: 3, stage: "grace" },
      { minute: 4, stage: "restricted" },
      { minute: 5, stage: "locked", decision: "DENY" },
      { minute: 6, stage: "locked", decision: "DENY" },
      { minute: 7 },
      { minute: 8, stage: "grace" },
    ]);
    assert.deepEqual(analyze(input({ records: batch })).map((f) => [f.kind, f.severity, f.seqFrom, f.seqTo]), [
      ["degraded-stage", "low", 2, 3],
      ["degraded-stage", "medium", 4, 4],
      ["degraded-stage", "medium", 5, 6],
      ["degraded-stage", "low", 8, 8],
    ]);
  });
});

describe("clock-rewind", () => {
  test("a time earlier than the previous uploads' latest by more than the skew", () => {
    const batch = records([{ minute: 56 }, { minute: 54 }, { minute: 50 }, { minute: 70 }, { minute: 10 }]);
    const findings = analyze(input({ records: batch, previousLastTime: at(60) }));
    assert.deepEqual(findings.map((f) => [f.kind, f.severity, f.seqFrom, f.seqTo]), [
      ["clock-rewind", "high", 2, 3],
      ["clock-rewind", "high", 5, 5],
    ]);
    assert.match(findings[0]!.explanation, new RegExp(`as early as ${at(50)}, before ${at(60)}.*300s clock skew`));
  });

  test("nothing before the first upload", () => {
    assert.equal(analyze(input({ records: records([{ minute: 0 }]) })).length, 0);
  });
});

test("findings are ordered by seq, then the most severe kind first", () => {
  const batch = records([{ minute: 1, stage: "grace", principal: MALLORY }, { minute: 2, stage: "grace" }]);
  const findings = analyze(input({ records: batch, revocations: [revocation(MALLORY, 0)], previousLastTime: at(30) }));
  assert.deepEqual(findings.map((f) => [f.kind, f.seqFrom, f.seqTo]), [
    ["revoked-caller-allowed", 1, 1],
    ["clock-rewind", 1, 2],
    ["degraded-stage", 1, 2],
  ]);
});

test("a refused upload is a critical finding at the refused seq", () => {
  assert.deepEqual(refusalFinding("n", "fork", 7, "two records", NOW), {
    node: "n", kind: "upload-fork", severity: "critical", seqFrom: 7, seqTo: 7, explanation: "upload refused (fork): two records", createdAt: NOW,
  });
});

test("a copied chain is refused as foreign-chain: a critical finding naming the node that holds the records", () => {
  assert.deepEqual(refusalFinding("n", "foreign-chain", 1, "record seq 1 is stored under node m", NOW), {
    node: "n", kind: "upload-foreign-chain", severity: "critical", seqFrom: 1, seqTo: 1,
    explanation: "upload refused (foreign-chain): record seq 1 is stored under node m", createdAt: NOW,
  });
});

describe("what a node claims, against what the centre knows", () => {
  const claims = (patch: Partial<ClaimInput>): ClaimInput => ({
    node: "spiffe://example.org/edge/node/kiosk-1", group: "kiosks", claimed: {}, revisionPublished: false, newestRevision: 3,
    ackSeq: 10, now: NOW, ...patch,
  });

  test("a claimed revision never published to the node's group: newer than the newest, a hole, or a group without bundles", () => {
    const newer = claimFindings(claims({ claimed: { bundleRevision: 999999 } }));
    assert.deepEqual(newer.map((f) => [f.kind, f.severity, f.seqFrom, f.seqTo, f.createdAt]), [["claim-unpublished-revision", "high", null, null, NOW]]);
    assert.match(newer[0]!.explanation, /claims to enforce bundle revision 999999, newer than any published to group kiosks \(the newest is 3\)/);
    assert.match(claimFindings(claims({ claimed: { bundleRevision: 2 } }))[0]!.explanation, /revision 2, which was never published to group kiosks/);
    assert.match(claimFindings(claims({ claimed: { bundleRevision: 1 }, newestRevision: null }))[0]!.explanation, /no bundle was ever published to group kiosks/);
  });

  test("a claimed log seq behind what the control plane acknowledged: the records the node says it lacks", () => {
    const behind = claimFindings(claims({ claimed: { logSeq: 4 } }));
    assert.deepEqual(behind.map((f) => [f.kind, f.severity, f.seqFrom, f.seqTo]), [["claim-log-behind", "high", 5, 10]]);
    assert.match(behind[0]!.explanation, /claims its decision log ends at seq 4, but the control plane holds its records up to seq 10/);
  });

  test("claims that agree with the centre, or no claims, raise nothing", () => {
    assert.deepEqual(claimFindings(claims({ claimed: { bundleRevision: 3, stage: "fresh", logSeq: 10 }, revisionPublished: true })), []);
    assert.deepEqual(claimFindings(claims({ claimed: { bundleRevision: 2, logSeq: 25 }, revisionPublished: true })), []);
    assert.deepEqual(claimFindings(claims({})), []);
  });

  test("both contradictions at once are two findings", () => {
    assert.deepEqual(claimFindings(claims({ claimed: { bundleRevision: 9, logSeq: 0 } })).map((f) => f.kind), ["claim-unpublished-revision", "claim-log-behind"]);
  });
});
