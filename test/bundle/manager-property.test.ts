import assert from "node:assert/strict";
import { mkdtempSync, rmSync, truncateSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import fc from "fast-check";
import {
  BUNDLE_FILE, BundleError, BundleManager, BundleStore, MANIFEST_FILE, SIGNATURE_FILE, STAGES, STATE_FILE, stageAt, verifyBundle,
} from "../../src/bundle/index.ts";
import type { BundleFiles, BundleStatus, VerifiedBundle } from "../../src/bundle/index.ts";
import { HOUR, makeBundle, makeKey, T0, trust, withFiles } from "../support/bundle-factory.ts";
import type { TestKey } from "../support/bundle-factory.ts";

const TOLERANCE_MS = 5 * 60_000;
const H = HOUR * 1000;

interface PoolEntry {
  files: BundleFiles;
  /** null for a bundle that must never verify (tampered, unsigned, signed by an untrusted key) */
  good: VerifiedBundle | null;
  what: string;
}

let key: TestKey;
const pool: PoolEntry[] = [];
let goodPool: PoolEntry[] = [];
let badPool: PoolEntry[] = [];

/** A small pool of real signed bundles, built once: revisions 1-6 with varied windows, and broken copies of them. */
before(async () => {
  key = await makeKey();
  const stranger = await makeKey();
  const hours = [0, 5, 20, 40];
  const validFor = [1, 6, 24];
  const grace = [0, 1, 6];
  const restricted = [0, 2, 24];
  for (let i = 0; i < 12; i++) {
    const revision = 1 + (i % 6);
    const made = await makeBundle({
      revision,
      keys: [key],
      nowMs: T0 + hours[i % 4]! * H,
      validForSeconds: validFor[i % 3]! * HOUR,
      graceSeconds: grace[(i >> 1) % 3]! * HOUR,
      restrictedSeconds: restricted[(i >> 2) % 3]! * HOUR,
      policy: { "policy.yaml": `# variant ${i}\nkind: AuthorizationPolicy\n` },
    });
    const good = await verifyBundle(made.files, { keys: trust(key), nowMs: Number.MAX_SAFE_INTEGER });
    pool.push({ files: made.files, good, what: `revision ${revision} variant ${i}` });
    const manifest = Buffer.from(made.files.get(MANIFEST_FILE)!).toString();
    pool.push(
      { files: withFiles(made.files, { [SIGNATURE_FILE]: null }), good: null, what: `unsigned ${i}` },
      { files: withFiles(made.files, { "policy.yaml": "kind: Planted\n" }), good: null, what: `file changed ${i}` },
      { files: withFiles(made.files, { [MANIFEST_FILE]: manifest.replace(`"revision": ${revision}`, `"revision": ${revision + 10}`) }), good: null, what: `manifest edited ${i}` },
    );
    if (i < 6) {
      const foreign = await makeBundle({ revision: revision + 10, keys: [stranger], nowMs: T0 });
      pool.push({ files: foreign.files, good: null, what: `untrusted key ${i}` });
    }
  }
  goodPool = pool.filter((e) => e.good !== null);
  badPool = pool.filter((e) => e.good === null);
});

type Action =
  | { kind: "offer"; good: boolean; index: number }
  | { kind: "clock"; deltaMs: number }
  | { kind: "restart"; damage: "none" | "truncate" | "delete-state" };

const action: fc.Arbitrary<Action> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant("offer" as const), good: fc.boolean(), index: fc.nat({ max: 1000 }) }), weight: 4 },
  {
    arbitrary: fc.record({
      kind: fc.constant("clock" as const),
      // Mostly forward, as clocks go; backward steps both inside and beyond the tolerance.
      deltaMs: fc.oneof(
        { arbitrary: fc.integer({ min: -2000, max: 2000 }), weight: 2 },
        { arbitrary: fc.integer({ min: -TOLERANCE_MS * 2, max: TOLERANCE_MS * 2 }), weight: 2 },
        { arbitrary: fc.integer({ min: -H / 2, max: 4 * H }), weight: 4 },
        { arbitrary: fc.integer({ min: -30 * H, max: 30 * H }), weight: 1 },
      ),
    }),
    weight: 5,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("restart" as const),
      damage: fc.constantFrom("none" as const, "none" as const, "truncate" as const, "delete-state" as const),
    }),
    weight: 1,
  },
);

/** The reference: what the node must believe, kept by the simplest rules that could be right. */
interface Model {
  highestRevision: number;
  activeDigest: string | null;
  highWaterMs: number;
  tampered: boolean;
}

function observe(model: Model, wallMs: number): void {
  if (wallMs < model.highWaterMs - TOLERANCE_MS) model.tampered = true;
  model.highWaterMs = Math.max(model.highWaterMs, wallMs);
}

function rank(s: BundleStatus): number {
  return STAGES.indexOf(s.stage);
}

