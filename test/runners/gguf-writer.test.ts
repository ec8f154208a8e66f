import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { encodeGguf, GgufWriterError } from "../../src/runners/gguf-writer.ts";
import type { GgufValue } from "../../src/runners/gguf-writer.ts";
import { readGguf, tensorData } from "./gguf-reader.ts";

test("header, metadata and tensor table read back", () => {
  const bytes = encodeGguf({
    metadata: [
      ["general.alignment", { type: "u32", value: 32 }],
      ["a.string", { type: "string", value: "héllo ▁" }],
      ["a.bool", { type: "bool", value: true }],
      ["a.f32", { type: "f32", value: 0.5 }],
      ["a.i32", { type: "i32", value: -7 }],
      ["a.strings", { type: "array", itemType: "string", value: ["x", "", "yz"] }],
      ["a.ints", { type: "array", itemType: "i32", value: [1, -2, 3] }],
    ],
    tensors: [
      { name: "t.a", dims: [3], data: Float32Array.of(1, 2, 3) },
      { name: "t.b", dims: [2, 2], data: Float32Array.of(-1, 0.25, 8, 9) },
    ],
  });
  assert.deepEqual([...bytes.subarray(0, 4)], [0x47, 0x47, 0x55, 0x46]); // "GGUF"
  const file = readGguf(bytes);
  assert.equal(file.version, 3);
  assert.equal(file.metadata.get("a.string"), "héllo ▁");
  assert.equal(file.metadata.get("a.bool"), true);
  assert.equal(file.metadata.get("a.f32"), 0.5);
  assert.equal(file.metadata.get("a.i32"), -7);
  assert.deepEqual(file.metadata.get("a.strings"), ["x", "", "yz"]);
  assert.deepEqual(file.metadata.get("a.ints"), [1, -2, 3]);
  assert.deepEqual(
    file.tensors.map((t) => [t.name, t.dims, t.type, t.offset]),
    [
      ["t.a", [3], 0, 0],
      ["t.b", [2, 2], 0, 32],
    ],
  );
  assert.equal(file.dataStart % 32, 0);
  assert.deepEqual([...tensorData(bytes, file, "t.b")], [-1, 0.25, 8, 9]);
  assert.equal(bytes.length % 32, 0);
});

test("rejects a tensor whose data does not fill its dims", () => {
  assert.throws(
    () => encodeGguf({ metadata: [], tensors: [{ name: "x", dims: [2, 3], data: new Float32Array(5) }] }),
    (err: unknown) => err instanceof GgufWriterError && err.check === "tensor-shape",
  );
});

test("rejects duplicate tensor names", () => {
  const t = { name: "x", dims: [1], data: new Float32Array(1) };
  assert.throws(
    () => encodeGguf({ metadata: [], tensors: [t, t] }),
    (err: unknown) => err instanceof GgufWriterError && err.check === "tensor-name",
  );
});

test("rejects general.alignment that disagrees with the layout", () => {
  assert.throws(
    () => encodeGguf({ metadata: [["general.alignment", { type: "u32", value: 64 }]], tensors: [], alignment: 32 }),
    (err: unknown) => err instanceof GgufWriterError && err.check === "alignment",
  );
  assert.throws(() => encodeGguf({ metadata: [], tensors: [], alignment: 12 }), GgufWriterError);
});

test("rejects a u32 out of range", () => {
  assert.throws(
    () => encodeGguf({ metadata: [["k", { type: "u32", value: -1 }]], tensors: [] }),
    (err: unknown) => err instanceof GgufWriterError && err.check === "value-range",
  );
});

test("any metadata round-trips through an independent reader", () => {
  const value: fc.Arbitrary<GgufValue> = fc.oneof(
    fc.nat({ max: 0xffffffff }).map((v): GgufValue => ({ type: "u32", value: v })),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((v): GgufValue => ({ type: "i32", value: v })),
    fc.boolean().map((v): GgufValue => ({ type: "bool", value: v })),
    fc.string({ unit: "grapheme" }).map((v): GgufValue => ({ type: "string", value: v })),
    fc.array(fc.string(), { maxLength: 5 }).map((v): GgufValue => ({ type: "array", itemType: "string", value: v })),
    fc.array(fc.float({ noNaN: true }).map(Math.fround), { maxLength: 5 }).map((v): GgufValue => ({ type: "array", itemType: "f32", value: v })),
  );
  fc.assert(
    fc.property(fc.uniqueArray(fc.tuple(fc.string({ minLength: 1 }), value), { selector: ([k]) => k, maxLength: 8 }), (entries) => {
      const file = readGguf(encodeGguf({ metadata: entries, tensors: [] }));
      assert.equal(file.metadata.size, entries.length);
      for (const [k, v] of entries) assert.deepEqual(file.metadata.get(k), v.value);
    }),
  );
});
