import assert from "node:assert/strict";
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { GeneralSign } from "jose";
import {
  BUNDLE_FILE, BundleError, BundleManager, BundleStore, MANIFEST_FILE, parseManifest, SIGNATURE_FILE, STATE_FILE,
} from "../../src/bundle/index.ts";
import type { BundleFiles, BundleManifest, BundleStatus, PersistedState, VerifiedBundle } from "../../src/bundle/index.ts";
import { encodeManifest } from "../../src/bundle/manifest.ts";
import { HOUR, makeBundle, makeKey, T0, trust, withFiles } from "../support/bundle-factory.ts";
import type { MadeBundle, MakeBundleOptions, TestKey } from "../support/bundle-factory.ts";

const TOLERANCE_MS = 5 * 60_000;
const H = HOUR * 1000;
/** The factory's defaults: valid 24h from T0, grace 6h, restricted 24h. */
const NOT_AFTER = T0 + 24 * H;
const GRACE_END = NOT_AFTER + 6 * H;
const RESTRICTED_END = GRACE_END + 24 * H;

let key: TestKey;
let otherKey: TestKey;

before(async () => {
  key = await makeKey();
  otherKey = await makeKey();
});

function bundle(revision: number, opts: MakeBundleOptions = {}): Promise<MadeBundle> {
  return makeBundle({ revision, keys: [key], ...opts });
}

function manager(state?: PersistedState | null): BundleManager {
  return new BundleManager({ keys: trust(key), clockToleranceMs: TOLERANCE_MS, state: state ?? null });
}

function refusedWith(check: string, message?: RegExp) {
  return (err: unknown) => err instanceof BundleError && err.check === check && (message === undefined || message.test(err.message));
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-bundle-manager-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "state");
}

async function activate(m: BundleManager, made: MadeBundle, nowMs: number): Promise<VerifiedBundle> {
  const result = await m.offer(made.files, nowMs);
  assert.ok("activated" in result, "the bundle is activated");
  return result.activated;
}

/** The same bundle with its manifest changed and signed again by `signer`. */
async function resigned(files: BundleFiles, change: (m: BundleManifest) => BundleManifest, signer: TestKey): Promise<BundleFiles> {
  const manifestBytes = encodeManifest(change(parseManifest(files.get(MANIFEST_FILE)!)));
  const jws = new GeneralSign(manifestBytes);
  jws.addSignature(signer.key).setProtectedHeader({ alg: "EdDSA", kid: signer.kid });
  const { signatures } = await jws.sign();
  const sig = { signatures: signatures.map((s) => ({ protected: s.protected, signature: s.signature })) };
  return withFiles(files, { [MANIFEST_FILE]: manifestBytes, [SIGNATURE_FILE]: JSON.stringify(sig) });
}

function stageOf(s: BundleStatus): [string, boolean] {
  return [s.stage, s.tampered];
}

describe("BundleManager without a bundle", () => {
  test("is locked, whatever the time", () => {
    const m = manager();
    for (const now of [0, T0, NOT_AFTER, RESTRICTED_END * 2]) {
      assert.deepEqual(m.status(now), { stage: "locked", reason: "no verified policy bundle is active", revision: null, notAfterMs: null, tampered: false });
    }
    assert.equal(m.active, null);
    assert.deepEqual(m.persisted(), { minRevision: 0, activeDigest: null, highWaterMs: RESTRICTED_END * 2, tampered: false });
  });

  test("refuses a negative or non-finite clock tolerance", () => {
    assert.throws(() => new BundleManager({ keys: trust(key), clockToleranceMs: -1 }), RangeError);
    assert.throws(() => new BundleManager({ keys: trust(key), clockToleranceMs: Number.NaN }), RangeError);
  });
});

