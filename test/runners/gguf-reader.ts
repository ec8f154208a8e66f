// A small, strict GGUF v3 reader for the tests: an independent check of what the writer emits.
export interface ReadTensor {
  name: string;
  dims: number[];
  type: number;
  offset: number;
}

export interface ReadGguf {
  version: number;
  metadata: Map<string, unknown>;
  tensors: ReadTensor[];
  dataStart: number;
}

export function readGguf(bytes: Uint8Array, alignment = 32): ReadGguf {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let p = 0;
  const need = (n: number): void => {
    if (p + n > bytes.length) throw new Error(`gguf truncated at ${p}`);
  };
  const u8 = (): number => (need(1), view.getUint8(p++));
  const u32 = (): number => {
    need(4);
    const v = view.getUint32(p, true);
    p += 4;
    return v;
  };
  const i32 = (): number => {
    need(4);
    const v = view.getInt32(p, true);
    p += 4;
    return v;
  };
  const f32 = (): number => {
    need(4);
    const v = view.getFloat32(p, true);
    p += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(p, true);
    p += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("u64 too large");
    return Number(v);
  };
  const str = (): string => {
    const n = u64();
    need(n);
    const s = decoder.decode(bytes.subarray(p, p + n));
    p += n;
    return s;
  };
  const value = (type: number): unknown => {
    switch (type) {
      case 4:
        return u32();
      case 5:
        return i32();
      case 6:
        return f32();
      case 7: {
        const b = u8();
        if (b > 1) throw new Error("bad bool");
        return b === 1;
      }
      case 8:
        return str();
      case 9: {
        const itemType = u32();
        const n = u64();
        const out: unknown[] = [];
        for (let i = 0; i < n; i++) out.push(value(itemType));
        return out;
      }
      case 10:
        return u64();
      default:
        throw new Error(`unsupported value type ${type}`);
    }
  };
  if (u32() !== 0x46554747) throw new Error("bad magic");
  const version = u32();
  const tensorCount = u64();
  const kvCount = u64();
  const metadata = new Map<string, unknown>();
  for (let i = 0; i < kvCount; i++) {
    const key = str();
    metadata.set(key, value(u32()));
  }
  const tensors: ReadTensor[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = str();
    const nd = u32();
    const dims: number[] = [];
    for (let j = 0; j < nd; j++) dims.push(u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const dataStart = Math.ceil(p / alignment) * alignment;
  return { version, metadata, tensors, dataStart };
}

export function tensorData(bytes: Uint8Array, file: ReadGguf, name: string): Float32Array {
  const t = file.tensors.find((x) => x.name === name);
  if (t === undefined) throw new Error(`no tensor ${name}`);
  const n = t.dims.reduce((a, b) => a * b, 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset + file.dataStart + t.offset, n * 4);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}
