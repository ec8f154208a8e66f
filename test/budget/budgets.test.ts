import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { BudgetError, Budgets, budgetKey } from "../../src/budget/index.ts";

const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/** Charges tokens used beyond any reservation (what settling with nothing reserved does), and says what is left. */
function charge(b: Budgets, key: string, tokens: number, limits: { tokensPerMinute?: number }, now: number): { remaining: number; exhausted: boolean } {
  b.settle(key, limits, now, 0, tokens);
  const remaining = b.remainingTokens(key, limits, now);
  return { remaining, exhausted: remaining < 1 - 1e-9 };
}

describe("requests per minute", () => {
  test("rpm 3: three admitted, the fourth refused for 20 s, admitted again after 20 s", () => {
    const b = new Budgets();
    const limits = { requestsPerMinute: 3 };
    for (let i = 0; i < 3; i++) assert.deepEqual(b.admit("alice", limits, T0), { ok: true });
    assert.deepEqual(b.admit("alice", limits, T0), { ok: false, limit: "requestsPerMinute", retryAfterSeconds: 20 });
    assert.deepEqual(b.admit("alice", limits, T0 + 19_999), { ok: false, limit: "requestsPerMinute", retryAfterSeconds: 1 });
    assert.deepEqual(b.admit("alice", limits, T0 + 20_000), { ok: true });
    assert.deepEqual(b.admit("alice", limits, T0 + 20_000), { ok: false, limit: "requestsPerMinute", retryAfterSeconds: 20 });
  });

  test("retryAfter rounds up partial seconds", () => {
    const b = new Budgets();
    const limits = { requestsPerMinute: 3 };
    for (let i = 0; i < 3; i++) b.admit("k", limits, T0);
    assert.deepEqual(b.admit("k", limits, T0 + 500), { ok: false, limit: "requestsPerMinute", retryAfterSeconds: 20 });
    assert.deepEqual(b.admit("k", limits, T0 + 1_000), { ok: false, limit: "requestsPerMinute", retryAfterSeconds: 19 });
  });

  test("a refusal takes nothing", () => {
    const b = new Budgets();
    const limits = { requestsPerMinute: 1 };
    assert.equal(b.admit("k", limits, T0).ok, true);
    for (let i = 0; i < 100; i++) assert.equal(b.admit("k", limits, T0 + i).ok, false);
    assert.equal(b.admit("k", limits, T0 + 60_000).ok, true);
  });

  test("the bucket refills continuously and never beyond its capacity", () => {
    const b = new Budgets();
    const limits = { requestsPerMinute: 60 };
    assert.equal(b.admit("k", limits, T0).ok, true);
    // An hour idle still allows only one minute's worth in a burst.
    const later = T0 + 3_600_000;
    let admitted = 0;
    // Bounded: a bucket that never empties fails the count below rather than spinning.
    while (admitted <= 1000 && b.admit("k", limits, later).ok) admitted++;
    assert.equal(admitted, 60);
    assert.equal(b.admit("k", limits, later + 1_000).ok, true);
    assert.equal(b.admit("k", limits, later + 1_000).ok, false);
  });

  test("keys are independent", () => {
    const b = new Budgets();
    const limits = { requestsPerMinute: 1 };
    assert.equal(b.admit("alice", limits, T0).ok, true);
    assert.equal(b.admit("alice", limits, T0).ok, false);
    assert.equal(b.admit("bob", limits, T0).ok, true);
    assert.equal(b.admit(budgetKey("alice", "llama"), limits, T0).ok, true);
  });

  test("a key with no limits is never refused and is not tracked", () => {
    const b = new Budgets();
    for (let i = 0; i < 1000; i++) assert.deepEqual(b.admit("free", {}, T0), { ok: true });
    assert.equal(b.size, 0);
    assert.equal(b.remainingTokens("free", {}, T0), Infinity);
    assert.deepEqual(charge(b, "free", 1e9, {}, T0), { remaining: Infinity, exhausted: false });
  });

  test("a clock that steps back refills nothing and does not break the bucket", () => {
    const b = new Budgets();
    const limits = { requestsPerMinute: 2 };
    b.admit("k", limits, T0);
    b.admit("k", limits, T0);
    assert.equal(b.admit("k", limits, T0 - 60_000).ok, false);
    assert.deepEqual(b.admit("k", limits, T0 + 30_000), { ok: true });
  });
});