describe("BundleManager ladder", () => {
  test("walks fresh → grace → restricted → locked, each boundary exact", async () => {
    const m = manager();
    const active = await activate(m, await bundle(3), T0);
    assert.equal(active.manifest.revision, 3);
    assert.equal(m.active, active);
    const expected: [number, string][] = [
      [T0, "fresh"],
      [NOT_AFTER - 1, "fresh"],
      [NOT_AFTER, "grace"],
      [GRACE_END - 1, "grace"],
      [GRACE_END, "restricted"],
      [RESTRICTED_END - 1, "restricted"],
      [RESTRICTED_END, "locked"],
      [RESTRICTED_END + 365 * 24 * H, "locked"],
    ];
    for (const [now, stage] of expected) {
      const s = m.status(now);
      assert.deepEqual([s.stage, s.revision, s.notAfterMs, s.tampered], [stage, 3, NOT_AFTER, false], new Date(now).toISOString());
    }
  });

  test("says why, and until when", async () => {
    const m = manager();
    await activate(m, await bundle(3), T0);
    assert.equal(m.status(T0).reason, "policy bundle revision 3 is valid until 2026-11-24T00:00:00Z");
    assert.equal(m.status(NOT_AFTER).reason, "policy bundle revision 3 expired at 2026-11-24T00:00:00Z; in its grace period, restricted from 2026-11-24T06:00:00Z");
    assert.equal(m.status(GRACE_END).reason, "policy bundle revision 3 expired at 2026-11-24T00:00:00Z; restricted, locked from 2026-11-25T06:00:00Z");
    assert.equal(m.status(RESTRICTED_END).reason, "policy bundle revision 3 expired at 2026-11-24T00:00:00Z; its grace and restricted periods are over");
  });

  test("zero-length periods skip their stages", async () => {
    const m = manager();
    await activate(m, await bundle(1, { graceSeconds: 0, restrictedSeconds: 0 }), T0);
    assert.equal(m.status(NOT_AFTER - 1).stage, "fresh");
    assert.equal(m.status(NOT_AFTER).stage, "locked");
  });

  test("a new valid bundle returns a locked node to fresh at once", async () => {
    const m = manager();
    await activate(m, await bundle(1), T0);
    const later = RESTRICTED_END + H;
    assert.equal(m.status(later).stage, "locked");
    await activate(m, await bundle(2, { nowMs: later }), later);
    assert.deepEqual(m.status(later), {
      stage: "fresh", reason: "policy bundle revision 2 is valid until 2026-11-26T07:00:00Z", revision: 2, notAfterMs: later + 24 * H, tampered: false,
    });
  });

  test("status answers the same object until the stage changes", async () => {
    const m = manager();
    await activate(m, await bundle(1), T0);
    const first = m.status(T0);
    assert.equal(m.status(T0 + 1), first);
    assert.equal(m.status(NOT_AFTER - 1), first);
    assert.ok(Object.isFrozen(first));
    const grace = m.status(NOT_AFTER);
    assert.notEqual(grace, first);
    assert.equal(m.status(NOT_AFTER + 1), grace);
  });
});