test("random bundles, clock moves and restarts never break the manager's invariants", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "edgeward-bundle-property-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 30 * H }), fc.array(action, { minLength: 1, maxLength: 30, size: "max" }), async (start, actions) => {
      const dir = join(root, `run-${run++}`);
      const keys = trust(key);
      let m = new BundleManager({ keys, clockToleranceMs: TOLERANCE_MS });
      let wall = T0 + start;
      const model: Model = { highestRevision: 0, activeDigest: null, highWaterMs: 0, tampered: false };
      // Assigned inside `offer` too, which the compiler's narrowing does not see.
      let active = null as VerifiedBundle | null;
      let previous: { digest: string | null; tampered: boolean; rank: number } | null = null;

      /** What the state directory holds: the last bundle saved, and whether it was damaged since. */
      let disk: { bundle: "none" | "good" | "corrupt"; digest: string | null } = { bundle: "none", digest: null };

      const offer = async (files: BundleFiles, entry: PoolEntry | null): Promise<void> => {
        let result;
        try {
          result = await m.offer(files, wall);
        } catch (err) {
          assert.ok(err instanceof BundleError, `only BundleErrors are thrown, got ${String(err)}`);
          return;
        }
        if (entry !== null) assert.ok(entry.good !== null, `${entry.what} must be refused`);
        if ("unchanged" in result) {
          observe(model, wall);
          return;
        }
        const verified = result.activated;
        assert.ok(verified.manifest.revision >= model.highestRevision, "the active revision never decreases");
        if (verified.digest !== model.activeDigest) model.tampered = false;
        model.highWaterMs = Math.max(model.highWaterMs, verified.createdAtMs);
        observe(model, wall);
        model.highestRevision = verified.manifest.revision;
        model.activeDigest = verified.digest;
        active = verified;
      };

      for (const step of actions) {
        if (step.kind === "offer") {
          const choices = step.good ? goodPool : badPool;
          const entry = choices[step.index % choices.length]!;
          await offer(entry.files, entry);
        } else if (step.kind === "clock") {
          wall = Math.max(0, wall + step.deltaMs);
        } else {
          const store = new BundleStore(dir);
          const saved = m.persisted();
          if (active !== null) {
            await store.saveBundle(active.files, saved);
            disk = { bundle: "good", digest: active.digest };
          } else {
            await store.saveState(saved);
          }
          if (step.damage === "truncate" && disk.bundle !== "none") {
            const path = join(dir, BUNDLE_FILE);
            truncateSync(path, Math.floor(statSync(path).size / 3));
            disk.bundle = "corrupt";
          }
          if (step.damage === "delete-state") rmSync(join(dir, STATE_FILE));

          const loaded = await new BundleStore(dir).load();
          const refused = step.damage === "delete-state"
            ? disk.bundle !== "none"
            : disk.bundle === "corrupt" || (disk.bundle === "good") === (saved.activeDigest === null);
          assert.equal(loaded.error !== null, refused, loaded.error?.message);
          assert.equal(loaded.files !== null, !refused && disk.bundle === "good");
          if (step.damage === "delete-state") {
            // Losing state.json is an operator's reset: nothing is known any more, the rollback floor included.
            assert.equal(loaded.state, null);
            Object.assign(model, { highestRevision: 0, activeDigest: null, highWaterMs: 0, tampered: false });
            previous = null;
          } else {
            assert.deepEqual(loaded.state, saved);
          }
          m = new BundleManager({ keys, clockToleranceMs: TOLERANCE_MS, state: loaded.state });
          active = null;
          if (loaded.files !== null) {
            await offer(loaded.files, null);
            assert.equal(m.active?.digest, disk.digest, "the stored bundle comes back");
          }
        }

        // Invariants, after every step.
        const status = m.status(wall);
        observe(model, wall);
        const current = m.active;
        assert.equal(current, active);
        assert.deepEqual(m.persisted(), {
          minRevision: model.highestRevision, activeDigest: model.activeDigest, highWaterMs: model.highWaterMs, tampered: model.tampered,
        });
        assert.equal(status.tampered, model.tampered);
        if (current === null) {
          assert.equal(status.stage, "locked", "no bundle: locked");
        } else {
          assert.equal(current.manifest.revision, model.highestRevision);
          const good = pool.find((e) => e.good?.digest === current.digest);
          assert.ok(good !== undefined, "the active bundle is one that verified");
          assert.deepEqual(new Set(current.files.keys()), new Set(good.files.keys()));
          for (const [path, bytes] of good.files) assert.deepEqual(Buffer.from(current.files.get(path)!), Buffer.from(bytes));
          const ladder = stageAt({ notAfterMs: current.notAfterMs, ...current.manifest.degradation }, model.highWaterMs);
          assert.equal(status.stage, model.tampered && STAGES.indexOf(ladder) < 2 ? "restricted" : ladder);
        }
        if (status.tampered) assert.ok(rank(status) >= STAGES.indexOf("restricted"), "tampered: at least restricted");
        const digest = current?.digest ?? null;
        if (previous !== null && previous.digest === digest && !previous.tampered && !status.tampered) {
          assert.ok(rank(status) >= previous.rank, "the stage only worsens while the bundle and the clock hold");
        }
        previous = { digest, tampered: status.tampered, rank: rank(status) };
      }
    }),
    { numRuns: 100 },
  );
});