describe("tokens per minute", () => {
  test("tokens run out mid-way; usage already made is still charged and the debt repaid by refill", () => {
    const b = new Budgets();
    const limits = { tokensPerMinute: 1000 };
    assert.equal(b.remainingTokens("k", limits, T0), 1000);
    assert.deepEqual(b.admit("k", limits, T0), { ok: true });
    assert.deepEqual(charge(b, "k", 600, limits, T0), { remaining: 400, exhausted: false });
    assert.deepEqual(b.admit("k", limits, T0), { ok: true }, "400 left: admitted");
    assert.deepEqual(charge(b, "k", 400, limits, T0), { remaining: 0, exhausted: true });
    assert.deepEqual(charge(b, "k", 200, limits, T0), { remaining: -200, exhausted: true });
    // 201 tokens short of one: 201 * 60 / 1000 = 12.06 s.
    assert.deepEqual(b.admit("k", limits, T0), { ok: false, limit: "tokensPerMinute", retryAfterSeconds: 13 });
    assert.equal(b.remainingTokens("k", limits, T0 + 12_000), 0);
    assert.equal(b.admit("k", limits, T0 + 12_000).ok, false);
    assert.deepEqual(b.admit("k", limits, T0 + 12_060), { ok: true });
  });

  test("admit reserves no tokens unless asked to", () => {
    const b = new Budgets();
    const limits = { tokensPerMinute: 10 };
    for (let i = 0; i < 50; i++) assert.equal(b.admit("k", limits, T0).ok, true);
    assert.equal(b.remainingTokens("k", limits, T0), 10);
  });

  test("when both limits refuse, the later retry wins", () => {
    const b = new Budgets();
    const limits = { requestsPerMinute: 6, tokensPerMinute: 60 };
    for (let i = 0; i < 6; i++) assert.equal(b.admit("k", limits, T0).ok, true);
    charge(b, "k", 120, limits, T0); // 61 tokens short at 1 token/s
    assert.deepEqual(b.admit("k", limits, T0), { ok: false, limit: "tokensPerMinute", retryAfterSeconds: 61 });
    const c = new Budgets();
    for (let i = 0; i < 6; i++) c.admit("k", limits, T0);
    charge(c, "k", 61, limits, T0); // 2 tokens short: 2 s; the request bucket needs 10 s
    assert.deepEqual(c.admit("k", limits, T0), { ok: false, limit: "requestsPerMinute", retryAfterSeconds: 10 });
  });
});

describe("limit changes (policy reload)", () => {
  test("a lowered limit clamps the bucket to the new capacity", () => {
    const b = new Budgets();
    assert.equal(b.remainingTokens("k", { tokensPerMinute: 1000 }, T0), 1000);
    assert.equal(b.remainingTokens("k", { tokensPerMinute: 100 }, T0), 100);
    assert.equal(b.remainingTokens("k", { tokensPerMinute: 1000 }, T0 + 6_000), 200, "refills at the new rate, not back to full");
    assert.equal(b.admit("r", { requestsPerMinute: 10 }, T0).ok, true);
    assert.equal(b.admit("r", { requestsPerMinute: 1 }, T0).ok, true);
    assert.equal(b.admit("r", { requestsPerMinute: 1 }, T0).ok, false);
  });

  test("a limit that appears starts full; one that goes away stops refusing", () => {
    const b = new Budgets();
    b.admit("k", { requestsPerMinute: 1 }, T0);
    assert.equal(b.admit("k", { requestsPerMinute: 1 }, T0).ok, false);
    assert.equal(b.admit("k", { tokensPerMinute: 5 }, T0).ok, true);
    assert.equal(b.remainingTokens("k", { tokensPerMinute: 5 }, T0), 5);
    assert.equal(b.admit("k", {}, T0).ok, true);
  });
});