describe("BundleManager.offer", () => {
  test("the bundle already active is unchanged, and is not handed to accept again", async () => {
    const m = manager();
    const made = await bundle(1);
    const active = await activate(m, made, T0);
    let accepted = 0;
    assert.deepEqual(await m.offer(made.files, T0 + 1000, { accept: () => accepted++ }), { unchanged: true });
    // Re-read from the archive: new byte arrays, the same manifest.
    assert.deepEqual(await m.offer(new Map(made.files), T0 + 2000), { unchanged: true });
    assert.equal(accepted, 0);
    assert.equal(m.active, active);
  });

  test("a higher revision replaces the active one and becomes the floor", async () => {
    const m = manager();
    await activate(m, await bundle(1), T0);
    const second = await activate(m, await bundle(5, { nowMs: T0 + H }), T0 + H);
    assert.deepEqual(m.persisted(), { minRevision: 5, activeDigest: second.digest, highWaterMs: T0 + H, tampered: false });
  });

  const refusals: [string, string, (made: MadeBundle) => Promise<BundleFiles> | BundleFiles][] = [
    ["unsigned", "signature-missing", (made) => withFiles(made.files, { [SIGNATURE_FILE]: null })],
    ["signed by an untrusted key", "unknown-key", async () => (await makeBundle({ revision: 9, keys: [otherKey] })).files],
    ["with a policy file changed after signing", "file-changed", (made) => withFiles(made.files, { "policy.yaml": "kind: Nothing\n" })],
    ["with a file added after signing", "file-added", (made) => withFiles(made.files, { "extra.yaml": "a: 1\n" })],
    ["with its manifest edited after signing", "bad-signature",
      (made) => withFiles(made.files, { [MANIFEST_FILE]: Buffer.from(made.files.get(MANIFEST_FILE)!).toString().replace('"revision": 9', '"revision": 10') })],
    ["re-signed by an untrusted key", "unknown-key", (made) => resigned(made.files, (m) => m, otherKey)],
    ["without a manifest", "malformed-manifest", (made) => withFiles(made.files, { [MANIFEST_FILE]: null })],
    ["not yet valid", "not-yet-valid", async () => (await bundle(9, { nowMs: T0 + 2 * H })).files],
  ];
  for (const [what, check, make] of refusals) {
    test(`a bundle ${what} is refused (${check}) and changes nothing`, async () => {
      const m = manager();
      const active = await activate(m, await bundle(2), T0);
      m.status(T0 + H);
      const state = m.persisted();
      const status = m.status(T0 + H);
      const files = await make(await bundle(9));
      await assert.rejects(m.offer(files, T0 + H), refusedWith(check));
      assert.equal(m.active, active);
      assert.deepEqual(m.persisted(), state);
      assert.equal(m.status(T0 + H), status);
    });
  }

  test("a lower revision is a rollback, the same revision with another manifest is reused", async () => {
    const m = manager();
    await activate(m, await bundle(4), T0);
    await assert.rejects(m.offer((await bundle(3)).files, T0), refusedWith("rollback", /revision 3 is older than the active revision 4/));
    await assert.rejects(m.offer((await bundle(4, { nowMs: T0 + 1000 })).files, T0 + 1000), refusedWith("revision-reused"));
    assert.equal(m.active?.manifest.revision, 4);
  });

  test("a refused bundle leaves the clock's mark alone too", async () => {
    const m = manager();
    await activate(m, await bundle(2), T0);
    await assert.rejects(m.offer((await bundle(1)).files, T0 + 10 * H), refusedWith("rollback"));
    assert.equal(m.persisted().highWaterMs, T0);
  });

  test("what accept throws refuses the bundle and leaves the state as it was", async () => {
    const m = manager();
    const first = await activate(m, await bundle(1), T0);
    const second = await bundle(2, { nowMs: T0 + H });
    const state = m.persisted();
    const refusal = new Error("policy does not compile");
    await assert.rejects(m.offer(second.files, T0 + H, { accept: () => { throw refusal; } }), (err) => err === refusal);
    assert.equal(m.active, first);
    assert.deepEqual(m.persisted(), state);
    let accepted: VerifiedBundle | null = null;
    const result = await m.offer(second.files, T0 + H, { accept: (b) => { accepted = b; } });
    assert.ok("activated" in result);
    assert.equal(accepted, result.activated);
  });

  test("offers made at once are verified one after another against the state each leaves", async () => {
    const m = manager();
    const [two, three] = [await bundle(2), await bundle(3)];
    const results = await Promise.allSettled([m.offer(three.files, T0), m.offer(two.files, T0), m.offer(three.files, T0)]);
    assert.equal(results[0].status, "fulfilled");
    assert.ok(results[1].status === "rejected" && refusedWith("rollback")(results[1].reason));
    assert.deepEqual(results[2], { status: "fulfilled", value: { unchanged: true } });
    assert.equal(m.active?.manifest.revision, 3);
  });
});

