import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { INITIAL_CLOCK, observeClock, raiseHighWater } from "../../src/bundle/clock.ts";
import type { ClockState } from "../../src/bundle/clock.ts";

const T = Date.parse("2026-11-23T12:00:00Z");
const TOLERANCE = 60_000;

describe("observeClock", () => {
  test("a reading ahead of the mark raises it and is the effective time", () => {
    const { state, effectiveNowMs } = observeClock({ highWaterMs: T, tampered: false }, T + 5, TOLERANCE);
    assert.deepEqual(state, { highWaterMs: T + 5, tampered: false });
    assert.equal(effectiveNowMs, T + 5);
    assert.deepEqual(observeClock(INITIAL_CLOCK, T, TOLERANCE), { state: { highWaterMs: T, tampered: false }, effectiveNowMs: T });
  });

  test("a step back within the tolerance keeps the mark as the effective time and is not tampering", () => {
    const s: ClockState = { highWaterMs: T, tampered: false };
    for (const back of [1, TOLERANCE - 1, TOLERANCE]) {
      const result = observeClock(s, T - back, TOLERANCE);
      assert.equal(result.state, s, "an unchanged state is returned as it is");
      assert.equal(result.effectiveNowMs, T);
    }
    assert.equal(observeClock(s, T, TOLERANCE).state, s);
  });

  test("a step back beyond the tolerance is tampering, and stays so as the clock moves on", () => {
    const first = observeClock({ highWaterMs: T, tampered: false }, T - TOLERANCE - 1, TOLERANCE);
    assert.deepEqual(first, { state: { highWaterMs: T, tampered: true }, effectiveNowMs: T });
    const caughtUp = observeClock(first.state, T + 1000, TOLERANCE);
    assert.deepEqual(caughtUp, { state: { highWaterMs: T + 1000, tampered: true }, effectiveNowMs: T + 1000 });
  });

  test("a reading that is not a number leaves the state and the effective time alone", () => {
    const s: ClockState = { highWaterMs: T, tampered: false };
    assert.deepEqual(observeClock(s, Number.NaN, TOLERANCE), { state: s, effectiveNowMs: T });
  });

  test("the effective time never goes backwards and tampering never clears, for any readings", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 2 ** 42 }), { maxLength: 30 }), fc.nat({ max: 10_000_000 }), (readings, tolerance) => {
        let state = INITIAL_CLOCK;
        let lastEffective = 0;
        let everBack = false;
        for (const now of readings) {
          everBack ||= now < state.highWaterMs - tolerance;
          const result = observeClock(state, now, tolerance);
          assert.ok(result.effectiveNowMs >= lastEffective);
          assert.ok(result.effectiveNowMs >= now);
          assert.equal(result.state.tampered, everBack);
          assert.equal(result.state.highWaterMs, result.effectiveNowMs);
          state = result.state;
          lastEffective = result.effectiveNowMs;
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("raiseHighWater", () => {
  test("raises the mark to signed time, never lowers it, and keeps the tampered flag", () => {
    const s: ClockState = { highWaterMs: T, tampered: true };
    assert.deepEqual(raiseHighWater(s, T + 1), { highWaterMs: T + 1, tampered: true });
    assert.equal(raiseHighWater(s, T), s);
    assert.equal(raiseHighWater(s, T - 1), s);
  });

  test("a reading behind a raised mark by more than the tolerance is tampering", () => {
    const raised = raiseHighWater({ highWaterMs: T, tampered: false }, T + 10 * TOLERANCE);
    assert.equal(observeClock(raised, T, TOLERANCE).state.tampered, true);
  });
});