describe("LRU bound", () => {
  test("never tracks more than maxKeys; the least recently used key is evicted", () => {
    const b = new Budgets({ maxKeys: 3 });
    const limits = { requestsPerMinute: 1 };
    for (const k of ["a", "b", "c"]) assert.equal(b.admit(k, limits, T0).ok, true);
    assert.equal(b.admit("a", limits, T0).ok, false); // touches a: b is now the oldest
    assert.equal(b.admit("d", limits, T0).ok, true);
    assert.equal(b.size, 3);
    assert.equal(b.admit("a", limits, T0).ok, false, "a was kept");
    assert.equal(b.admit("c", limits, T0).ok, false, "c was kept");
    assert.equal(b.admit("b", limits, T0).ok, true, "b was evicted and starts full again");
    assert.equal(b.size, 3);
  });

  test("the default bound holds under many keys", () => {
    const b = new Budgets({ maxKeys: 1000 });
    for (let i = 0; i < 5000; i++) b.admit(`key-${i}`, { requestsPerMinute: 5 }, T0);
    assert.equal(b.size, 1000);
  });
});

describe("hostile input", () => {
  const badLimits: Array<[string, object]> = [
    ["zero rpm", { requestsPerMinute: 0 }],
    ["negative tpm", { tokensPerMinute: -5 }],
    ["NaN rpm", { requestsPerMinute: Number.NaN }],
    ["infinite tpm", { tokensPerMinute: Infinity }],
  ];
  for (const [name, limits] of badLimits) {
    test(`rejects ${name}`, () => {
      assert.throws(
        () => new Budgets().admit("k", limits, T0),
        (err: unknown) => err instanceof BudgetError && err.check === "limits" && /^budget: \w+ must be a positive finite number/.test(err.message),
      );
    });
  }

  test("rejects bad token counts, times and options", () => {
    const b = new Budgets();
    for (const tokens of [-1, Number.NaN, Infinity]) {
      assert.throws(() => b.settle("k", { tokensPerMinute: 10 }, T0, 0, tokens), /budget: used token count must be a non-negative finite number/);
    }
    assert.throws(() => b.admit("k", { requestsPerMinute: 1 }, Number.NaN), /budget: nowMs must be a finite number/);
    assert.throws(() => new Budgets({ maxKeys: 0 }), /budget: maxKeys must be a positive integer/);
  });

  test("budgetKey joins principal and model", () => {
    assert.equal(budgetKey("td/ns/a/sa/b"), "td/ns/a/sa/b");
    assert.equal(budgetKey("td/ns/a/sa/b", null), "td/ns/a/sa/b");
    assert.equal(budgetKey("td/ns/a/sa/b", "llama"), "td/ns/a/sa/b|llama");
  });
});

