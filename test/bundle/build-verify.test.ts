import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { GeneralSign } from "jose";
import {
  BundleError,
  buildBundle,
  readBundleFiles,
  readPolicyDirectory,
  sha256Hex,
  verifyBundle,
  type BundleCheck,
  type BundleFiles,
  type VerifyOptions,
} from "../../src/bundle/index.ts";
import { bytes, HOUR, makeBundle, makeKey, POLICY_YAML, T0, trust, withFiles, type TestKey } from "../support/bundle-factory.ts";

const DAY = 24 * HOUR;
const NOT_AFTER = T0 + DAY * 1000;

async function rejectsWith(promise: Promise<unknown>, check: BundleCheck, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof BundleError, String(error));
    assert.equal(error.check, check, error.message);
    assert.match(error.message, message);
    return true;
  });
}

/** Signs arbitrary manifest bytes with `keys`: how a trusted signer's malformed bundle is made. */
async function signManifest(manifest: Uint8Array, keys: TestKey[]): Promise<Uint8Array> {
  const signer = new GeneralSign(manifest);
  for (const k of keys) signer.addSignature(k.key).setProtectedHeader({ alg: "EdDSA", kid: k.kid });
  const { signatures } = await signer.sign();
  return bytes(JSON.stringify({ signatures: signatures.map((s) => ({ protected: s.protected, signature: s.signature })) }));
}

/** A manifest object like the builder writes, for tests that change one field. */
function manifestObject(files: Record<string, string>, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: "edgeward.dev/v1alpha1",
    kind: "PolicyBundle",
    name: "edge-policy",
    revision: 1,
    createdAt: "2026-11-23T00:00:00Z",
    notBefore: "2026-11-23T00:00:00Z",
    notAfter: "2026-11-24T00:00:00Z",
    degradation: { graceSeconds: 21600, restrictedSeconds: 86400 },
    files: Object.fromEntries(Object.entries(files).map(([path, text]) => [path, sha256Hex(bytes(text))])),
    ...overrides,
  };
}

/** A bundle whose manifest is `manifest` verbatim, properly signed by `key`. */
async function signedBundle(manifest: unknown, files: Record<string, string>, key: TestKey): Promise<BundleFiles> {
  const manifestBytes = bytes(typeof manifest === "string" ? manifest : JSON.stringify(manifest));
  const all = new Map(Object.entries(files).map(([path, text]) => [path, bytes(text)]));
  all.set("manifest.json", manifestBytes);
  all.set("manifest.json.sig", await signManifest(manifestBytes, [key]));
  return all;
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-bundle-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeTree(root: string, files: BundleFiles): void {
  for (const [path, data] of files) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), data);
  }
}

