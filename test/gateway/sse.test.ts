import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { SseSplitter } from "../../src/gateway/sse.ts";

const enc = (s: string) => new TextEncoder().encode(s);

test("splits events on blank lines and joins data lines", () => {
  const s = new SseSplitter();
  const events = s.push(enc('data: {"a":1}\n\nevent: x\ndata: one\ndata:two\n\ndata: [DONE]\n\n'));
  assert.deepEqual(events.map((e) => e.data), ['{"a":1}', "one\ntwo", "[DONE]"]);
  assert.equal(events[1]!.raw, "event: x\ndata: one\ndata:two\n\n");
  assert.equal(s.flush(), null);
});

test("CRLF boundaries and comment-only events", () => {
  const events = new SseSplitter().push(enc(": keep-alive\r\n\r\ndata: x\r\n\r\n"));
  assert.deepEqual(events.map((e) => e.data), [null, "x"]);
});

test("an event split across chunks, even inside a multi-byte character, comes out whole", () => {
  const bytes = enc("data: héllo 🌍\n\n");
  const s = new SseSplitter();
  const out = [];
  for (const b of bytes) out.push(...s.push(new Uint8Array([b])));
  assert.deepEqual(out.map((e) => e.data), ["héllo 🌍"]);
});

test("an unterminated tail is returned by flush", () => {
  const s = new SseSplitter();
  assert.deepEqual(s.push(enc("data: partial")), []);
  assert.equal(s.flush()?.data, "partial");
});

test("an event larger than the bound is refused instead of buffered forever", () => {
  const s = new SseSplitter(1024);
  assert.throws(() => s.push(enc(`data: ${"x".repeat(2000)}`)), /larger than the limit/);
});

test("property: any chunking of a stream yields the same events as one push", () => {
  const payload = fc.string({ unit: "grapheme", maxLength: 20 }).map((s) => s.replace(/[\r\n]/g, ""));
  fc.assert(fc.property(fc.array(payload, { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 20 }), (datas, cuts) => {
    const text = datas.map((d) => `data: ${d}\n\n`).join("");
    const bytes = enc(text);
    const whole = new SseSplitter().push(bytes).map((e) => e.raw);
    const s = new SseSplitter();
    const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
    const pieces: string[] = [];
    let at = 0;
    for (const p of [...points, bytes.length]) {
      pieces.push(...s.push(bytes.subarray(at, p)).map((e) => e.raw));
      at = p;
    }
    assert.deepEqual(pieces, whole);
    assert.equal(whole.join(""), text);
    assert.deepEqual(new SseSplitter().push(bytes).map((e) => e.data), datas);
  }));
});