describe("properties", () => {
  test("admitted requests in any window never exceed capacity + refill over the window", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 120 }),
        fc.array(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 300 }),
        (rpm, gaps) => {
          const b = new Budgets();
          const admitted: number[] = [];
          let now = T0;
          for (const gap of gaps) {
            now += gap;
            const result = b.admit("k", { requestsPerMinute: rpm }, now);
            if (result.ok) admitted.push(now);
            else assert.ok(Number.isInteger(result.retryAfterSeconds) && result.retryAfterSeconds >= 1);
          }
          for (let i = 0; i < admitted.length; i++) {
            for (let j = i; j < admitted.length; j++) {
              const allowed = rpm + (rpm * (admitted[j]! - admitted[i]!)) / 60_000;
              assert.ok(j - i + 1 <= allowed + 1e-6, `${j - i + 1} admitted in ${admitted[j]! - admitted[i]!} ms at rpm ${rpm}`);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test("a refused request is admitted at its retryAfter", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 0, max: 200_000 }), (rpm, offset) => {
        const b = new Budgets();
        const limits = { requestsPerMinute: rpm };
        const now = T0 + offset;
        for (let i = 0; i < rpm; i++) assert.equal(b.admit("k", limits, now).ok, true);
        const refusal = b.admit("k", limits, now);
        assert.equal(refusal.ok, false);
        if (!refusal.ok) assert.equal(b.admit("k", limits, now + refusal.retryAfterSeconds * 1000).ok, true);
      }),
      { numRuns: 200 },
    );
  });

  test("token balance equals capacity minus charges plus refill, capped", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100_000 }),
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 30_000 }), tokens: fc.integer({ min: 0, max: 50_000 }) }), { maxLength: 50 }),
        (tpm, steps) => {
          const b = new Budgets();
          const limits = { tokensPerMinute: tpm };
          let expected = tpm;
          let now = T0;
          b.remainingTokens("k", limits, now);
          for (const { gap, tokens } of steps) {
            now += gap;
            expected = Math.min(tpm, expected + (gap * tpm) / 60_000) - tokens;
            const { remaining, exhausted } = charge(b, "k", tokens, limits, now);
            assert.ok(Math.abs(remaining - expected) < 1e-6 * Math.max(1, Math.abs(expected)));
            assert.equal(exhausted, remaining < 1 - 1e-9);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

test("less than one whole token left: new requests wait for a whole token", () => {
  const b = new Budgets();
  const limits = { tokensPerMinute: 10 };
  assert.deepEqual(charge(b, "k", 9, limits, 0), { remaining: 1, exhausted: false });
  assert.deepEqual(charge(b, "k", 0.5, limits, 0), { remaining: 0.5, exhausted: true });
  // 0.5 token missing at 10/60 per second: 3 s.
  assert.deepEqual(b.admit("k", limits, 0), { ok: false, limit: "tokensPerMinute", retryAfterSeconds: 3 });
  assert.deepEqual(b.admit("k", limits, 3000), { ok: true });
});

describe("reservations", () => {
  const limits = { tokensPerMinute: 1000 };

  test("a request is admitted only when its whole reservation fits; concurrent reservations never exceed the budget", () => {
    const b = new Budgets();
    let admitted = 0;
    for (let i = 0; i < 200; i++) if (b.admit("k", limits, T0, 65).ok) admitted++;
    assert.equal(admitted, 15);
    const refused = b.admit("k", limits, T0, 65);
    assert.equal(refused.ok, false);
    // 25 tokens left; 40 more come back at 1000/min in 2.4 s.
    assert.deepEqual(refused, { ok: false, limit: "tokensPerMinute", retryAfterSeconds: 3 });
  });

  test("settling gives back what was not used, never above the capacity, and charges what went beyond", () => {
    const b = new Budgets();
    assert.equal(b.admit("k", limits, T0, 600).ok, true);
    b.settle("k", limits, T0, 600, 100);
    assert.equal(b.remainingTokens("k", limits, T0), 900);
    b.settle("k", limits, T0, 600, 0); // a stray settle cannot lift the bucket over its capacity
    assert.equal(b.remainingTokens("k", limits, T0), 1000);
    assert.equal(b.admit("k", limits, T0, 100).ok, true);
    b.settle("k", limits, T0, 100, 300); // the runner used more than reserved: the debt is paid off by refill
    assert.equal(b.remainingTokens("k", limits, T0), 700);
  });

  test("property: whatever the order of admissions and settlements, what is held never exceeds the budget", () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 400 }), fc.integer({ min: 0, max: 400 }), fc.boolean()), { maxLength: 60 }), (ops) => {
      const b = new Budgets();
      const held: [number, number][] = [];
      for (const [reserve, use, settleOne] of ops) {
        if (b.admit("k", limits, T0, reserve).ok) held.push([reserve, Math.min(use, reserve)]);
        if (settleOne && held.length > 0) {
          const [r, u] = held.shift()!;
          b.settle("k", limits, T0, r, u);
        }
        const outstanding = held.reduce((sum, [r]) => sum + r, 0);
        assert.ok(outstanding <= 1000, `${outstanding} reserved at once`);
      }
    }));
  });

  test("bad counts are refused", () => {
    const b = new Budgets();
    assert.throws(() => b.admit("k", limits, T0, -1), BudgetError);
    assert.throws(() => b.admit("k", limits, T0, Number.NaN), BudgetError);
    assert.throws(() => b.settle("k", limits, T0, 10, -1), BudgetError);
  });
});