describe("buildBundle", () => {
  test("writes the canonical manifest, a detached JWS per key and a reproducible archive", async () => {
    const key = await makeKey();
    const built = await makeBundle({ keys: [key], revision: 42, policy: { "b.yaml": "b: 1\n", "a/x.yml": "x: 1\n" } });
    const manifestText = Buffer.from(built.files.get("manifest.json")!).toString("utf8");
    assert.equal(manifestText, `{
  "apiVersion": "edgeward.dev/v1alpha1",
  "kind": "PolicyBundle",
  "name": "edge-policy",
  "revision": 42,
  "createdAt": "2026-11-23T00:00:00Z",
  "notBefore": "2026-11-23T00:00:00Z",
  "notAfter": "2026-11-24T00:00:00Z",
  "degradation": {
    "graceSeconds": 21600,
    "restrictedSeconds": 86400
  },
  "files": {
    "a/x.yml": "${sha256Hex(bytes("x: 1\n"))}",
    "b.yaml": "${sha256Hex(bytes("b: 1\n"))}"
  }
}
`);
    assert.deepEqual(JSON.parse(manifestText), built.manifest);
    const sig = JSON.parse(Buffer.from(built.files.get("manifest.json.sig")!).toString("utf8"));
    assert.deepEqual(Object.keys(sig), ["signatures"], "the payload is detached");
    assert.equal(sig.signatures.length, 1);
    assert.deepEqual(JSON.parse(Buffer.from(sig.signatures[0].protected, "base64url").toString()), { alg: "EdDSA", kid: key.kid });
    assert.deepEqual([...built.files.keys()].sort(), ["a/x.yml", "b.yaml", "manifest.json", "manifest.json.sig"]);
  });

  test("the same input gives byte-identical output, whatever the order the keys and files come in", async () => {
    const [a, b] = [await makeKey(), await makeKey()];
    const policy = { "one.yaml": "1\n", "two.yaml": "2\n" };
    const first = await makeBundle({ keys: [a, b], policy, revision: 7 });
    const second = await makeBundle({ keys: [b, a], policy: { "two.yaml": "2\n", "one.yaml": "1\n" }, revision: 7 });
    assert.deepEqual(second.archive, first.archive);
    const later = await makeBundle({ keys: [a, b], policy, revision: 7, nowMs: T0 + 1000 });
    assert.notDeepEqual(later.archive, first.archive);
    const subSecond = await makeBundle({ keys: [a, b], policy, revision: 7, nowMs: T0 + 999 });
    assert.deepEqual(subSecond.archive, first.archive, "times are kept in whole seconds");
  });

  const badInput: [string, () => Promise<unknown>, BundleCheck, RegExp][] = [
    ["an input holding manifest.json", async () => build({ "manifest.json": "{}" }), "malformed-archive", /^bundle: the input already holds manifest.json; build from the policy sources/],
    ["an input holding manifest.json.sig", async () => build({ "manifest.json.sig": "{}" }), "malformed-archive", /already holds manifest.json.sig/],
    ["an input without a policy file", async () => build({ "README.md": "hi" }, {}, false), "malformed-manifest", /^bundle: files: lists no policy file \(.yaml or .yml\)$/],
    ["an unsafe path", async () => build({ "../escape.yaml": "x" }), "malformed-manifest", /^bundle: files: path "..\/escape.yaml" has a ".." segment$/],
    ["malformed revocations", async () => build({ "revocations.json": "{\"spiffeIds\": 1}" }), "malformed-revocations", /^bundle: revocations.json: spiffeIds: Invalid input/],
    ["no signing key", async () => build({}, { keys: [] }), "signature-missing", /^bundle: at least one signing key is needed$/],
    ["a zero validity", async () => build({}, { validForSeconds: 0 }), "malformed-manifest", /validity period must be a positive whole number of seconds/],
    ["revision 0", async () => build({}, { revision: 0 }), "malformed-manifest", /^bundle: revision: Too small: expected number to be >=1$/],
    ["a fractional revision", async () => build({}, { revision: 1.5 }), "malformed-manifest", /^bundle: revision: Invalid input: expected int, received number$/],
    ["a name with a space", async () => build({}, { name: "my policies" }), "malformed-manifest", /^bundle: name: must be 1-128 characters/],
    ["a negative grace period", async () => build({}, { graceSeconds: -1 }), "malformed-manifest", /^bundle: degradation.graceSeconds: Too small/],
    ["a restricted period over ten years", async () => build({}, { restrictedSeconds: 11 * 366 * DAY }), "malformed-manifest", /^bundle: degradation.restrictedSeconds: Too big/],
  ];
  async function build(extra: Record<string, string>, overrides: Record<string, unknown> = {}, withPolicy = true) {
    const files = new Map(Object.entries({ ...(withPolicy ? { "policy.yaml": POLICY_YAML } : {}), ...extra }).map(([p, t]) => [p, bytes(t)]));
    return buildBundle({ files, name: "edge-policy", revision: 1, nowMs: T0, validForSeconds: DAY, graceSeconds: 0, restrictedSeconds: DAY, keys: [await makeKey()], ...overrides });
  }
  for (const [name, run, check, message] of badInput) {
    test(`refuses ${name}`, () => rejectsWith(run(), check, message));
  }
});