describe("BundleManager clock", () => {
  test("a clock going back within the tolerance is not tampering, and time does not go back", async () => {
    const m = manager();
    await activate(m, await bundle(1), T0);
    assert.equal(m.status(NOT_AFTER).stage, "grace");
    assert.deepEqual(stageOf(m.status(NOT_AFTER - TOLERANCE_MS)), ["grace", false]);
    assert.deepEqual(stageOf(m.status(NOT_AFTER - 1)), ["grace", false]);
    assert.equal(m.persisted().highWaterMs, NOT_AFTER);
  });

  test("a clock going back beyond the tolerance restricts a fresh node, and it stays so", async () => {
    const m = manager();
    await activate(m, await bundle(1), T0);
    assert.deepEqual(stageOf(m.status(T0 + H)), ["fresh", false]);
    const s = m.status(T0 + H - TOLERANCE_MS - 1);
    assert.deepEqual(stageOf(s), ["restricted", true]);
    assert.match(s.reason, /^policy bundle revision 1 is valid until 2026-11-24T00:00:00Z; the clock was set back more than 300000 ms behind the latest time seen, so at least restricted until a new bundle is activated$/);
    // Sticky: the clock catching up does not clear it.
    assert.deepEqual(stageOf(m.status(T0 + 2 * H)), ["restricted", true]);
    // The ladder still runs underneath: past the restricted period it locks.
    assert.deepEqual(stageOf(m.status(RESTRICTED_END)), ["locked", true]);
    assert.deepEqual(m.persisted().tampered, true);
  });

  test("a locked node stays locked when the clock goes back", async () => {
    const m = manager();
    await activate(m, await bundle(1), T0);
    assert.equal(m.status(RESTRICTED_END).stage, "locked");
    assert.deepEqual(stageOf(m.status(T0)), ["locked", true]);
  });

  test("a node without a bundle stays locked and records the tampering", () => {
    const m = manager();
    m.status(T0);
    const s = m.status(T0 - TOLERANCE_MS - 1);
    assert.deepEqual([s.stage, s.tampered, s.revision], ["locked", true, null]);
    assert.match(s.reason, /^no verified policy bundle is active; the clock was set back/);
  });

  test("a new bundle clears tampering once the clock is back to the mark", async () => {
    const m = manager();
    await activate(m, await bundle(1), T0);
    m.status(T0 + H);
    m.status(T0);
    assert.deepEqual(stageOf(m.status(T0 + H)), ["restricted", true]);
    await activate(m, await bundle(2, { nowMs: T0 + H }), T0 + H);
    assert.deepEqual(stageOf(m.status(T0 + H)), ["fresh", false]);
    assert.equal(m.persisted().tampered, false);
  });

  test("a new bundle does not clear tampering while the clock is still far behind the mark", async () => {
    const m = manager();
    await activate(m, await bundle(1), T0);
    m.status(T0 + 3 * H);
    await activate(m, await bundle(2, { nowMs: T0 + H }), T0 + H);
    assert.deepEqual(stageOf(m.status(T0 + H)), ["restricted", true]);
  });

  test("a bundle's signed createdAt raises the mark: a clock far behind it is tampering", async () => {
    const m = manager();
    const made = await bundle(1);
    // Valid from T0 but created an hour later: the signature vouches that it is at least T0 + 1h.
    const files = await resigned(made.files, (mf) => ({ ...mf, createdAt: "2026-11-23T01:00:00Z" }), key);
    const result = await m.offer(files, T0);
    assert.ok("activated" in result);
    assert.equal(m.persisted().highWaterMs, T0 + H);
    assert.deepEqual(m.persisted().tampered, true);
    assert.deepEqual(stageOf(m.status(T0)), ["restricted", true]);
  });

  test("a bundle created a little ahead of the clock, within the tolerance, is not tampering", async () => {
    const m = manager();
    const made = await bundle(1);
    const files = await resigned(made.files, (mf) => ({ ...mf, createdAt: "2026-11-23T00:01:00Z" }), key);
    await m.offer(files, T0);
    assert.equal(m.persisted().highWaterMs, T0 + 60_000);
    assert.deepEqual(stageOf(m.status(T0 + 1000)), ["fresh", false]);
  });
});

