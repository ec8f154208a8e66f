/**
 * A minimal GGUF v3 writer: typed metadata and F32 tensors, nothing more.
 * Enough to produce models llama.cpp loads; not a general converter.
 */

export class GgufWriterError extends Error {
  readonly check: string;
  constructor(check: string, message: string) {
    super(`gguf-writer: ${message}`);
    this.name = "GgufWriterError";
    this.check = check;
  }
}

export type GgufValue =
  | { type: "u32"; value: number }
  | { type: "i32"; value: number }
  | { type: "f32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: "u32" | "i32" | "f32"; value: readonly number[] }
  | { type: "array"; itemType: "string"; value: readonly string[] };

export interface GgufTensor {
  name: string;
  /** Dimensions fastest-varying first, as GGUF lists them. */
  dims: readonly number[];
  data: Float32Array;
}

export interface GgufDocument {
  metadata: ReadonlyArray<readonly [string, GgufValue]>;
  tensors: readonly GgufTensor[];
  /** Data alignment in bytes; must match `general.alignment` when that key is present (default 32). */
  alignment?: number;
}

// Value type ids from the GGUF specification.
const TYPE_ID = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10 } as const;
const GGML_TYPE_F32 = 0;
const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const GGUF_VERSION = 3;

const encoder = new TextEncoder();

/** Grows a byte buffer as values are appended, little-endian throughout. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }

  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }

  u64(v: number | bigint): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }

  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf[this.length++] = v;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  string(s: string): void {
    // A lone surrogate would be silently replaced by TextEncoder, changing the text.
    if (!s.isWellFormed()) throw new GgufWriterError("string", "string is not well-formed UTF-16");
    const b = encoder.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }

  padTo(alignment: number): void {
    while (this.length % alignment !== 0) this.u8(0);
  }

  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function writeValue(sink: ByteSink, key: string, v: GgufValue): void {
  switch (v.type) {
    case "u32":
      if (!Number.isInteger(v.value) || v.value < 0 || v.value > 0xffffffff) {
        throw new GgufWriterError("value-range", `metadata ${key} is not a u32`);
      }
      sink.u32(TYPE_ID.u32);
      sink.u32(v.value);
      return;
    case "i32":
      sink.u32(TYPE_ID.i32);
      sink.i32(v.value);
      return;
    case "f32":
      sink.u32(TYPE_ID.f32);
      sink.f32(v.value);
      return;
    case "bool":
      sink.u32(TYPE_ID.bool);
      sink.u8(v.value ? 1 : 0);
      return;
    case "string":
      sink.u32(TYPE_ID.string);
      sink.string(v.value);
      return;
    case "array":
      sink.u32(TYPE_ID.array);
      sink.u32(TYPE_ID[v.itemType]);
      sink.u64(v.value.length);
      if (v.itemType === "string") {
        for (const s of v.value) sink.string(s);
      } else {
        const put = v.itemType === "f32" ? sink.f32.bind(sink) : v.itemType === "i32" ? sink.i32.bind(sink) : sink.u32.bind(sink);
        for (const n of v.value) put(n);
      }
      return;
  }
}

/** Serializes a document to GGUF v3 bytes. Deterministic: same input, same bytes. */
export function encodeGguf(doc: GgufDocument): Uint8Array {
  const alignment = doc.alignment ?? 32;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) {
    throw new GgufWriterError("alignment", "alignment must be a positive multiple of 8");
  }
  const declared = doc.metadata.find(([k]) => k === "general.alignment");
  if (declared && !(declared[1].type === "u32" && declared[1].value === alignment)) {
    throw new GgufWriterError("alignment", "general.alignment disagrees with the alignment used");
  }
  const names = new Set<string>();
  for (const t of doc.tensors) {
    if (names.has(t.name)) throw new GgufWriterError("tensor-name", `duplicate tensor ${t.name}`);
    names.add(t.name);
    const elements = t.dims.reduce((a, b) => a * b, 1);
    if (t.dims.length === 0 || t.dims.length > 4 || elements !== t.data.length) {
      throw new GgufWriterError("tensor-shape", `tensor ${t.name} has ${t.data.length} values for dims [${t.dims.join(", ")}]`);
    }
  }

  const sink = new ByteSink();
  sink.u32(GGUF_MAGIC);
  sink.u32(GGUF_VERSION);
  sink.u64(doc.tensors.length);
  sink.u64(doc.metadata.length);
  for (const [key, value] of doc.metadata) {
    sink.string(key);
    writeValue(sink, key, value);
  }

  let offset = 0;
  const offsets: number[] = [];
  for (const t of doc.tensors) {
    offsets.push(offset);
    sink.string(t.name);
    sink.u32(t.dims.length);
    for (const d of t.dims) sink.u64(d);
    sink.u32(GGML_TYPE_F32);
    sink.u64(offset);
    offset += Math.ceil((t.data.length * 4) / alignment) * alignment;
  }
  sink.padTo(alignment);

  const dataStart = sink.length;
  doc.tensors.forEach((t, i) => {
    sink.padTo(alignment);
    if (sink.length - dataStart !== offsets[i]) {
      throw new GgufWriterError("tensor-offset", `tensor ${t.name} landed at the wrong offset`);
    }
    // Copy through a little-endian view so the bytes do not depend on the host's endianness.
    const bytes = new Uint8Array(t.data.length * 4);
    const view = new DataView(bytes.buffer);
    for (let j = 0; j < t.data.length; j++) view.setFloat32(j * 4, t.data[j] as number, true);
    sink.bytes(bytes);
  });
  sink.padTo(alignment);
  return sink.result();
}