describe("verifyBundle", () => {
  test("returns the verified bundle: manifest, digest, window, signers, policy files in path order, revocations", async () => {
    const made = await makeBundle({
      revision: 3,
      policy: { "z.yaml": "z\n", "a/b.yml": "ab\n", "a.yaml": "a\n" },
      revocations: { spiffeIds: [{ id: "spiffe://example.org/ns/apps/sa/gone", revokedAt: "2026-11-22T00:00:00Z" }] },
    });
    const verified = await verifyBundle(made.files, { keys: made.trusted, nowMs: T0 });
    assert.deepEqual(verified.manifest, made.manifest);
    assert.equal(verified.digest, sha256Hex(made.files.get("manifest.json")!));
    assert.equal(verified.createdAtMs, T0);
    assert.equal(verified.notBeforeMs, T0);
    assert.equal(verified.notAfterMs, NOT_AFTER);
    assert.deepEqual(verified.signedBy, [made.keys[0]!.kid]);
    assert.deepEqual(verified.policyFiles, [
      { path: "a.yaml", text: "a\n" },
      { path: "a/b.yml", text: "ab\n" },
      { path: "z.yaml", text: "z\n" },
    ]);
    assert.deepEqual(verified.revocations.isRevoked({ spiffeId: "spiffe://example.org/ns/apps/sa/gone" }), { kind: "spiffe-id", revokedAt: "2026-11-22T00:00:00Z" });
    assert.equal(verified.files, made.files);
    assert.equal((await verifyBundle(made.files, { keys: made.trusted, nowMs: NOT_AFTER + 30 * DAY * 1000 })).manifest.revision, 3, "an old bundle verifies; the ladder decides what it is worth");
  });

  describe("each failure names its check", async () => {
    const made = await makeBundle({ revision: 5, revocations: { serials: [{ serial: "1a", revokedAt: "2026-11-23T00:00:00Z" }] } });
    const other = await makeKey();
    const opts: VerifyOptions = { keys: made.trusted, nowMs: T0 };
    const manifest = Buffer.from(made.files.get("manifest.json")!).toString("utf8");
    const sig = JSON.parse(Buffer.from(made.files.get("manifest.json.sig")!).toString("utf8"));
    const otherSig = JSON.parse(Buffer.from(await signManifest(made.files.get("manifest.json")!, [other])).toString("utf8"));
    const { kid } = made.keys[0]!;
    const verify = (files: BundleFiles, extra: Partial<VerifyOptions> = {}) => verifyBundle(files, { ...opts, ...extra });
    const sigWith = (signatures: unknown) => JSON.stringify({ signatures });

    const cases: [string, () => Promise<unknown>, BundleCheck, RegExp][] = [
      ["manifest.json missing", () => verify(withFiles(made.files, { "manifest.json": null })), "malformed-manifest", /^bundle: manifest.json is missing$/],
      ["manifest.json.sig missing", () => verify(withFiles(made.files, { "manifest.json.sig": null })), "signature-missing", /^bundle: manifest.json.sig is missing: the bundle is not signed$/],
      ["an empty signatures array", () => verify(withFiles(made.files, { "manifest.json.sig": sigWith([]) })), "signature-missing", /^bundle: manifest.json.sig holds no signature$/],
      ["a signature file that is not JSON", () => verify(withFiles(made.files, { "manifest.json.sig": "eyJ.eyJ.sig" })), "signature-missing", /^bundle: manifest.json.sig is not JSON$/],
      ["a compact JWS instead of JSON", () => verify(withFiles(made.files, { "manifest.json.sig": JSON.stringify(`${sig.signatures[0].protected}..${sig.signatures[0].signature}`) })), "signature-missing", /no "signatures" array/],
      ["a signature entry without its signature", () => verify(withFiles(made.files, { "manifest.json.sig": sigWith([{ protected: sig.signatures[0].protected }]) })), "signature-missing", /^bundle: manifest.json.sig: signature 0 is not a JWS signature object$/],
      ["an unreadable protected header", () => verify(withFiles(made.files, { "manifest.json.sig": sigWith([{ protected: "bm90IGpzb24", signature: "AA" }]) })), "signature-missing", /signature 0 has an unreadable protected header/],
      ["a signature by an untrusted key", () => verify(withFiles(made.files, { "manifest.json.sig": JSON.stringify(otherSig) })), "unknown-key", new RegExp(`^bundle: no signature is by a trusted key \\(signed by ${other.kid}; 1 key trusted\\)$`)],
      ["no trusted keys at all", () => verify(made.files, { keys: new Map() }), "unknown-key", /0 keys trusted/],
      ["a trusted kid on another key's signature", () => verify(withFiles(made.files, { "manifest.json.sig": sigWith([{ protected: sig.signatures[0].protected, signature: otherSig.signatures[0].signature }]) })), "bad-signature", new RegExp(`^bundle: the signature by trusted key ${kid} does not verify \\(ERR_JWS_SIGNATURE_VERIFICATION_FAILED\\)`)],
      ["an edited manifest", () => verify(withFiles(made.files, { "manifest.json": manifest.replace('"revision": 5', '"revision": 6') })), "bad-signature", /does not verify/],
      ["a manifest with a byte appended", () => verify(withFiles(made.files, { "manifest.json": `${manifest} ` })), "bad-signature", /does not verify/],
      ["a truncated signature", () => verify(withFiles(made.files, { "manifest.json.sig": sigWith([{ ...sig.signatures[0], signature: sig.signatures[0].signature.slice(0, 40) }]) })), "bad-signature", /does not verify/],
      ["a trusted kid with another algorithm", () => verify(withFiles(made.files, { "manifest.json.sig": sigWith([{ protected: Buffer.from(JSON.stringify({ alg: "HS256", kid })).toString("base64url"), signature: sig.signatures[0].signature }]) })), "bad-signature", /\(ERR_JOSE_ALG_NOT_ALLOWED\)/],
      ["a file added", () => verify(withFiles(made.files, { "extra.yaml": "x: 1\n" })), "file-added", /^bundle: extra.yaml is in the bundle but not in the manifest$/],
      ["a file removed", () => verify(withFiles(made.files, { "revocations.json": null })), "file-removed", /^bundle: revocations.json is in the manifest but not in the bundle$/],
      ["a file changed", () => verify(withFiles(made.files, { "policy.yaml": `${POLICY_YAML}# edited\n` })), "file-changed", /^bundle: policy.yaml does not match its digest in the manifest$/],
      ["a file emptied", () => verify(withFiles(made.files, { "revocations.json": "" })), "file-changed", /revocations.json does not match/],
      ["a lower revision than the active one", () => verify(made.files, { active: { revision: 6, digest: "0".repeat(64) } }), "rollback", /^bundle: revision 5 is older than the active revision 6$/],
      ["the active revision with another manifest", () => verify(made.files, { active: { revision: 5, digest: "0".repeat(64) } }), "revision-reused", /^bundle: revision 5 is the active revision but a different manifest; publish a higher revision$/],
      ["the active revision when the active manifest is unknown", () => verify(made.files, { active: { revision: 5, digest: null } }), "revision-reused", /revision 5 is the active revision/],
      ["a time before notBefore", () => verify(made.files, { nowMs: T0 - 1 }), "not-yet-valid", /^bundle: the bundle is not valid before 2026-11-23T00:00:00Z$/],
      ["notAfter, when freshness is required", () => verify(made.files, { nowMs: NOT_AFTER, requireFresh: true }), "expired", /^bundle: the bundle expired at 2026-11-24T00:00:00Z$/],
    ];
    for (const [name, run, check, message] of cases) {
      test(`${name} → ${check}`, () => rejectsWith(run(), check, message));
    }

    test("passes at the edges: notBefore itself, just before notAfter when fresh is required, the same active bundle, a lower active revision", async () => {
      assert.equal((await verify(made.files, { nowMs: T0 })).manifest.revision, 5);
      assert.equal((await verify(made.files, { nowMs: NOT_AFTER - 1, requireFresh: true })).manifest.revision, 5);
      const digest = sha256Hex(made.files.get("manifest.json")!);
      assert.equal((await verify(made.files, { active: { revision: 5, digest } })).digest, digest);
      assert.equal((await verify(made.files, { active: { revision: 4, digest: null } })).manifest.revision, 5);
    });
  });

  describe("the manifest is parsed only once its signature verifies", async () => {
    const key = await makeKey();
    const garbage = withFiles(new Map(), { "manifest.json": "{not json", "policy.yaml": POLICY_YAML });
    test("unsigned garbage → signature-missing", () => rejectsWith(verifyBundle(garbage, { keys: trust(key), nowMs: T0 }), "signature-missing", /is missing/));
    test("garbage signed by an unknown key → unknown-key", async () => {
      const signed = withFiles(garbage, { "manifest.json.sig": await signManifest(garbage.get("manifest.json")!, [await makeKey()]) });
      await rejectsWith(verifyBundle(signed, { keys: trust(key), nowMs: T0 }), "unknown-key", /no signature is by a trusted key/);
    });
    test("garbage with a signature that does not verify → bad-signature", async () => {
      const signed = withFiles(garbage, { "manifest.json.sig": await signManifest(bytes("{}"), [key]) });
      await rejectsWith(verifyBundle(signed, { keys: trust(key), nowMs: T0 }), "bad-signature", /does not verify/);
    });
  });

  describe("a trusted signer's malformed manifest → malformed-manifest", async () => {
    const key = await makeKey();
    const files = { "policy.yaml": POLICY_YAML };
    const cases: [string, unknown, RegExp][] = [
      ["not JSON", "{\"revision\": 1", /^bundle: manifest.json is not UTF-8 JSON/],
      ["not UTF-8", Buffer.from([0x7b, 0xff, 0x7d]).toString("latin1"), /is not UTF-8 JSON/],
      ["an array", "[]", /^bundle: Invalid input: expected object, received array$/],
      ["an unknown key", manifestObject(files, { extra: true }), /^bundle: Unrecognized key: "extra"$/],
      ["an unknown key in degradation", manifestObject(files, { degradation: { graceSeconds: 0, restrictedSeconds: 0, lockedSeconds: 0 } }), /^bundle: degradation: Unrecognized key: "lockedSeconds"$/],
      ["another apiVersion", manifestObject(files, { apiVersion: "edgeward.dev/v2" }), /^bundle: apiVersion: Invalid input: expected "edgeward.dev\/v1alpha1"$/],
      ["another kind", manifestObject(files, { kind: "Bundle" }), /^bundle: kind: Invalid input/],
      ["a missing revision", (() => { const m = manifestObject(files); delete m.revision; return m; })(), /^bundle: revision: Invalid input: expected number, received undefined$/],
      ["revision 0", manifestObject(files, { revision: 0 }), /^bundle: revision: Too small/],
      ["a revision as a string", manifestObject(files, { revision: "1" }), /^bundle: revision: Invalid input: expected number, received string$/],
      ["an unsafe revision", manifestObject(files, { revision: 2 ** 53 }), /^bundle: revision: Too big/],
      ["a date that does not exist", manifestObject(files, { notAfter: "2026-02-30T00:00:00Z" }), /^bundle: notAfter: must be an RFC 3339 UTC time in whole seconds/],
      ["a date with milliseconds", manifestObject(files, { createdAt: "2026-11-23T00:00:00.000Z" }), /^bundle: createdAt: must be an RFC 3339 UTC time/],
      ["a date with an offset", manifestObject(files, { notBefore: "2026-11-23T01:00:00+01:00" }), /^bundle: notBefore: must be an RFC 3339 UTC time/],
      ["a date as a number", manifestObject(files, { notBefore: 1795392000 }), /^bundle: notBefore: Invalid input: expected string, received number$/],
      ["notAfter before notBefore", manifestObject(files, { notAfter: "2026-11-22T23:59:59Z" }), /^bundle: notAfter 2026-11-22T23:59:59Z is before notBefore 2026-11-23T00:00:00Z$/],
      ["a negative grace period", manifestObject(files, { degradation: { graceSeconds: -1, restrictedSeconds: 0 } }), /^bundle: degradation.graceSeconds: Too small/],
      ["files not an object", manifestObject(files, { files: ["policy.yaml"] }), /^bundle: files: Invalid input: expected record, received array$/],
      ["an uppercase digest", manifestObject(files, { files: { "policy.yaml": sha256Hex(bytes(POLICY_YAML)).toUpperCase() } }), /^bundle: files.policy.yaml: must be a lowercase sha256 hex digest$/],
      ["a traversing path", manifestObject(files, { files: { "../policy.yaml": sha256Hex(bytes(POLICY_YAML)) } }), /^bundle: files: path "..\/policy.yaml" has a ".." segment$/],
      ["a file list naming the manifest", manifestObject(files, { files: { "policy.yaml": sha256Hex(bytes(POLICY_YAML)), "manifest.json": "0".repeat(64) } }), /^bundle: files: manifest.json cannot list itself$/],
      ["no policy file", manifestObject(files, { files: { "revocations.json": sha256Hex(bytes("{}")) } }), /^bundle: files: lists no policy file/],
      ["a __proto__ file the schema would drop", `{"apiVersion":"edgeward.dev/v1alpha1","kind":"PolicyBundle","name":"n","revision":1,"createdAt":"2026-11-23T00:00:00Z","notBefore":"2026-11-23T00:00:00Z","notAfter":"2026-11-24T00:00:00Z","degradation":{"graceSeconds":0,"restrictedSeconds":0},"files":{"policy.yaml":"${sha256Hex(bytes(POLICY_YAML))}","__proto__":"bad"}}`, /^bundle: files.__proto__: must be a lowercase sha256 hex digest$/],
    ];
    for (const [name, manifest, message] of cases) {
      test(name, async () => rejectsWith(verifyBundle(await signedBundle(manifest, files, key), { keys: trust(key), nowMs: T0 }), "malformed-manifest", message));
    }

    test("a signed manifest with malformed revocations → malformed-revocations, after every other check", async () => {
      const withRevocations = { ...files, "revocations.json": "{\"serials\": [{\"serial\": \"zz\", \"revokedAt\": \"2026-11-23T00:00:00Z\"}]}" };
      const bundle = await signedBundle(manifestObject(withRevocations), withRevocations, key);
      await rejectsWith(verifyBundle(bundle, { keys: trust(key), nowMs: T0 }), "malformed-revocations", /^bundle: revocations.json: serials.0.serial: must be hex/);
      await rejectsWith(verifyBundle(bundle, { keys: trust(key), nowMs: T0 - 1000 }), "not-yet-valid", /not valid before/);
    });
  });

  test("checks run in the contract's order", async () => {
    const made = await makeBundle({ revision: 2 });
    const opts = { keys: made.trusted, nowMs: T0 - 1000, active: { revision: 3, digest: null }, requireFresh: true };
    await rejectsWith(verifyBundle(withFiles(made.files, { "x.yaml": "" }), opts), "file-added", /x.yaml/);
    await rejectsWith(verifyBundle(made.files, opts), "rollback", /revision 2 is older/);
    await rejectsWith(verifyBundle(made.files, { ...opts, active: null }), "not-yet-valid", /not valid before/);
  });

  describe("key rotation", async () => {
    const [oldKey, newKey, stranger] = [await makeKey(), await makeKey(), await makeKey()];
    const made = await makeBundle({ keys: [oldKey, newKey] });
    test("a bundle signed by the old and the new key verifies for a verifier trusting either or both", async () => {
      assert.deepEqual((await verifyBundle(made.files, { keys: trust(newKey), nowMs: T0 })).signedBy, [newKey.kid]);
      assert.deepEqual((await verifyBundle(made.files, { keys: trust(oldKey), nowMs: T0 })).signedBy, [oldKey.kid]);
      assert.deepEqual((await verifyBundle(made.files, { keys: trust(oldKey, newKey, stranger), nowMs: T0 })).signedBy, [oldKey.kid, newKey.kid].sort());
    });
    test("a verifier trusting neither key says unknown-key", () => rejectsWith(verifyBundle(made.files, { keys: trust(stranger), nowMs: T0 }), "unknown-key", /no signature is by a trusted key/));
    test("a bad signature by a trusted key fails even beside a good one; an untrusted bad one is ignored", async () => {
      const sig = JSON.parse(Buffer.from(made.files.get("manifest.json.sig")!).toString("utf8"));
      const corrupt = sig.signatures.map((s: { protected: string; signature: string }) => {
        const header = JSON.parse(Buffer.from(s.protected, "base64url").toString());
        return header.kid === newKey.kid ? { ...s, signature: `${s.signature[0] === "A" ? "B" : "A"}${s.signature.slice(1)}` } : s;
      });
      const files = withFiles(made.files, { "manifest.json.sig": JSON.stringify({ signatures: corrupt }) });
      await rejectsWith(verifyBundle(files, { keys: trust(oldKey, newKey), nowMs: T0 }), "bad-signature", new RegExp(`trusted key ${newKey.kid} does not verify`));
      assert.deepEqual((await verifyBundle(files, { keys: trust(oldKey), nowMs: T0 })).signedBy, [oldKey.kid]);
    });
  });
});