describe("BundleManager across restarts", () => {
  async function restart(dir: string): Promise<{ m: BundleManager; error: BundleError | null; result: unknown }> {
    const loaded = await new BundleStore(dir).load();
    const m = manager(loaded.state);
    const result = loaded.files === null ? null : await m.offer(loaded.files, T0 + 2 * H);
    return { m, error: loaded.error, result };
  }

  test("boots from the stored bundle, and a lower revision is still a rollback", async (t) => {
    const dir = tempDir(t);
    const m = manager();
    const active = await activate(m, await bundle(5), T0);
    await new BundleStore(dir).saveBundle(active.files, m.persisted());

    const booted = await restart(dir);
    assert.equal(booted.error, null);
    assert.ok(booted.result !== null && typeof booted.result === "object" && "activated" in booted.result);
    assert.equal(booted.m.active?.digest, active.digest);
    assert.deepEqual(stageOf(booted.m.status(T0 + 2 * H)), ["fresh", false]);
    await assert.rejects(booted.m.offer((await bundle(4)).files, T0 + 2 * H), refusedWith("rollback"));
    await assert.rejects(booted.m.offer((await bundle(5, { nowMs: T0 + H })).files, T0 + 2 * H), refusedWith("revision-reused"));
  });

  test("a deleted stored bundle leaves the node locked and the floor in place", async (t) => {
    const dir = tempDir(t);
    const m = manager();
    await activate(m, await bundle(5), T0);
    await new BundleStore(dir).saveBundle(m.active!.files, m.persisted());
    unlinkSync(join(dir, BUNDLE_FILE));

    const booted = await restart(dir);
    assert.ok(booted.error?.check === "store");
    assert.equal(booted.m.status(T0 + 2 * H).stage, "locked");
    await assert.rejects(booted.m.offer((await bundle(4)).files, T0 + 2 * H), refusedWith("rollback"));
    await activate(booted.m, await bundle(6, { nowMs: T0 + 2 * H }), T0 + 2 * H);
  });

  const damage: [string, (dir: string) => void, string][] = [
    ["a truncated bundle", (dir) => writeFileSync(join(dir, BUNDLE_FILE), Buffer.from([0x1f, 0x8b, 0x08])), "malformed-archive"],
    ["a garbage bundle", (dir) => writeFileSync(join(dir, BUNDLE_FILE), "garbage"), "malformed-archive"],
    ["a missing state.json", (dir) => unlinkSync(join(dir, STATE_FILE)), "store"],
    ["a garbage state.json", (dir) => writeFileSync(join(dir, STATE_FILE), "{\"version\":1,"), "store"],
  ];
  for (const [what, harm, check] of damage) {
    test(`${what} boots locked, with a ${check} error`, async (t) => {
      const dir = tempDir(t);
      const m = manager();
      await activate(m, await bundle(5), T0);
      await new BundleStore(dir).saveBundle(m.active!.files, m.persisted());
      harm(dir);
      const booted = await restart(dir);
      assert.equal(booted.error?.check, check);
      assert.equal(booted.result, null);
      assert.equal(booted.m.active, null);
      assert.deepEqual(stageOf(booted.m.status(T0 + 2 * H)), ["locked", false]);
    });
  }

  test("a stored bundle edited on disk fails verification at boot and the node stays locked", async (t) => {
    const dir = tempDir(t);
    const m = manager();
    const made = await bundle(5);
    await activate(m, made, T0);
    await new BundleStore(dir).saveBundle(withFiles(made.files, { "policy.yaml": "kind: Planted\n" }), m.persisted());
    const loaded = await new BundleStore(dir).load();
    const booted = manager(loaded.state);
    await assert.rejects(booted.offer(loaded.files!, T0 + H), refusedWith("file-changed"));
    assert.equal(booted.status(T0 + H).stage, "locked");
  });

  test("tampering survives a restart: reactivating the stored bundle does not clear it", async (t) => {
    const dir = tempDir(t);
    const m = manager();
    await activate(m, await bundle(5), T0);
    m.status(T0 + 3 * H);
    m.status(T0);
    await new BundleStore(dir).saveBundle(m.active!.files, m.persisted());

    const booted = await restart(dir);
    assert.equal(booted.m.persisted().tampered, true);
    assert.deepEqual(stageOf(booted.m.status(T0 + 3 * H)), ["restricted", true]);
  });

  test("the clock's mark survives a restart: time does not go back across it", async (t) => {
    const dir = tempDir(t);
    const m = manager();
    await activate(m, await bundle(5), T0);
    m.status(GRACE_END);
    await new BundleStore(dir).saveBundle(m.active!.files, m.persisted());
    const loaded = await new BundleStore(dir).load();
    const booted = manager(loaded.state);
    await booted.offer(loaded.files!, GRACE_END - TOLERANCE_MS);
    assert.deepEqual(stageOf(booted.status(GRACE_END - TOLERANCE_MS)), ["restricted", false]);
  });
});
