import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Agent } from "undici";
import { CALLER, Fleet, GROUP, NODE, waitFor, type GatewayProcess, type LogRecord } from "../support/fleet.ts";

/**
 * Issue 5's end-to-end scenario, every part a real process: a control plane and two gateways that reach it only
 * through relays the test can cut. Bundles propagate by long-poll; the link is cut and the control plane stopped
 * while the gateways keep serving and logging; a caller is revoked centrally during the outage; once everything is
 * back, every decision arrives exactly once and the allows the offline gateways made after the revocation are
 * reported as findings. The steps share state and run in order.
 */

interface Finding { node: string; kind: string; severity: string; seqFrom: number; seqTo: number; explanation: string }

describe("fleet: bundles out, decisions back, a revocation during an outage", () => {
  let fleet: Fleet;
  let gateways: GatewayProcess[];
  let alice: Agent;
  let bob: Agent;
  /** When the control plane recorded bob's revocation (its clock: the same machine's as the gateways'). */
  let revokedAt: string;
  /** What each node had uploaded before the link was cut. */
  const ackedBeforeCut = new Map<string, number>();

  /** Sends `who` through `gw` `n` times, one after the other; each is allowed and answered. */
  async function traffic(gw: GatewayProcess, who: Agent, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const r = await gw.chat(who);
      assert.equal(r.status, 200, `${gw.name}: ${r.text}`);
    }
  }

  /** Waits until the control plane acknowledged every record in the gateway's log. */
  async function uploaded(gw: GatewayProcess): Promise<void> {
    const logSeq = (await gw.readyz()).logSeq;
    assert.equal(gw.log().length, logSeq, "every decision the gateway answered is in its log file");
    await waitFor(`${gw.name}: ackSeq ${logSeq} at the control plane`, async () => (await fleet.node(gw.id))?.ackSeq === logSeq);
  }

  before(async () => {
    fleet = await Fleet.create({ nodes: ["gw-a", "gw-b"], callers: ["alice", "bob"] });
    await fleet.startControlPlane();
    // Long-polls of 20 s: a hold the publish failed to end would stand out from one it ended, even on a busy machine.
    const start = (name: string) => fleet.gateway(name, { policy: "bundle", longPoll: "20s" });
    gateways = await Promise.all([start("gw-a"), start("gw-b")]);
    alice = fleet.agent("alice");
    bob = fleet.agent("bob");
  });

  after(async () => {
    await fleet?.cleanup();
  });

  test("1. revision 1 is pushed and reaches both gateways through their held long-polls", async () => {
    for (const gw of gateways) {
      const ready = await gw.readyz();
      assert.deepEqual([ready.bundle?.stage, ready.bundle?.revision], ["locked", null], `${gw.name} starts with no bundle`);
      assert.equal((await gw.chat(alice)).status, 403, "a node without a bundle denies everything");
    }
    await fleet.writeBundle("rev1.tar.gz", 1, ["alice", "bob"]);
    // Each gateway's fetch is held open by the control plane (Prefer: wait=20), not answered at once.
    await waitFor("both gateways' bundle requests held open", () => gateways.every((gw) => gw.relay.heldMs() > 1000), 15_000);
    const heldSince = gateways.map((gw) => Date.now() - gw.relay.heldMs());
    const pushed = await fleet.operatorCli(["bundle", "push", "rev1.tar.gz", "--group", GROUP]);
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.match(pushed.stdout, new RegExp(`^pushed revision 1 to group ${GROUP}\\n`));

    const activatedAt = await Promise.all(gateways.map(async (gw) => {
      await waitFor(`${gw.name}: revision 1 active`, async () => (await gw.readyz()).bundle?.revision === 1, 15_000);
      return Date.now();
    }));
    gateways.forEach((gw, i) => {
      // Unwoken, the hold would have ended after 20 s with 404, and the next fetch come a poll interval later.
      assert.ok(activatedAt[i]! - heldSince[i]! < 15_000, `${gw.name}: the publish answered the held request (${activatedAt[i]! - heldSince[i]!} ms into it)`);
    });
    for (const gw of gateways) assert.equal((await gw.readyz()).bundle?.stage, "fresh");

    // The fleet view: what each node reported with its calls after the activation.
    await waitFor("both nodes report revision 1", async () => {
      for (const gw of gateways) if ((await fleet.node(gw.id))?.claimed.bundleRevision !== 1) return false;
      return true;
    });
    const listed = await fleet.operatorCli(["nodes", "list", "--output", "json"]);
    assert.equal(listed.code, 0, listed.stderr);
    const nodes = JSON.parse(listed.stdout) as { id: string; group: string; claimed: { bundleRevision: number; stage: string }; lastContact: string; firstSeen: string }[];
    assert.deepEqual(nodes.map((n) => [n.id, n.group, n.claimed.bundleRevision, n.claimed.stage]), [[NODE("gw-a"), GROUP, 1, "fresh"], [NODE("gw-b"), GROUP, 1, "fresh"]]);
    for (const n of nodes) {
      assert.ok(Number.isFinite(Date.parse(n.lastContact)) && Math.abs(Date.now() - Date.parse(n.lastContact)) < 30_000, n.lastContact);
      assert.ok(Date.parse(n.lastContact) >= Date.parse(n.firstSeen));
    }
  });

  test("2. both callers are served by both gateways, and the decisions are uploaded", async () => {
    for (const gw of gateways) {
      await traffic(gw, alice, 3);
      await traffic(gw, bob, 3);
    }
    for (const gw of gateways) {
      await uploaded(gw);
      const central = fleet.central(gw.id);
      assert.deepEqual(central.lines, gw.log().map((r) => r.line), `${gw.name}: the control plane holds the log byte for byte`);
      ackedBeforeCut.set(gw.id, central.lines.length);
    }
  });

  test("3. the link is cut, bob is revoked centrally, the control plane stops and restarts: the gateways serve throughout", async () => {
    for (const gw of gateways) gw.relay.cut();
    // Offline, before the revocation: ordinary decisions.
    for (const gw of gateways) {
      await traffic(gw, alice, 2);
      await traffic(gw, bob, 2);
    }

    const revoked = await fleet.operatorCli(["revoke", "--spiffe-id", CALLER("bob"), "--reason", "laptop stolen"]);
    assert.equal(revoked.code, 0, revoked.stderr);
    const match = new RegExp(`^revoked spiffe-id ${CALLER("bob")} at (\\S+)\\n  group ${GROUP}: bundle revision 2 carries it\\n$`).exec(revoked.stdout);
    assert.ok(match, revoked.stdout);
    revokedAt = match[1]!;

    // The edge cannot hear it: bob is still allowed, and those allows are what the centre must catch later.
    for (const gw of gateways) {
      await traffic(gw, bob, 3);
      await traffic(gw, alice, 2);
      await traffic(gw, bob, 2);
      assert.equal((await gw.readyz()).bundle?.revision, 1);
    }

    const contact = new Map<string, string | undefined>();
    for (const gw of gateways) contact.set(gw.id, (await fleet.node(gw.id))?.lastContact);
    assert.equal(await fleet.stopControlPlane("SIGTERM"), 0, "a graceful stop");
    for (const gw of gateways) {
      await traffic(gw, alice, 2);
      await traffic(gw, bob, 2);
    }
    await fleet.startControlPlane(); // the same database
    // The control plane kept what it had, and heard nothing from the nodes since.
    for (const gw of gateways) {
      const node = await fleet.node(gw.id);
      assert.deepEqual([node?.ackSeq, node?.lastContact], [ackedBeforeCut.get(gw.id), contact.get(gw.id)]);
    }
    for (const gw of gateways) await traffic(gw, alice, 1);
  });

  test("4. the link is back: every decision arrives exactly once, the offline allows are findings, bob is refused", async () => {
    for (const gw of gateways) gw.relay.restore();

    for (const gw of gateways) {
      await waitFor(`${gw.name}: revision 2 active`, async () => (await gw.readyz()).bundle?.revision === 2, 20_000);
      // What the node installed is the control plane's revocation revision, signed with the release key.
      const kept = await fleet.cli(["bundle", "verify", join(gw.dir, "bundle", "bundle.tar.gz"), "--pub", "release.pub"]);
      assert.equal(kept.code, 0, kept.stderr);
      assert.match(kept.stdout, /^ok: edge-policy revision 2\n/);
      assert.match(kept.stdout, /\n {2}revoked {4}1 SPIFFE ID, 0 serials\n/);
      const refused = await gw.chat(bob);
      assert.equal(refused.status, 401, refused.text);
      assert.equal(refused.json().error.code, "revoked_identity");
      assert.equal((await gw.chat(alice)).status, 200);
    }

    for (const gw of gateways) await uploaded(gw);
    const nodes = JSON.parse((await fleet.operatorCli(["nodes", "list", "--output", "json"])).stdout) as { id: string; claimed: { bundleRevision: number; stage: string }; ackSeq: number }[];
    assert.deepEqual(nodes.map((n) => [n.id, n.claimed.bundleRevision, n.claimed.stage, n.ackSeq]), gateways.map((gw) => [gw.id, 2, "fresh", gw.log().length]));
    for (const gw of gateways) {
      const log = gw.log();
      const last = log.at(-1)!;
      const central = fleet.central(gw.id);
      assert.deepEqual(central.seqs, log.map((r) => r.seq), `${gw.name}: one record per seq, none missing`);
      assert.deepEqual(central.lines, log.map((r) => r.line), `${gw.name}: every decision, byte for byte`);
      assert.deepEqual(central.head, { ackSeq: last.seq, ackHash: last.hash });
      // The head as the node itself reads it.
      const head = await fleet.asNode(gw.name, "/v1/logs/head");
      assert.deepEqual(head.json(), { ackSeq: last.seq, ackHash: last.hash });
      const verified = await fleet.cli(["log", "verify", gw.logPath]);
      assert.equal(verified.code, 0, verified.stderr);
      assert.equal(verified.stdout, `ok: ${log.length} records, last seq ${last.seq}, head ${last.hash}\n`);
    }

    const listed = await fleet.operatorCli(["findings", "list", "--output", "json"]);
    assert.equal(listed.code, 0, listed.stderr);
    const findings = JSON.parse(listed.stdout) as Finding[];
    assert.deepEqual([...new Set(findings.map((f) => f.kind))].sort(), ["degraded-stage", "revoked-caller-allowed"], "nothing else was wrong");
    for (const gw of gateways) {
      // The one request a gateway denied before it had any bundle (step 1) was decided in stage locked.
      const locked = findings.filter((f) => f.node === gw.id && f.kind === "degraded-stage");
      assert.deepEqual(locked.map((f) => [f.severity, f.seqFrom, f.seqTo]), [["medium", 1, 1]]);
      assert.deepEqual([gw.log()[0]!.decision, gw.log()[0]!.stage], ["DENY", "locked"]);

      const bobAllowed = gw.log().filter((r: LogRecord) => r.principal === CALLER("bob") && r.decision === "ALLOW");
      const expected = bobAllowed.filter((r) => Date.parse(r.time) >= Date.parse(revokedAt)).map((r) => r.seq);
      assert.equal(expected.length, 3 + 2 + 2, `${gw.name}: bob's allows after the revocation (while cut, then while the control plane was down)`);
      assert.equal(bobAllowed.length - expected.length, 3 + 2, `${gw.name}: bob's allows before it (online, then cut), which are no finding`);
      const mine = findings.filter((f) => f.node === gw.id && f.kind === "revoked-caller-allowed");
      assert.ok(mine.every((f) => f.severity === "high" && f.explanation.includes(CALLER("bob")) && f.explanation.includes("laptop stolen")), JSON.stringify(mine));
      const covered = mine.flatMap((f) => Array.from({ length: f.seqTo - f.seqFrom + 1 }, (_, i) => f.seqFrom + i)).sort((a, b) => a - b);
      assert.deepEqual(covered, expected, `${gw.name}: the findings cover exactly bob's post-revocation allows`);
    }
  });

  test("5. every decision a gateway made under signed bundles carries the stage it was made in", () => {
    // docs/decision-log.md: `stage` is absent only when the policy comes from files; docs/gateway.md: every record
    // carries the stage. The revoked_identity denial of step 4 is recorded before the stage is read.
    for (const gw of gateways) {
      const unstaged = gw.log().filter((r) => r.stage === undefined).map((r) => ({ seq: r.seq, decision: r.decision, status: r.status }));
      assert.deepEqual(unstaged, [], `${gw.name}: records without a stage`);
    }
  });
});