describe("bundles on disk", () => {
  test("readBundleFiles reads a .tar.gz and a directory holding the same files alike", async (t) => {
    const dir = tempDir(t);
    const made = await makeBundle({ policy: { "policy.yaml": POLICY_YAML, "teams/a.yml": "a: 1\n" } });
    writeFileSync(join(dir, "bundle.tar.gz"), made.archive);
    writeTree(join(dir, "unpacked"), made.files);
    const fromArchive = await readBundleFiles(join(dir, "bundle.tar.gz"));
    const fromDirectory = await readBundleFiles(join(dir, "unpacked"));
    assert.deepEqual(new Map([...fromDirectory].map(([p, b]) => [p, Buffer.from(b)])), new Map([...fromArchive].map(([p, b]) => [p, Buffer.from(b)])));
    assert.equal((await verifyBundle(fromDirectory, { keys: made.trusted, nowMs: T0 })).manifest.revision, 1);
  });

  test("readPolicyDirectory takes every regular file, recursively", async (t) => {
    const dir = tempDir(t);
    writeTree(dir, withFiles(new Map(), { "policy.yaml": POLICY_YAML, "teams/payments/p.yml": "p\n", "revocations.json": "{}" }));
    const files = await readPolicyDirectory(dir);
    assert.deepEqual([...files.keys()].sort(), ["policy.yaml", "revocations.json", "teams/payments/p.yml"]);
    const built = await buildBundle({ files, name: "n", revision: 1, nowMs: T0, validForSeconds: DAY, graceSeconds: 0, restrictedSeconds: 0, keys: [await makeKey()] });
    assert.deepEqual(Object.keys(built.manifest.files), ["policy.yaml", "revocations.json", "teams/payments/p.yml"]);
  });

  const refusals: [string, (dir: string) => void, RegExp][] = [
    ["a symbolic link", (dir) => symlinkSync("/etc/passwd", join(dir, "link.yaml")), /^bundle: policy directory entry "link.yaml" is a symbolic link; only regular files are allowed$/],
    ["a symbolic link to a directory", (dir) => symlinkSync("/etc", join(dir, "etc")), /"etc" is a symbolic link/],
    ["a FIFO", (dir) => execFileSync("mkfifo", [join(dir, "pipe")]), /^bundle: policy directory entry "pipe" is a FIFO; only regular files are allowed$/],
    ["a file name with a space", (dir) => writeFileSync(join(dir, "my policy.yaml"), ""), /^bundle: policy directory path "my policy.yaml" has a character outside A-Z a-z 0-9 . _ -$/],
    ["a file over the size limit", (dir) => writeFileSync(join(dir, "big.yaml"), Buffer.alloc(8 * 1024 * 1024 + 1)), /^bundle: "big.yaml" is larger than 8 MiB$/],
    ["names that differ only in case", (dir) => writeFileSync(join(dir, "Policy.yaml"), ""), /which differ only in case/],
  ];
  for (const [name, make, message] of refusals) {
    test(`readPolicyDirectory refuses ${name}`, async (t) => {
      const dir = tempDir(t);
      writeFileSync(join(dir, "policy.yaml"), POLICY_YAML);
      make(dir);
      await rejectsWith(readPolicyDirectory(dir), "malformed-archive", message);
    });
  }

  test("paths that are neither a bundle file nor a directory are refused", async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, "policy.yaml"), POLICY_YAML);
    await rejectsWith(readBundleFiles(join(dir, "missing.tar.gz")), "malformed-archive", /^bundle: cannot read .*missing\.tar\.gz \(ENOENT\)$/);
    await rejectsWith(readBundleFiles(join(dir, "policy.yaml")), "malformed-archive", /^bundle: not a gzip-compressed tar archive$/);
    await rejectsWith(readPolicyDirectory(join(dir, "policy.yaml")), "malformed-archive", /policy\.yaml is not a directory$/);
    await rejectsWith(readBundleFiles("/dev/null"), "malformed-archive", /^bundle: \/dev\/null is neither a .tar.gz file nor a directory$/);
  });
});
