import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { istioPrincipal, parseSpiffeId, SpiffeIdError, validateTrustDomain } from "../../src/identity/index.ts";

const TD_CHAR_MESSAGE =
  "spiffeid: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores";
const PATH_CHAR_MESSAGE =
  "spiffeid: path segment characters are limited to letters, numbers, dots, dashes, and underscores";

describe("parseSpiffeId", () => {
  const valid: Array<[string, string, string]> = [
    ["spiffe://example.org", "example.org", ""],
    ["spiffe://example.org/ns/default/sa/web", "example.org", "/ns/default/sa/web"],
    ["spiffe://a-b_c.9/x", "a-b_c.9", "/x"],
    ["spiffe://td/UPPER/Case.ok-_", "td", "/UPPER/Case.ok-_"],
    ["spiffe://td/...", "td", "/..."],
    ["spiffe://td/.a/a./..b", "td", "/.a/a./..b"],
    ["spiffe://1.2.3.4/workload", "1.2.3.4", "/workload"],
  ];
  for (const [text, trustDomain, path] of valid) {
    it(`accepts ${text}`, () => {
      assert.deepEqual({ ...parseSpiffeId(text) }, { trustDomain, path, uri: text });
    });
  }

  const invalid: Array<[string, string, string]> = [
    ["", "empty", "spiffeid: cannot be empty"],
    ["example.org/ns/a", "scheme", "spiffeid: scheme is missing or invalid"],
    ["SPIFFE://example.org/a", "scheme", "spiffeid: scheme is missing or invalid"],
    ["Spiffe://example.org/a", "scheme", "spiffeid: scheme is missing or invalid"],
    ["https://example.org/a", "scheme", "spiffeid: scheme is missing or invalid"],
    ["spiffe:/example.org/a", "scheme", "spiffeid: scheme is missing or invalid"],
    ["spiffe://", "trust-domain-missing", "spiffeid: trust domain is missing"],
    ["spiffe:///path", "trust-domain-missing", "spiffeid: trust domain is missing"],
    ["spiffe://Example.org/a", "trust-domain-char", TD_CHAR_MESSAGE],
    ["spiffe://example.org:8080/a", "trust-domain-char", TD_CHAR_MESSAGE],
    ["spiffe://user@example.org/a", "trust-domain-char", TD_CHAR_MESSAGE],
    ["spiffe://user:pw@example.org", "trust-domain-char", TD_CHAR_MESSAGE],
    ["spiffe://example.org?query", "trust-domain-char", TD_CHAR_MESSAGE],
    ["spiffe://example.org#frag", "trust-domain-char", TD_CHAR_MESSAGE],
    ["spiffe://exämple.org", "trust-domain-char", TD_CHAR_MESSAGE],
    ["spiffe://[::1]/a", "trust-domain-char", TD_CHAR_MESSAGE],
    ["spiffe://example.org/a?x=1", "path-char", PATH_CHAR_MESSAGE],
    ["spiffe://example.org/a#frag", "path-char", PATH_CHAR_MESSAGE],
    ["spiffe://example.org/a%20b", "path-char", PATH_CHAR_MESSAGE],
    ["spiffe://example.org/a b", "path-char", PATH_CHAR_MESSAGE],
    ["spiffe://example.org/", "path-trailing-slash", "spiffeid: path cannot have a trailing slash"],
    ["spiffe://example.org/a/", "path-trailing-slash", "spiffeid: path cannot have a trailing slash"],
    ["spiffe://example.org//a", "path-empty-segment", "spiffeid: path cannot contain empty segments"],
    ["spiffe://example.org/a//b", "path-empty-segment", "spiffeid: path cannot contain empty segments"],
    ["spiffe://example.org/.", "path-dot-segment", "spiffeid: path cannot contain dot segments"],
    ["spiffe://example.org/..", "path-dot-segment", "spiffeid: path cannot contain dot segments"],
    ["spiffe://example.org/a/./b", "path-dot-segment", "spiffeid: path cannot contain dot segments"],
    ["spiffe://example.org/a/../b", "path-dot-segment", "spiffeid: path cannot contain dot segments"],
    [`spiffe://example.org/${"a".repeat(2048)}`, "too-long", "spiffeid: SPIFFE ID exceeds 2048 bytes"],
  ];
  for (const [text, check, message] of invalid) {
    it(`rejects ${JSON.stringify(text.slice(0, 60))} (${check})`, () => {
      assert.throws(() => parseSpiffeId(text), (error: unknown) => {
        assert.ok(error instanceof SpiffeIdError);
        assert.equal(error.check, check);
        assert.equal(error.message, message);
        assert.equal(error.name, "SpiffeIdError");
        return true;
      });
    });
  }

  it("accepts an ID of exactly 2048 bytes", () => {
    const text = `spiffe://example.org/${"a".repeat(2048 - "spiffe://example.org/".length)}`;
    assert.equal(text.length, 2048);
    assert.equal(parseSpiffeId(text).uri, text);
  });

  it("SPIFFE-ID §2.3: refuses a trust domain over 255 bytes (a URI host's limit), and takes one of 255", () => {
    const longest = `${"a".repeat(251)}.org`;
    assert.equal(longest.length, 255);
    assert.equal(parseSpiffeId(`spiffe://${longest}/w`).trustDomain, longest);
    assert.throws(() => parseSpiffeId(`spiffe://a${longest}/w`), (error: unknown) => {
      assert.ok(error instanceof SpiffeIdError);
      assert.equal(error.check, "trust-domain-too-long");
      assert.equal(error.message, "spiffeid: trust domain exceeds 255 bytes");
      return true;
    });
    assert.throws(() => parseSpiffeId(`spiffe://a${longest}`), { check: "trust-domain-too-long" });
  });

  it("rejects a non-string without crashing", () => {
    assert.throws(() => parseSpiffeId(undefined as unknown as string), SpiffeIdError);
  });
});

