import fc from "fast-check";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DecisionEntry } from "../../src/decision-log/index.ts";

/** A plausible entry; `i` varies the request id and the time so records differ. */
export function entry(i: number, overrides: Partial<DecisionEntry> = {}): DecisionEntry {
  return {
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, i)).toISOString(),
    requestId: `req-${i}`,
    principal: "example.org/ns/apps/sa/chat",
    method: "POST",
    path: "/v1/chat/completions",
    model: "llama-3.1-8b",
    decision: i % 3 === 0 ? "DENY" : "ALLOW",
    policy: "chat-allow",
    rule: 0,
    reason: i % 3 === 0 ? "no ALLOW rule matched" : "rule 0 matched",
    revision: "sha256:4f2c",
    ...(i % 3 === 0 ? { status: 403 } : {}),
    ...overrides,
  };
}

/** A temporary directory removed after the test. */
export function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-audit-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const text = fc.oneof(fc.string(), fc.string({ unit: "grapheme" }), fc.string({ unit: "binary" }));
const nullableText = fc.option(text, { nil: null });

export const entryArb: fc.Arbitrary<DecisionEntry> = fc
  .record({
    time: fc.date({ min: new Date("2000-01-01T00:00:00.000Z"), max: new Date("2099-12-31T23:59:59.999Z"), noInvalidDate: true })
      .map((d) => d.toISOString()),
    requestId: fc.string({ minLength: 1, maxLength: 40 }),
    principal: nullableText,
    method: fc.constantFrom("GET", "POST", "DELETE"),
    path: text,
    model: nullableText,
    decision: fc.constantFrom("ALLOW" as const, "DENY" as const),
    policy: nullableText,
    rule: fc.option(fc.nat({ max: 1000 }), { nil: null }),
    reason: text,
    revision: nullableText,
    status: fc.option(fc.integer({ min: 100, max: 599 }), { nil: undefined }),
  })
  .map(({ status, ...rest }) => (status === undefined ? rest : { ...rest, status }));
