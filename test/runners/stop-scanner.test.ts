import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { StopScanner } from "../../src/runners/embedded/stop-scanner.ts";

/** The reference, on the whole text at once: cut where the first stop to complete begins. */
function expected(text: string, stops: string[]): { text: string; stopped: boolean } {
  let best: { start: number; end: number } | undefined;
  for (let end = 1; end <= text.length && best === undefined; end++) {
    for (const s of stops) {
      if (s !== "" && end >= s.length && text.slice(end - s.length, end) === s) {
        const start = end - s.length;
        if (best === undefined || start < best.start) best = { start, end };
      }
    }
  }
  return best === undefined ? { text, stopped: false } : { text: text.slice(0, best.start), stopped: true };
}

function scan(chunks: string[], stops: string[]): { text: string; stopped: boolean } {
  const scanner = new StopScanner(stops);
  let out = "";
  for (const c of chunks) out += scanner.push(c);
  out += scanner.flush();
  return { text: out, stopped: scanner.stopped };
}

test("cuts before a stop split across chunks", () => {
  assert.deepEqual(scan(["hello wo", "rld and more"], ["world"]), { text: "hello ", stopped: true });
  assert.deepEqual(scan(["a", "b", "c"], ["bc", "c"]), { text: "a", stopped: true });
  // "xyz" would begin earlier, but "y" is complete first and generation ends there.
  assert.deepEqual(scan(["xyz"], ["xyz", "y"]), { text: "x", stopped: true });
  assert.deepEqual(scan(["x", "y", "z"], ["xyz", "y"]), { text: "x", stopped: true });
  assert.deepEqual(scan(["abab"], ["abc"]), { text: "abab", stopped: false });
});

test("holds back only what could still become a stop", () => {
  const s = new StopScanner(["END"]);
  assert.equal(s.push("text E"), "text ");
  assert.equal(s.push("N"), "");
  assert.equal(s.push("x"), "ENx");
  assert.equal(s.push("END tail"), "");
  assert.equal(s.stopped, true);
  assert.equal(s.push("more"), "");
  assert.equal(s.flush(), "");
});

test("no stops: text passes straight through", () => {
  const s = new StopScanner([]);
  assert.equal(s.push("abc"), "abc");
  assert.equal(s.flush(), "");
});

test("any split of any text gives the same answer as the whole text", () => {
  const alphabet = fc.constantFrom("a", "b", " ", "é", "\n");
  const str = (max: number) => fc.array(alphabet, { maxLength: max }).map((a) => a.join(""));
  fc.assert(
    fc.property(str(30), fc.array(str(4), { maxLength: 4 }), fc.array(fc.nat(30), { maxLength: 6 }), (text, stops, cuts) => {
      const points = [...new Set(cuts.map((c) => Math.min(c, text.length)))].sort((x, y) => x - y);
      const chunks: string[] = [];
      let prev = 0;
      for (const p of points) {
        chunks.push(text.slice(prev, p));
        prev = p;
      }
      chunks.push(text.slice(prev));
      assert.deepEqual(scan(chunks, stops), expected(text, stops));
    }),
    { numRuns: 5000 },
  );
});
