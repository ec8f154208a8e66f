import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { nextStageChangeMs, STAGES, stageAt } from "../../src/bundle/ladder.ts";
import type { LadderWindow } from "../../src/bundle/ladder.ts";

const NOT_AFTER = Date.parse("2026-11-24T00:00:00Z");
const WINDOW: LadderWindow = { notAfterMs: NOT_AFTER, graceSeconds: 21600, restrictedSeconds: 86400 };
const GRACE_END = NOT_AFTER + 21600_000;
const RESTRICTED_END = GRACE_END + 86400_000;

describe("stageAt", () => {
  test("each boundary instant starts the next stage", () => {
    const cases: [number, string][] = [
      [NOT_AFTER - 86400_000, "fresh"],
      [NOT_AFTER - 1, "fresh"],
      [NOT_AFTER, "grace"],
      [GRACE_END - 1, "grace"],
      [GRACE_END, "restricted"],
      [RESTRICTED_END - 1, "restricted"],
      [RESTRICTED_END, "locked"],
      [RESTRICTED_END + 365 * 86400_000, "locked"],
    ];
    for (const [now, stage] of cases) assert.equal(stageAt(WINDOW, now), stage, new Date(now).toISOString());
  });

  test("a zero-length period skips its stage", () => {
    const noGrace = { ...WINDOW, graceSeconds: 0 };
    assert.equal(stageAt(noGrace, NOT_AFTER - 1), "fresh");
    assert.equal(stageAt(noGrace, NOT_AFTER), "restricted");
    const neither = { ...WINDOW, graceSeconds: 0, restrictedSeconds: 0 };
    assert.equal(stageAt(neither, NOT_AFTER - 1), "fresh");
    assert.equal(stageAt(neither, NOT_AFTER), "locked");
    const noRestricted = { ...WINDOW, restrictedSeconds: 0 };
    assert.equal(stageAt(noRestricted, GRACE_END - 1), "grace");
    assert.equal(stageAt(noRestricted, GRACE_END), "locked");
  });

  test("the stage never becomes less severe as time passes", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 0, max: 100_000 }),
        fc.integer({ min: -400_000_000, max: 400_000_000 }), fc.nat({ max: 400_000_000 }),
        (graceSeconds, restrictedSeconds, offset, step) => {
          const w = { notAfterMs: NOT_AFTER, graceSeconds, restrictedSeconds };
          const before = STAGES.indexOf(stageAt(w, NOT_AFTER + offset));
          assert.ok(STAGES.indexOf(stageAt(w, NOT_AFTER + offset + step)) >= before);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("nextStageChangeMs", () => {
  test("names the next boundary, and null once locked", () => {
    assert.equal(nextStageChangeMs(WINDOW, NOT_AFTER - 5000), NOT_AFTER);
    assert.equal(nextStageChangeMs(WINDOW, NOT_AFTER), GRACE_END);
    assert.equal(nextStageChangeMs(WINDOW, GRACE_END - 1), GRACE_END);
    assert.equal(nextStageChangeMs(WINDOW, GRACE_END), RESTRICTED_END);
    assert.equal(nextStageChangeMs(WINDOW, RESTRICTED_END), null);
    assert.equal(nextStageChangeMs(WINDOW, RESTRICTED_END + 1), null);
  });

  test("the stage is constant up to the change and different at it", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 0, max: 100_000 }),
        fc.integer({ min: -400_000_000, max: 400_000_000 }),
        (graceSeconds, restrictedSeconds, offset) => {
          const w = { notAfterMs: NOT_AFTER, graceSeconds, restrictedSeconds };
          const now = NOT_AFTER + offset;
          const stage = stageAt(w, now);
          const next = nextStageChangeMs(w, now);
          if (next === null) {
            assert.equal(stage, "locked");
            return;
          }
          assert.ok(next > now);
          assert.equal(stageAt(w, next - 1), stage);
          assert.notEqual(stageAt(w, next), stage);
        },
      ),
      { numRuns: 500 },
    );
  });
});
