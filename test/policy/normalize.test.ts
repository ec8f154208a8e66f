import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { normalizePath, PATH_NORMALIZATIONS } from "../../src/policy/index.ts";

describe("path normalization as Envoy does it before Istio decides", () => {
  // Envoy's own expectations for normalize_path (PathUtil::canonicalPath), which Istio's BASE turns on.
  const BASE_CASES: [string, string][] = [
    ["/xyz", "/xyz"],
    ["/x/y/z", "/x/y/z"],
    ["/a/b/../c", "/a/c"],
    ["/a/b/./c", "/a/b/c"],
    ["a/b/../c", "/a/c"],
    ["/a/b/../../../../c", "/c"],
    ["/a/..\\c", "/c"],
    ["/%c0%af", "/%c0%af"],
    ["/%5c%25", "/%5c%25"],
    ["/a/b/%2E%2E/c", "/a/c"],
    ["/a/b/%2E./c", "/a/c"],
    ["/a/b/%2E/c", "/a/b/c"],
    ["..", "/"],
    ["/../a/b", "/a/b"],
    ["/./a/b", "/a/b"],
    ["/A/B/C", "/A/B/C"],
    ["/a/b/%2e%2e/c", "/a/c"],
    ["/a/%2F%2f/c", "/a/%2F%2f/c"],
  ];

  it("Envoy: normalize_path resolves dot segments, %2e and backslashes, and keeps %2F (BASE)", () => {
    for (const [path, want] of BASE_CASES) assert.equal(normalizePath(path, "BASE"), want, path);
  });

  it("Envoy: normalize_path refuses a NUL, raw or escaped, even behind an invalid escape (400)", () => {
    for (const path of ["/xyz/.%00../abc", "/xyz/%00.%00./abc", "/xyz/AAAAA%%0000/abc", "/a\u0000b"]) {
      assert.equal(normalizePath(path, "BASE"), null, path);
    }
  });

  it("Istio: BASE decodes percent-encoded unreserved characters only, once", () => {
    assert.equal(normalizePath("/some%2fdata/%61%62%63", "BASE"), "/some%2fdata/abc");
    assert.equal(normalizePath("/%2d%5f%7e%30%41", "BASE"), "/-_~0A");
    assert.equal(normalizePath("/a%2541", "BASE"), "/a%2541");
  });

  it("Envoy: characters a path may not carry are percent-encoded; an escape formed by decoding is not", () => {
    assert.equal(normalizePath("/a b/\"c\"/é", "BASE"), "/a%20b/%22c%22/%C3%A9");
    assert.equal(normalizePath("/a%%30%30", "BASE"), "/a%2500");
    assert.equal(normalizePath("/a%%300", "BASE"), "/a%2500");
  });

  it("Istio: the query and the fragment are left as they came", () => {
    assert.equal(normalizePath("/a/../b?x=/../y//z", "MERGE_SLASHES"), "/b?x=/../y//z");
    assert.equal(normalizePath("/a/./b#/../c", "BASE"), "/a/b#/../c");
  });

  it("Istio: MERGE_SLASHES merges slashes after BASE", () => {
    assert.equal(normalizePath("/a//b", "BASE"), "/a//b");
    assert.equal(normalizePath("/a//b", "MERGE_SLASHES"), "/a/b");
    assert.equal(normalizePath("//a///b/c//", "MERGE_SLASHES"), "/a/b/c/");
    assert.equal(normalizePath("/a%2fb", "MERGE_SLASHES"), "/a%2fb");
  });

  it("Istio: DECODE_AND_MERGE_SLASHES decodes %2F and %5C first", () => {
    assert.equal(normalizePath("/a%2fb", "DECODE_AND_MERGE_SLASHES"), "/a/b");
    assert.equal(normalizePath("/a%5Cb", "DECODE_AND_MERGE_SLASHES"), "/a/b");
    assert.equal(normalizePath("/public/..%2Fadmin", "DECODE_AND_MERGE_SLASHES"), "/admin");
    assert.equal(normalizePath("/public/..%2Fadmin", "BASE"), "/public/..%2Fadmin");
    assert.equal(normalizePath("/a%252f", "DECODE_AND_MERGE_SLASHES"), "/a%252f");
  });

  it("Istio: NONE leaves the path alone", () => {
    assert.equal(normalizePath("/a/../b//%2e", "NONE"), "/a/../b//%2e");
  });

  const pathChars = fc.constantFrom("a", "B", "/", "/", ".", "..", "\\", "%", "%2e", "%2F", "%5c", "%41", "%00", "%%30", "?", "#", " ", "é", "~");
  const path = fc.array(pathChars, { maxLength: 16 }).map((parts) => parts.join(""));

  it("normalizing twice gives what normalizing once gave (every mode)", () => {
    fc.assert(
      fc.property(path, fc.constantFrom(...PATH_NORMALIZATIONS), (p, mode) => {
        const once = normalizePath(p, mode);
        if (once !== null) assert.equal(normalizePath(once, mode), once);
      }),
      { numRuns: 2000 },
    );
  });

  it("a normalized path starts with / and has no dot segment left", () => {
    fc.assert(
      fc.property(path, fc.constantFrom("BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES" as const), (p, mode) => {
        const out = normalizePath(p, mode);
        if (out === null) return;
        const head = out.split(/[?#]/)[0] as string;
        assert.ok(head.startsWith("/"), out);
        assert.ok(!head.split("/").some((seg) => seg === "." || seg === ".."), out);
        if (mode !== "BASE") assert.ok(!head.includes("//"), out);
      }),
      { numRuns: 2000 },
    );
  });
});