describe("validateTrustDomain", () => {
  it("accepts a lowercase name and rejects an uppercase or empty one", () => {
    validateTrustDomain("prod.example-1_x");
    assert.throws(() => validateTrustDomain("Prod"), { check: "trust-domain-char" });
    assert.throws(() => validateTrustDomain(""), { check: "trust-domain-missing" });
  });

  it("SPIFFE-ID §2.3: refuses a trust domain name over 255 bytes", () => {
    validateTrustDomain("a".repeat(255));
    assert.throws(() => validateTrustDomain("a".repeat(256)), { check: "trust-domain-too-long", message: "spiffeid: trust domain exceeds 255 bytes" });
  });
});

describe("istioPrincipal", () => {
  it("drops the scheme", () => {
    assert.equal(istioPrincipal(parseSpiffeId("spiffe://cluster.local/ns/x/sa/y")), "cluster.local/ns/x/sa/y");
    assert.equal(istioPrincipal(parseSpiffeId("spiffe://cluster.local")), "cluster.local");
  });
});

describe("parseSpiffeId properties", () => {
  const tdChar = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789.-_");
  const pathChar = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_");
  const trustDomain = fc.string({ unit: tdChar, minLength: 1, maxLength: 40 });
  const segment = fc
    .string({ unit: pathChar, minLength: 1, maxLength: 20 })
    .filter((s) => s !== "." && s !== "..");
  const validId = fc
    .tuple(trustDomain, fc.array(segment, { maxLength: 6 }))
    .map(([td, segments]) => ({ td, path: segments.map((s) => `/${s}`).join("") }));

  it("round-trips every valid generated ID", () => {
    fc.assert(
      fc.property(validId, ({ td, path }) => {
        const id = parseSpiffeId(`spiffe://${td}${path}`);
        assert.equal(id.trustDomain, td);
        assert.equal(id.path, path);
        assert.equal(id.uri, `spiffe://${td}${path}`);
        assert.equal(istioPrincipal(id), `${td}${path}`);
      }),
      { numRuns: 500 },
    );
  });

  const reference = (text: string): boolean =>
    text.length <= 2048 &&
    text.slice(9).split("/")[0]!.length <= 255 &&
    /^spiffe:\/\/[a-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(text) &&
    !text.slice(9).split("/").slice(1).some((s) => s === "." || s === "..");

  it("agrees with a reference regular expression and only ever throws SpiffeIdError", () => {
    const noisy = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.string({ unit: "binary", maxLength: 60 }),
      fc.string({ maxLength: 60 }).map((s) => `spiffe://${s}`),
      fc
        .string({ unit: fc.constantFrom(..."aZ9./-_:@?#%~ \u00e9"), maxLength: 40 })
        .map((s) => `spiffe://${s}`),
      validId.map(({ td, path }) => `spiffe://${td}${path}`),
      fc.tuple(fc.integer({ min: 250, max: 260 }), fc.constantFrom("", "/p")).map(([n, path]) => `spiffe://${"t".repeat(n)}${path}`),
    );
    fc.assert(
      fc.property(noisy, (text) => {
        let ok: boolean;
        try {
          parseSpiffeId(text);
          ok = true;
        } catch (error) {
          assert.ok(error instanceof SpiffeIdError, `unexpected ${String(error)}`);
          ok = false;
        }
        assert.equal(ok, reference(text), text);
      }),
      { numRuns: 2000 },
    );
  });
});
