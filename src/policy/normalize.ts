/**
 * The path Istio decides on. Envoy normalizes the request path before its RBAC filter runs, as the mesh's
 * `pathNormalization` says, so a policy on `/admin/*` also covers `/public/../admin/x`. Istio's options:
 *
 *  - NONE: the path as received.
 *  - BASE (Istio's default): Envoy's `normalize_path`, RFC 3986 dot-segment removal done by Chromium's URL path
 *    canonicalizer: `\` becomes `/`, `%2e` counts as a dot, percent-encoded unreserved characters (`%41` → `A`) are
 *    decoded, characters a path may not carry are percent-encoded, and a NUL (raw or `%00`) refuses the request.
 *  - MERGE_SLASHES: BASE, then runs of slashes merged (`/a//b` → `/a/b`).
 *  - DECODE_AND_MERGE_SLASHES: `%2F`/`%2f` and `%5C`/`%5c` decoded first, then as MERGE_SLASHES.
 *
 * Only the part before `?` or `#` is touched; the rest is kept as it came.
 */
export const PATH_NORMALIZATIONS = ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"] as const;
export type PathNormalization = (typeof PATH_NORMALIZATIONS)[number];

/** The path the mesh authorizes (and forwards), or null when Envoy refuses the request with 400. */
export function normalizePath(path: string, mode: PathNormalization = "BASE"): string | null {
  if (mode === "NONE") return path;
  const q = path.search(/[?#]/);
  let head = q === -1 ? path : path.slice(0, q);
  const rest = q === -1 ? "" : path.slice(q);
  if (mode === "DECODE_AND_MERGE_SLASHES") head = head.replace(/%2f/gi, "/").replace(/%5c/gi, "\\");
  let out = canonicalPath(new TextEncoder().encode(head));
  if (out === null) return null;
  if (mode !== "BASE") out = out.replace(/\/{2,}/g, "/");
  return out + rest;
}

// What the canonicalizer does with each byte (Chromium's kPathCharLookup, as Envoy carries it); NUL, which it also
// escapes, makes the whole path invalid.
const PASS = 0;
const SPECIAL = 1;
const ESCAPE = 2 | SPECIAL;
const UNESCAPE = 4;

const LOOKUP = new Uint8Array(256).fill(ESCAPE);
for (const c of "!$&'()*+,/:;=@[]") LOOKUP[c.charCodeAt(0)] = PASS;
for (const c of "-_~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") LOOKUP[c.charCodeAt(0)] = UNESCAPE;
LOOKUP[0x2e] = SPECIAL; // "."

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const PERCENT = 0x25;
const HEX = "0123456789ABCDEF";

function isSlash(c: number | undefined): boolean {
  return c === SLASH || c === BACKSLASH;
}

function hexValue(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** The value of the escape "%XY" at `i`, or -1 when there is none. */
function escapedAt(s: ArrayLike<number>, i: number, end: number): number {
  if (i + 3 > end) return -1;
  const hi = hexValue(s[i + 1]);
  const lo = hexValue(s[i + 2]);
  return hi === -1 || lo === -1 ? -1 : hi * 16 + lo;
}

/** Length of a dot at `i`: 1 for ".", 3 for "%2e" (either case), 0 otherwise. */
function dotAt(s: Uint8Array, i: number, end: number): number {
  if (s[i] === DOT) return 1;
  if (s[i] === PERCENT && i + 3 <= end && s[i + 1] === 0x32 && (s[i + 2] === 0x65 || s[i + 2] === 0x45)) return 3;
  return 0;
}

/** Chromium's path canonicalization over UTF-8 bytes; null when it fails (a NUL). */
function canonicalPath(s: Uint8Array): string | null {
  const end = s.length;
  const out: number[] = [SLASH];
  if (end === 0) return "/";
  let ok = true;
  let lastInvalidPercent = Number.NEGATIVE_INFINITY;
  // The input's own leading slash stands for the one already written.
  let i = isSlash(s[0]) ? 1 : 0;
  for (; i < end; i++) {
    const c = s[i] as number;
    const flags = LOOKUP[c] as number;
    if ((flags & SPECIAL) === 0) {
      out.push(c);
      continue;
    }
    const dot = dotAt(s, i, end);
    if (dot > 0) {
      i = dotSegment(s, i, dot, end, out);
    } else if (c === BACKSLASH) {
      out.push(SLASH);
    } else if (c === PERCENT) {
      const value = escapedAt(s, i, end);
      if (value === -1) {
        // Not an escape: kept, and remembered in case an escape decoded next to it forms one.
        lastInvalidPercent = out.length;
        out.push(PERCENT);
      } else if ((LOOKUP[value] as number) & UNESCAPE) {
        out.push(value);
        i += 2;
        if (lastInvalidPercent >= out.length - 3) nestedEscape(s, i + 1, end, lastInvalidPercent, out);
      } else {
        out.push(PERCENT, s[i + 1] as number, s[i + 2] as number);
        i += 2;
        if (value === 0) ok = false;
      }
    } else {
      if (c === 0) ok = false;
      out.push(PERCENT, HEX.charCodeAt(c >> 4), HEX.charCodeAt(c & 15));
    }
  }
  return ok ? new TextDecoder().decode(Uint8Array.from(out)) : null;
}

/**
 * A dot (or `%2e`) at `i`: "." and ".." segments are resolved against the output when the dot starts a segment,
 * otherwise it is a plain "." (an escaped dot is decoded either way). Returns the index of the last byte consumed.
 */
function dotSegment(s: Uint8Array, i: number, dot: number, end: number, out: number[]): number {
  if (out[out.length - 1] !== SLASH) {
    out.push(DOT);
    return i + dot - 1;
  }
  const after = i + dot;
  if (after === end) return after - 1; // "." at the end
  if (isSlash(s[after])) return after; // "./": the slash is consumed
  const second = dotAt(s, after, end);
  if (second > 0) {
    const afterSecond = after + second;
    if (afterSecond === end || isSlash(s[afterSecond])) {
      upOneSegment(out);
      return afterSecond === end ? afterSecond - 1 : afterSecond;
    }
  }
  out.push(DOT);
  return i + dot - 1;
}

/** Drops the last segment of the output, which ends with "/"; never above the first slash. */
function upOneSegment(out: number[]): void {
  let j = out.length - 1;
  if (j === 0) return;
  j--;
  while (j > 0 && out[j] !== SLASH) j--;
  out.length = j + 1;
}

/**
 * Chromium's guard against escapes that only appear once an inner one is decoded ("%%30%30" → "%00"): when the
 * bytes after an earlier literal "%" now form a valid escape, that "%" is written as "%25".
 */
function nestedEscape(s: Uint8Array, next: number, end: number, percentAt: number, out: number[]): void {
  const length = out.length;
  const last = out[length - 1] as number;
  const appendNext = percentAt === length - 2;
  if (appendNext) {
    if (next === end || (s[next] as number) >= 0x80) return;
    out.push(s[next] as number);
  }
  if (escapedAt(out, percentAt, out.length) !== -1) {
    if (!appendNext) out.push(out[percentAt + 1] as number);
    out[percentAt + 1] = 0x32;
    out[percentAt + 2] = 0x35;
    out.push(last);
  } else if (appendNext) {
    out.length = length;
  }
}
