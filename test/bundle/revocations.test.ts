import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BundleError, normalizeSerial, RevocationList } from "../../src/bundle/index.ts";

const AT = "2026-11-23T00:00:00Z";

function list(value: unknown): RevocationList {
  return RevocationList.parse(JSON.stringify(value));
}

describe("normalizeSerial", () => {
  const cases: [string, string][] = [
    ["1A2B", "1a2b"],
    ["001a2b", "1a2b"],
    ["00:1A:2B", "1a2b"],
    ["0", "0"],
    ["00", "0"],
    ["00:00", "0"],
    ["7F3E0D7B1C2A4F6E8D9C0B1A2F3E4D5C6B7A8F9E", "7f3e0d7b1c2a4f6e8d9c0b1a2f3e4d5c6b7a8f9e"],
  ];
  for (const [input, expected] of cases) {
    test(`${input} → ${expected}`, () => assert.equal(normalizeSerial(input), expected));
  }
});

describe("RevocationList", () => {
  const revocations = list({
    spiffeIds: [{ id: "spiffe://example.org/ns/apps/sa/stolen", revokedAt: AT }],
    serials: [
      { serial: "00:1A:2B", revokedAt: "2026-11-22T10:00:00Z" },
      { serial: "ABCDEF0123", revokedAt: AT },
    ],
  });

  test("revokes by SPIFFE ID, exactly", () => {
    assert.deepEqual(revocations.isRevoked({ spiffeId: "spiffe://example.org/ns/apps/sa/stolen" }), { kind: "spiffe-id", revokedAt: AT });
    assert.equal(revocations.isRevoked({ spiffeId: "spiffe://example.org/ns/apps/sa/stolen2" }), null);
    assert.equal(revocations.isRevoked({ spiffeId: "spiffe://example.org/ns/apps/sa" }), null);
    assert.equal(revocations.isRevoked({ spiffeId: "spiffe://EXAMPLE.org/ns/apps/sa/stolen" }), null);
  });

  test("revokes by serial in any hex spelling (Node's X509Certificate prints uppercase with leading zeros)", () => {
    for (const serial of ["1A2B", "001A2B", "1a2b", "00:1a:2b"]) {
      assert.deepEqual(revocations.isRevoked({ serial }), { kind: "serial", revokedAt: "2026-11-22T10:00:00Z" }, serial);
    }
    assert.deepEqual(revocations.isRevoked({ serial: "abcdef0123" }), { kind: "serial", revokedAt: AT });
    assert.equal(revocations.isRevoked({ serial: "1A2C" }), null);
  });

  test("the SPIFFE ID is checked first; nulls and absent fields match nothing", () => {
    assert.equal(revocations.isRevoked({ spiffeId: "spiffe://example.org/ns/apps/sa/stolen", serial: "1a2b" })!.kind, "spiffe-id");
    assert.equal(revocations.isRevoked({ spiffeId: "spiffe://example.org/ok", serial: "1a2b" })!.kind, "serial");
    assert.equal(revocations.isRevoked({ spiffeId: null, serial: null }), null);
    assert.equal(revocations.isRevoked({}), null);
  });

  test("counts its entries", () => {
    assert.equal(revocations.size, 3);
    assert.deepEqual(revocations.counts, { spiffeIds: 1, serials: 2 });
    assert.equal(RevocationList.EMPTY.size, 0);
    assert.equal(RevocationList.EMPTY.isRevoked({ spiffeId: "spiffe://example.org/a", serial: "1" }), null);
  });

  test("both lists are optional", () => {
    assert.equal(list({}).size, 0);
    assert.deepEqual(list({ serials: [{ serial: "1", revokedAt: AT }] }).counts, { spiffeIds: 0, serials: 1 });
  });

  const malformed: [string, string, RegExp][] = [
    ["not JSON", "{", /^bundle: revocations.json: not JSON/],
    ["an array", "[]", /^bundle: revocations.json: Invalid input: expected object, received array$/],
    ["an unknown top-level key", JSON.stringify({ spiffeIds: [], certs: [] }), /^bundle: revocations.json: Unrecognized key: "certs"$/],
    ["an unknown key in an entry", JSON.stringify({ spiffeIds: [{ id: "spiffe://example.org/a", revokedAt: AT, reason: "x" }] }), /^bundle: revocations.json: spiffeIds.0: Unrecognized key: "reason"$/],
    ["spiffeIds not an array", JSON.stringify({ spiffeIds: "spiffe://example.org/a" }), /^bundle: revocations.json: spiffeIds: Invalid input: expected array/],
    ["an entry without revokedAt", JSON.stringify({ spiffeIds: [{ id: "spiffe://example.org/a" }] }), /^bundle: revocations.json: spiffeIds.0.revokedAt: Invalid input/],
    ["a bad SPIFFE ID", JSON.stringify({ spiffeIds: [{ id: "https://example.org/a", revokedAt: AT }] }), /^bundle: revocations.json: spiffeIds.0.id: spiffeid: scheme is missing or invalid$/],
    ["a SPIFFE ID with a dot segment", JSON.stringify({ spiffeIds: [{ id: "spiffe://example.org/a/../b", revokedAt: AT }] }), /spiffeIds.0.id: spiffeid: path cannot contain dot segments/],
    ["a date with milliseconds", JSON.stringify({ spiffeIds: [{ id: "spiffe://example.org/a", revokedAt: "2026-11-23T00:00:00.000Z" }] }), /spiffeIds.0.revokedAt: must be an RFC 3339 UTC time in whole seconds/],
    ["an impossible date", JSON.stringify({ serials: [{ serial: "1", revokedAt: "2026-02-30T00:00:00Z" }] }), /serials.0.revokedAt: must be an RFC 3339 UTC time/],
    ["a non-hex serial", JSON.stringify({ serials: [{ serial: "xyz", revokedAt: AT }] }), /^bundle: revocations.json: serials.0.serial: must be hex/],
    ["a ragged colon serial", JSON.stringify({ serials: [{ serial: "1a:2", revokedAt: AT }] }), /serials.0.serial: must be hex/],
    ["an empty serial", JSON.stringify({ serials: [{ serial: "", revokedAt: AT }] }), /serials.0.serial: must be hex/],
    ["a serial that is too long", JSON.stringify({ serials: [{ serial: "1".repeat(65), revokedAt: AT }] }), /serials.0.serial: must be hex/],
    ["a SPIFFE ID listed twice", JSON.stringify({ spiffeIds: [{ id: "spiffe://example.org/a", revokedAt: AT }, { id: "spiffe://example.org/a", revokedAt: AT }] }), /^bundle: revocations.json: spiffeIds.1: spiffe:\/\/example.org\/a is listed twice$/],
    ["a serial listed twice in two spellings", JSON.stringify({ serials: [{ serial: "0A", revokedAt: AT }, { serial: "a", revokedAt: AT }] }), /^bundle: revocations.json: serials.1: serial a is listed twice$/],
  ];
  for (const [name, text, message] of malformed) {
    test(`refuses ${name}`, () => {
      assert.throws(() => RevocationList.parse(text), (error: unknown) => {
        assert.ok(error instanceof BundleError, String(error));
        assert.equal(error.check, "malformed-revocations");
        assert.match(error.message, message);
        return true;
      });
    });
  }
});
