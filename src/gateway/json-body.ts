import { isUtf8 } from "node:buffer";
import { badRequest } from "./errors.ts";

/**
 * How deep arrays and objects may nest in a request body. OpenAI bodies are shallow (tool schemas reach perhaps a
 * dozen levels); a deeper body is an attack on whoever re-serializes or walks it recursively.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Parses a request body as one JSON object, and refuses what the runner could read differently from the gateway:
 * a key named twice in one object (JSON.parse keeps the last, some runners the first — `{"model":"Y","model":"X"}`
 * would be decided as X and served as Y), invalid UTF-8, and nesting deeper than MAX_JSON_DEPTH.
 */
export function parseJsonObject(body: Buffer): Record<string, unknown> {
  if (body.length === 0) throw badRequest("invalid_json", "request body is empty; expected a JSON object");
  if (!isUtf8(body)) throw badRequest("invalid_json", "request body is not valid UTF-8");
  const text = body.toString("utf8");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw badRequest("invalid_json", "request body is not valid JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw badRequest("invalid_json", "request body must be a JSON object");
  checkStructure(text);
  return value as Record<string, unknown>;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;

/**
 * One pass over text that JSON.parse already accepted: nesting depth, and the keys of each object. Only the
 * structure is tracked, so no recursion and no value is built; strings are skipped with indexOf.
 */
function checkStructure(text: string): void {
  // Per open container: the keys seen so far (objects), or null (arrays).
  const open: (Keys | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (expectKey) {
        const raw = text.slice(i + 1, end);
        // An escaped key ("mod\u0065l") is the same key as its plain spelling.
        const key = raw.includes("\\") ? (JSON.parse(text.slice(i, end + 1)) as string) : raw;
        const keys = open[open.length - 1]!;
        if (!keys.add(key)) throw badRequest("duplicate_key", `request body names the key ${JSON.stringify(key.slice(0, 64))} twice in one object`);
        expectKey = false;
      }
      i = end;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (open.length >= MAX_JSON_DEPTH) throw badRequest("too_deeply_nested", `request body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels`);
      open.push(c === OPEN_OBJECT ? new Keys() : null);
      expectKey = c === OPEN_OBJECT;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      open.pop();
      expectKey = false;
    } else if (c === COMMA) {
      expectKey = open[open.length - 1] != null;
    }
  }
}

/** The keys of one object. Request objects have a handful, for which a short array beats a Set; a long one becomes a Set. */
class Keys {
  #list: string[] = [];
  #set: Set<string> | null = null;

  /** Adds `key`; false when the object already had it. */
  add(key: string): boolean {
    if (this.#set !== null) {
      if (this.#set.has(key)) return false;
      this.#set.add(key);
      return true;
    }
    if (this.#list.includes(key)) return false;
    this.#list.push(key);
    if (this.#list.length > 16) this.#set = new Set(this.#list);
    return true;
  }
}

/** The index of the quote closing the string that opens at `start`. */
function stringEnd(text: string, start: number): number {
  let end = text.indexOf('"', start + 1);
  // JSON.parse accepted the text, so every string is closed; -1 would mean otherwise, and ends the scan.
  while (end !== -1) {
    // A quote preceded by an odd run of backslashes is escaped.
    let backslashes = 0;
    for (let j = end - 1; text.charCodeAt(j) === BACKSLASH; j--) backslashes++;
    if (backslashes % 2 === 0) return end;
    end = text.indexOf('"', end + 1);
  }
  return text.length;
}
