import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  decodeBase64,
  encodeEnvelope,
  encodeStatement,
  imageStatement,
  pae,
  parseEnvelope,
  parseStatement,
  ReleaseError,
  requireSubject,
  sha256Digest,
  signEnvelope,
  unsignedEnvelope,
  verifyEnvelope,
  type Envelope,
  type ReleaseCheck,
} from "../../src/release/index.ts";
import { makeKey } from "../support/release-factory.ts";

function throwsCheck(fn: () => unknown, check: ReleaseCheck, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ReleaseError, String(error));
    assert.equal(error.check, check, error.message);
    assert.match(error.message, message);
    return true;
  });
}

const DIGEST = sha256Digest(Buffer.from("an image manifest"));
const OTHER = sha256Digest(Buffer.from("another image manifest"));

describe("DSSE", () => {
  test("PAE is the spec's encoding (protocol.md's example)", () => {
    assert.equal(pae("http://example.com/HelloWorld", Buffer.from("hello world")).toString(), "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
    assert.equal(pae("", Buffer.alloc(0)).toString(), "DSSEv1 0  0 ");
    // Lengths are bytes, not characters.
    assert.equal(pae("t", Buffer.from("é")).toString(), "DSSEv1 1 t 2 é");
  });

  test("a signed envelope verifies, names its signer, and round-trips through its file form", async () => {
    const k = await makeKey();
    const envelope = signEnvelope(unsignedEnvelope(Buffer.from('{"a":1}')), k.signing);
    assert.equal(envelope.signatures[0]!.keyid, k.signing.kid);
    const parsed = parseEnvelope(encodeEnvelope(envelope), "test");
    const verified = verifyEnvelope(parsed, new Map([[k.trusted.kid, k.trusted]]), "test");
    assert.deepEqual(verified.signedBy, [k.trusted.kid]);
    assert.equal(verified.payload.toString(), '{"a":1}');
  });

  test("signing again with the same key replaces its signature; another key adds one", async () => {
    const a = await makeKey();
    const b = await makeKey();
    let envelope = signEnvelope(unsignedEnvelope(Buffer.from("x")), a.signing);
    envelope = signEnvelope(envelope, a.signing);
    assert.equal(envelope.signatures.length, 1);
    envelope = signEnvelope(envelope, b.signing);
    assert.deepEqual(verifyEnvelope(envelope, new Map([[a.trusted.kid, a.trusted], [b.trusted.kid, b.trusted]]), "t").signedBy, [a.trusted.kid, b.trusted.kid].sort());
  });

  describe("tampering", () => {
    async function signed(): Promise<{ envelope: Envelope; keys: Map<string, any>; other: Awaited<ReturnType<typeof makeKey>> }> {
      const k = await makeKey();
      return { envelope: signEnvelope(unsignedEnvelope(Buffer.from('{"subject":"x"}')), k.signing), keys: new Map([[k.trusted.kid, k.trusted]]), other: await makeKey() };
    }

    test("an altered payload", async () => {
      const { envelope, keys } = await signed();
      throwsCheck(() => verifyEnvelope({ ...envelope, payload: Buffer.from('{"subject":"y"}').toString("base64") }, keys, "the statement"), "bad-signature", /the statement: the signature by trusted key .* does not verify/);
    });

    test("an altered payload type (it is signed too)", async () => {
      const { envelope, keys } = await signed();
      throwsCheck(() => verifyEnvelope({ ...envelope, payloadType: "text/plain" }, keys, "t"), "bad-signature", /does not verify/);
    });

    test("an altered signature", async () => {
      const { envelope, keys } = await signed();
      const sig = Buffer.from(envelope.signatures[0]!.sig, "base64");
      sig[0]! ^= 1;
      throwsCheck(() => verifyEnvelope({ ...envelope, signatures: [{ ...envelope.signatures[0]!, sig: sig.toString("base64") }] }, keys, "t"), "bad-signature", /does not verify/);
    });

    test("a signature by another key under the trusted key's id", async () => {
      const { envelope, keys, other } = await signed();
      const forged = signEnvelope(unsignedEnvelope(decodeBase64(envelope.payload)!), other.signing);
      throwsCheck(() => verifyEnvelope({ ...forged, signatures: [{ keyid: envelope.signatures[0]!.keyid, sig: forged.signatures[0]!.sig }] }, keys, "t"), "bad-signature", /does not verify/);
    });

    test("the wrong key: nothing is signed by a trusted one", async () => {
      const { envelope, other } = await signed();
      throwsCheck(() => verifyEnvelope(envelope, new Map([[other.trusted.kid, other.trusted]]), "the SBOM attestation"), "unknown-key", /the SBOM attestation: no signature is by a trusted key \(signed by .*; 1 key trusted\)/);
    });

    test("no signature at all", async () => {
      const { keys } = await signed();
      throwsCheck(() => verifyEnvelope(unsignedEnvelope(Buffer.from("x")), keys, "the provenance"), "signature-missing", /the provenance holds no signature/);
    });
  });

  test("malformed envelopes are refused by shape", () => {
    throwsCheck(() => parseEnvelope(Buffer.from("{"), "e"), "malformed-envelope", /e: not JSON/);
    throwsCheck(() => parseEnvelope(Buffer.from("[]"), "e"), "malformed-envelope", /not a DSSE envelope/);
    throwsCheck(() => parseEnvelope(Buffer.from('{"payload":"!!","payloadType":"application/vnd.in-toto+json","signatures":[]}'), "e"), "malformed-envelope", /payload is not base64/);
    throwsCheck(() => parseEnvelope(Buffer.from('{"payload":"","payloadType":"text/plain","signatures":[]}'), "e"), "malformed-envelope", /payloadType is "text\/plain", expected application\/vnd.in-toto\+json/);
    throwsCheck(() => parseEnvelope(Buffer.from('{"payload":"","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":7}]}'), "e"), "malformed-envelope", /signature 0 has no base64 sig/);
  });

  test("property: parseEnvelope accepts or refuses any JSON with a ReleaseError, never anything else", () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => {
      try {
        parseEnvelope(Buffer.from(JSON.stringify(value)), "e");
      } catch (error) {
        assert.ok(error instanceof ReleaseError && error.check === "malformed-envelope", String(error));
      }
    }));
    fc.assert(fc.property(fc.record({ payload: fc.string(), payloadType: fc.constant("application/vnd.in-toto+json"), signatures: fc.array(fc.record({ keyid: fc.string(), sig: fc.string() })) }), (value) => {
      try {
        parseEnvelope(Buffer.from(JSON.stringify(value)), "e");
      } catch (error) {
        assert.ok(error instanceof ReleaseError && error.check === "malformed-envelope", String(error));
      }
    }));
  });

  test("property: decodeBase64 reads what either base64 alphabet encodes", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const buffer = Buffer.from(bytes);
      assert.deepEqual(decodeBase64(buffer.toString("base64")), buffer);
      assert.deepEqual(decodeBase64(buffer.toString("base64url")), buffer);
    }));
  });
});

