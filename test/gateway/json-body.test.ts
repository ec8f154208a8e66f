import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { GatewayError } from "../../src/gateway/index.ts";
import { MAX_JSON_DEPTH, parseJsonObject } from "../../src/gateway/json-body.ts";

const parse = (text: string) => parseJsonObject(Buffer.from(text, "utf8"));
const refusedWith = (code: string) => (err: unknown) => err instanceof GatewayError && err.code === code && err.status === 400;

/** Serializes with every key written as given, so a test can name one twice (JSON.stringify cannot). */
function writeObject(pairs: readonly (readonly [string, unknown])[]): string {
  return `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`;
}

describe("request bodies: one JSON object, read one way only", () => {
  test("a key named twice is refused, whatever its spelling (escapes decode to the same key)", () => {
    for (const text of [
      '{"model":"Y","model":"X"}',
      '{"model":"X","mod\\u0065l":"Y"}',
      '{"a":{"b":1,"b":2}}',
      '{"a":[{"x":1},{"y":1,"y":2}]}',
      '{"\\"":1,"\\u0022":2}',
    ]) assert.throws(() => parse(text), refusedWith("duplicate_key"), text);
    // The same key in different objects, or a value equal to a key, is fine.
    assert.deepEqual(parse('{"a":{"k":1},"b":{"k":2},"k":"k"}'), { a: { k: 1 }, b: { k: 2 }, k: "k" });
    assert.deepEqual(parse('{"a":"\\\\","b":"x\\"y","c":["k","k"]}'), { a: "\\", b: 'x"y', c: ["k", "k"] });
  });

  test("an object with many keys is checked in linear work: a repeat among 50,000 keys is still found", () => {
    const pairs = Array.from({ length: 50_000 }, (_, i) => [`k${i}`, i] as const);
    assert.equal(Object.keys(parse(writeObject(pairs))).length, 50_000);
    assert.throws(() => parse(writeObject([...pairs, ["k17", 0]])), refusedWith("duplicate_key"));
    assert.throws(() => parse(writeObject([...pairs, ["k49999", 0]])), refusedWith("duplicate_key"));
  });

  test("nesting deeper than the limit is refused before anything walks it recursively", () => {
    const nest = (depth: number) => `{"x":${"[".repeat(depth - 1)}${"]".repeat(depth - 1)}}`;
    assert.deepEqual(Object.keys(parse(nest(MAX_JSON_DEPTH))), ["x"]);
    assert.throws(() => parse(nest(MAX_JSON_DEPTH + 1)), refusedWith("too_deeply_nested"));
    assert.throws(() => parse(nest(100_000)), refusedWith("too_deeply_nested"));
  });

  test("what is not one JSON object in UTF-8 is invalid_json", () => {
    for (const bytes of [Buffer.alloc(0), Buffer.from("[1]"), Buffer.from("null"), Buffer.from('"s"'), Buffer.from("{"), Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])]) {
      assert.throws(() => parseJsonObject(bytes), refusedWith("invalid_json"), bytes.toString("hex"));
    }
  });

  test("property: any JSON object without repeated keys parses as JSON.parse does", () => {
    fc.assert(fc.property(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 6 })), (value) => {
      const text = JSON.stringify(value);
      assert.deepEqual(parse(text), JSON.parse(text));
    }), { numRuns: 500 });
  });

  test("property: repeating any key of any object is caught", () => {
    const pairs = fc.uniqueArray(fc.tuple(fc.string(), fc.jsonValue({ maxDepth: 3 })), { minLength: 1, maxLength: 8, selector: ([k]) => k });
    fc.assert(fc.property(pairs, fc.nat(), fc.jsonValue({ maxDepth: 2 }), (kv, pick, again) => {
      const key = kv[pick % kv.length]![0];
      const text = writeObject([...kv, [key, again]]);
      assert.throws(() => parse(text), refusedWith("duplicate_key"));
      // Nested one level down as well.
      assert.throws(() => parse(`{"outer":${text}}`), refusedWith("duplicate_key"));
    }), { numRuns: 300 });
  });
});
