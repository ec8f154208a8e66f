import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { calculateJwkThumbprint, exportJWK } from "jose";
import {
  BundleError,
  generateSigningKey,
  parsePrivateKey,
  parsePublicKey,
  readPublicKey,
  readSigningKey,
  trustedKeys,
  writeSigningKey,
  type BundleCheck,
} from "../../src/bundle/index.ts";

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-bundle-keys-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function fails(check: BundleCheck, message: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof BundleError, String(error));
    assert.equal(error.check, check);
    assert.match(error.message, message);
    return true;
  };
}

const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const EC_PUBLIC = ec.publicKey.export({ type: "spki", format: "pem" }) as string;
const EC_PRIVATE = ec.privateKey.export({ type: "pkcs8", format: "pem" }) as string;

describe("signing keys", () => {
  test("a generated key's kid is its RFC 7638 JWK thumbprint, and both PEMs parse back to it", async () => {
    const generated = await generateSigningKey();
    const pub = parsePublicKey(generated.publicPem);
    assert.equal(generated.kid, await calculateJwkThumbprint(await exportJWK(pub.key), "sha256"));
    assert.match(generated.kid, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(pub.kid, generated.kid);
    assert.equal(parsePrivateKey(generated.privatePem).kid, generated.kid);
    assert.match(generated.privatePem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(generated.publicPem, /^-----BEGIN PUBLIC KEY-----\n/);
    assert.notEqual((await generateSigningKey()).kid, generated.kid);
  });

  test("parsePublicKey refuses anything but an Ed25519 SPKI public key", async () => {
    const generated = await generateSigningKey();
    assert.throws(() => parsePublicKey(generated.privatePem), fails("malformed-key", /^bundle: not a PEM public key \(-----BEGIN PUBLIC KEY-----\)$/));
    assert.throws(() => parsePublicKey(EC_PUBLIC), fails("malformed-key", /^bundle: the public key is not an Ed25519 key \(ec\); bundles are signed with Ed25519$/));
    assert.throws(() => parsePublicKey(""), fails("malformed-key", /not a PEM public key/));
    assert.throws(() => parsePublicKey("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), fails("malformed-key", /^bundle: the PEM public key cannot be decoded$/));
    assert.throws(() => parsePublicKey(`${generated.publicPem}${generated.publicPem}`), fails("malformed-key", /not a PEM public key/));
  });

  test("parsePrivateKey refuses anything but an Ed25519 PKCS#8 private key", async () => {
    const generated = await generateSigningKey();
    assert.throws(() => parsePrivateKey(generated.publicPem), fails("malformed-key", /^bundle: not a PKCS#8 PEM private key/));
    assert.throws(() => parsePrivateKey(EC_PRIVATE), fails("malformed-key", /^bundle: the private key is not an Ed25519 key \(ec\); bundles are signed with Ed25519$/));
    assert.throws(() => parsePrivateKey("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), fails("malformed-key", /cannot be decoded/));
  });

  test("trustedKeys maps kids to keys, counting a key given twice once", async () => {
    const a = await generateSigningKey();
    const b = await generateSigningKey();
    const keys = trustedKeys([a.publicPem, b.publicPem, a.publicPem]);
    assert.deepEqual([...keys.keys()].sort(), [a.kid, b.kid].sort());
    assert.equal(keys.get(a.kid)!.kid, a.kid);
    assert.throws(() => trustedKeys([a.publicPem, a.privatePem]), fails("malformed-key", /not a PEM public key/));
  });
});

describe("key files", () => {
  test("writeSigningKey writes PREFIX.key 0600 and PREFIX.pub 0644 whatever the umask, and they read back", async (t) => {
    const dir = tempDir(t);
    const previous = process.umask(0o000);
    let written;
    try {
      written = await writeSigningKey(join(dir, "signer"));
    } finally {
      process.umask(previous);
    }
    assert.deepEqual(written, { kid: written.kid, keyPath: join(dir, "signer.key"), pubPath: join(dir, "signer.pub") });
    assert.equal(statSync(written.keyPath).mode & 0o777, 0o600);
    assert.equal(statSync(written.pubPath).mode & 0o777, 0o644);
    assert.equal((await readSigningKey(written.keyPath)).kid, written.kid);
    assert.equal((await readPublicKey(written.pubPath)).kid, written.kid);
    assert.equal(parsePublicKey(readFileSync(written.pubPath, "utf8")).kid, written.kid);
  });

  test("writeSigningKey never overwrites a key or a public key", async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, "old.key"), "keep me", { mode: 0o600 });
    await assert.rejects(writeSigningKey(join(dir, "old")), fails("key-file", /^bundle: .*old\.key already exists; keys are never overwritten$/));
    assert.equal(readFileSync(join(dir, "old.key"), "utf8"), "keep me");

    writeFileSync(join(dir, "pub.pub"), "keep me too");
    await assert.rejects(writeSigningKey(join(dir, "pub")), fails("key-file", /pub\.pub already exists/));
    assert.throws(() => statSync(join(dir, "pub.key")), /ENOENT/, "no half-written pair");

    await assert.rejects(writeSigningKey(join(dir, "missing-dir", "k")), fails("key-file", /^bundle: cannot create .*k\.key \(ENOENT\)$/));
  });

  test("readSigningKey refuses a private key that group or others can read", async (t) => {
    const dir = tempDir(t);
    const { keyPath } = await writeSigningKey(join(dir, "k"));
    chmodSync(keyPath, 0o644);
    await assert.rejects(readSigningKey(keyPath), fails("key-file", /^bundle: private key file .*k\.key is accessible by group or others \(mode 0644\); run chmod 600 on it$/));
    chmodSync(keyPath, 0o640);
    await assert.rejects(readSigningKey(keyPath), fails("key-file", /mode 0640/));
  });

  test("readSigningKey and readPublicKey name the file that is missing, wrong or not a key", async (t) => {
    const dir = tempDir(t);
    const { pubPath } = await writeSigningKey(join(dir, "k"));
    await assert.rejects(readSigningKey(join(dir, "nope.key")), fails("key-file", /cannot open private key file .*nope\.key \(ENOENT\)/));
    writeFileSync(join(dir, "pub-as-key"), readFileSync(pubPath), { mode: 0o600 });
    await assert.rejects(readSigningKey(join(dir, "pub-as-key")), fails("malformed-key", /^bundle: .*pub-as-key: not a PKCS#8 PEM private key/));
    writeFileSync(join(dir, "ec.key"), EC_PRIVATE, { mode: 0o600 });
    await assert.rejects(readSigningKey(join(dir, "ec.key")), fails("malformed-key", /ec\.key: the private key is not an Ed25519 key \(ec\)/));

    await assert.rejects(readPublicKey(join(dir, "nope.pub")), fails("key-file", /^bundle: cannot read public key file .*nope\.pub \(ENOENT\)$/));
    mkdirSync(join(dir, "d.pub"));
    await assert.rejects(readPublicKey(join(dir, "d.pub")), fails("key-file", /d\.pub is not a regular file/));
    writeFileSync(join(dir, "big.pub"), Buffer.alloc(65 * 1024, 0x41));
    await assert.rejects(readPublicKey(join(dir, "big.pub")), fails("key-file", /big\.pub is too large/));
    writeFileSync(join(dir, "ec.pub"), EC_PUBLIC);
    await assert.rejects(readPublicKey(join(dir, "ec.pub")), fails("malformed-key", /ec\.pub: the public key is not an Ed25519 key \(ec\)/));
  });
});