describe("in-toto statements", () => {
  test("a statement about an image names its manifest digest as its only subject", () => {
    const statement = imageStatement("edgeward", DIGEST, "https://example.org/p", { a: 1 });
    const parsed = parseStatement(encodeStatement(statement), "s", "https://example.org/p");
    assert.deepEqual(parsed.subject, [{ name: "edgeward", digest: { sha256: DIGEST.slice(7) } }]);
    requireSubject(parsed, DIGEST, "s");
  });

  test("a statement about another image is a digest mismatch", () => {
    const parsed = parseStatement(encodeStatement(imageStatement("edgeward", OTHER, "p", {})), "the provenance", "p");
    throwsCheck(() => requireSubject(parsed, DIGEST, "the provenance"), "digest-mismatch", new RegExp(`the provenance is about ${OTHER}, not the image ${DIGEST}`));
  });

  test("malformed statements are refused by shape", () => {
    const bad = (value: unknown, message: RegExp) => throwsCheck(() => parseStatement(Buffer.from(JSON.stringify(value)), "s", "p"), "malformed-statement", message);
    bad({ _type: "https://in-toto.io/Statement/v0.1", subject: [{ digest: { sha256: "ab" } }], predicateType: "p", predicate: {} }, /_type is not https:\/\/in-toto.io\/Statement\/v1/);
    bad({ _type: "https://in-toto.io/Statement/v1", subject: [], predicateType: "p", predicate: {} }, /subject is not a non-empty array/);
    bad({ _type: "https://in-toto.io/Statement/v1", subject: [{ digest: { sha256: "AB" } }], predicateType: "p", predicate: {} }, /not lowercase hex/);
    bad({ _type: "https://in-toto.io/Statement/v1", subject: [{ digest: { sha256: "ab" } }], predicateType: "q", predicate: {} }, /predicateType is "q", expected p/);
    bad({ _type: "https://in-toto.io/Statement/v1", subject: [{ digest: { sha256: "ab" } }], predicateType: "p", predicate: [] }, /predicate is not an object/);
  });

  test("property: parseStatement refuses with a ReleaseError or returns subjects that all have digests", () => {
    const subject = fc.record({ name: fc.option(fc.string(), { nil: undefined }), digest: fc.dictionary(fc.constantFrom("sha256", "sha512", "gitCommit"), fc.oneof(fc.stringMatching(/^[0-9a-f]{1,64}$/), fc.string())) });
    fc.assert(fc.property(fc.oneof(fc.jsonValue(), fc.record({ _type: fc.constant("https://in-toto.io/Statement/v1"), subject: fc.array(subject), predicateType: fc.constant("p"), predicate: fc.jsonValue() })), (value) => {
      try {
        const parsed = parseStatement(Buffer.from(JSON.stringify(value)), "s", "p");
        assert.ok(parsed.subject.length > 0 && parsed.subject.every((s) => Object.keys(s.digest).length > 0));
      } catch (error) {
        assert.ok(error instanceof ReleaseError && error.check === "malformed-statement", String(error));
      }
    }));
  });
});
