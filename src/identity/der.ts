/**
 * A minimal, bounds-checked DER reader for the few extension values SVID checks need.
 * Certificates reach us from untrusted peers, so every read is checked and failures throw
 * DerError instead of reading past the buffer.
 */
export class DerError extends Error {
  constructor(message: string) {
    super(`der: ${message}`);
    this.name = "DerError";
  }
}

export interface DerElement {
  /** The identifier octet (class, constructed bit and tag number < 31). */
  readonly tag: number;
  readonly content: Uint8Array;
}

export const TAG_BOOLEAN = 0x01;
export const TAG_INTEGER = 0x02;
export const TAG_BIT_STRING = 0x03;
export const TAG_OCTET_STRING = 0x04;
export const TAG_OBJECT_IDENTIFIER = 0x06;
export const TAG_SEQUENCE = 0x30;

function readOne(buf: Uint8Array, offset: number): { element: DerElement; next: number } {
  if (offset + 2 > buf.length) throw new DerError("truncated element header");
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("high tag numbers are not supported");
  let lengthByte = buf[offset + 1]!;
  let pos = offset + 2;
  let length: number;
  if (lengthByte < 0x80) {
    length = lengthByte;
  } else {
    const count = lengthByte & 0x7f;
    if (count === 0) throw new DerError("indefinite length is not DER");
    if (count > 4) throw new DerError("length too large");
    if (pos + count > buf.length) throw new DerError("truncated length");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[pos + i]!;
    pos += count;
  }
  if (pos + length > buf.length) throw new DerError("element overruns its container");
  return { element: { tag, content: buf.subarray(pos, pos + length) }, next: pos + length };
}

/** Reads exactly one element spanning the whole buffer. */
export function readElement(buf: Uint8Array, expectedTag?: number): DerElement {
  const { element, next } = readOne(buf, 0);
  if (next !== buf.length) throw new DerError("trailing bytes after element");
  if (expectedTag !== undefined && element.tag !== expectedTag) {
    throw new DerError(`expected tag 0x${expectedTag.toString(16)}, got 0x${element.tag.toString(16)}`);
  }
  return element;
}

/** Reads the consecutive elements that make up a constructed value's content. */
export function readChildren(content: Uint8Array): DerElement[] {
  const children: DerElement[] = [];
  let offset = 0;
  while (offset < content.length) {
    const { element, next } = readOne(content, offset);
    children.push(element);
    offset = next;
  }
  return children;
}

/** Decodes OBJECT IDENTIFIER content to dotted form ("2.5.29.17"). */
export function readObjectIdentifier(content: Uint8Array): string {
  if (content.length === 0 || content.length > 64) throw new DerError("malformed OBJECT IDENTIFIER");
  const arcs: number[] = [];
  let value = 0;
  for (let i = 0; i < content.length; i++) {
    const byte = content[i]!;
    if (value === 0 && byte === 0x80) throw new DerError("non-minimal OBJECT IDENTIFIER arc");
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError("OBJECT IDENTIFIER arc too large");
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0;
    } else if (i === content.length - 1) {
      throw new DerError("truncated OBJECT IDENTIFIER");
    }
  }
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join(".");
}
