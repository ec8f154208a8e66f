import "reflect-metadata";
import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import { chmodSync, closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as x509 from "@peculiar/x509";
import {
  DevCaError,
  initDevCa,
  issueSvid,
  parseDuration,
  parsePemCertificates,
  readPrivateKeyFile,
} from "../../src/identity/index.ts";

const TD = "edge.example";

function extension<T extends x509.Extension>(cert: x509.X509Certificate, type: new (...args: never[]) => T): T {
  const found = cert.extensions.find((e) => e instanceof type);
  assert.ok(found, `missing ${type.name}`);
  return found as T;
}

describe("dev CA", () => {
  let dir: string;
  let caDir: string;
  const now = new Date(Date.UTC(2030, 0, 1, 12, 0, 0));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-devca-"));
    caDir = join(dir, "ca");
    await initDevCa({ dir: caDir, trustDomain: TD, now, validityDays: 30 });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("writes a self-signed P-256 CA with a 0600 key", () => {
    assert.equal(statSync(join(caDir, "ca.key")).mode & 0o777, 0o600);
    const [ca] = parsePemCertificates(readFileSync(join(caDir, "ca.pem"), "utf8"));
    assert.ok(ca);
    assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
    assert.ok(ca.checkIssued(ca) && ca.verify(ca.publicKey));
    assert.ok(ca.checkPrivateKey(createPrivateKey(readFileSync(join(caDir, "ca.key")))));
    const parsed = new x509.X509Certificate(new Uint8Array(ca.raw));
    const basic = extension(parsed, x509.BasicConstraintsExtension);
    assert.equal(basic.ca, true);
    assert.equal(basic.critical, true);
    const usage = extension(parsed, x509.KeyUsagesExtension);
    assert.equal(usage.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.equal(usage.critical, true);
    assert.equal(ca.subjectAltName, `URI:spiffe://${TD}`);
    assert.equal(ca.validToDate.getTime(), now.getTime() + 30 * 86400_000);
  });

  it("refuses to overwrite an existing CA unless forced", async () => {
    const before = readFileSync(join(caDir, "ca.pem"), "utf8");
    await assert.rejects(initDevCa({ dir: caDir, trustDomain: TD, now }), { name: "DevCaError", check: "ca-exists" });
    assert.equal(readFileSync(join(caDir, "ca.pem"), "utf8"), before);
    const forcedDir = join(dir, "forced");
    await initDevCa({ dir: forcedDir, trustDomain: TD, now });
    const first = readFileSync(join(forcedDir, "ca.pem"), "utf8");
    chmodSync(join(forcedDir, "ca.key"), 0o640);
    await initDevCa({ dir: forcedDir, trustDomain: TD, now, force: true });
    assert.notEqual(readFileSync(join(forcedDir, "ca.pem"), "utf8"), first);
    assert.equal(statSync(join(forcedDir, "ca.key")).mode & 0o777, 0o600);
  });

  it("refuses an invalid trust domain or validity", async () => {
    await assert.rejects(initDevCa({ dir: join(dir, "bad"), trustDomain: "Bad.Example" }), { check: "trust-domain" });
    await assert.rejects(initDevCa({ dir: join(dir, "bad"), trustDomain: TD, validityDays: 0 }), { check: "validity" });
  });

  it("issues an X.509-SVID of the SPIFFE shape", async () => {
    const out = join(dir, "web");
    const written = await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/ns/prod/sa/web`, out, now });
    assert.deepEqual(written, { certPath: `${out}.pem`, keyPath: `${out}.key` });
    assert.equal(statSync(written.keyPath).mode & 0o777, 0o600);
    const chain = parsePemCertificates(readFileSync(written.certPath, "utf8"));
    assert.equal(chain.length, 2);
    const [leaf, ca] = chain as [NonNullable<(typeof chain)[0]>, NonNullable<(typeof chain)[0]>];
    assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
    assert.ok(leaf.checkPrivateKey(createPrivateKey(readFileSync(written.keyPath))));
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
    assert.equal(leaf.subjectAltName, `URI:spiffe://${TD}/ns/prod/sa/web`);
    assert.equal(leaf.validToDate.getTime() - now.getTime(), 3600_000);
    assert.ok(leaf.validFromDate.getTime() <= now.getTime());
    assert.match(leaf.serialNumber, /^[0-7][0-9A-F]{31}$/);

    const parsed = new x509.X509Certificate(new Uint8Array(leaf.raw));
    const basic = extension(parsed, x509.BasicConstraintsExtension);
    assert.equal(basic.ca, false);
    assert.equal(basic.critical, true);
    const usage = extension(parsed, x509.KeyUsagesExtension);
    assert.equal(usage.usages, x509.KeyUsageFlags.digitalSignature);
    assert.equal(usage.critical, true);
    assert.deepEqual([...extension(parsed, x509.ExtendedKeyUsageExtension).usages], ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
    const names = extension(parsed, x509.SubjectAlternativeNameExtension).names.toJSON();
    assert.deepEqual(names, [{ type: "url", value: `spiffe://${TD}/ns/prod/sa/web` }]);
  });

  it("gives every SVID a fresh serial and key", async () => {
    const a = await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/a`, out: join(dir, "s1"), now });
    const b = await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/a`, out: join(dir, "s2"), now });
    const [leafA] = parsePemCertificates(readFileSync(a.certPath, "utf8"));
    const [leafB] = parsePemCertificates(readFileSync(b.certPath, "utf8"));
    assert.notEqual(leafA!.serialNumber, leafB!.serialNumber);
    assert.notEqual(readFileSync(a.keyPath, "utf8"), readFileSync(b.keyPath, "utf8"));
  });

  it("adds the DNS and IP SANs asked for, after the single URI SAN, and honours the TTL", async () => {
    const out = join(dir, "api");
    await issueSvid({
      dir: caDir,
      spiffeId: `spiffe://${TD}/api`,
      out,
      now,
      ttlSeconds: 600,
      dns: ["api.local", "localhost"],
      ip: ["127.0.0.1", "::1"],
    });
    const [leaf] = parsePemCertificates(readFileSync(`${out}.pem`, "utf8"));
    assert.equal(
      leaf!.subjectAltName,
      `URI:spiffe://${TD}/api, DNS:api.local, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1`,
    );
    assert.equal(leaf!.checkHost("api.local"), "api.local");
    assert.equal(leaf!.checkIP("127.0.0.1"), "127.0.0.1");
    assert.equal(leaf!.validToDate.getTime() - now.getTime(), 600_000);
  });

  it("refuses SPIFFE IDs outside the CA's trust domain, invalid IDs, names and TTLs", async () => {
    const base = { dir: caDir, out: join(dir, "x"), now };
    await assert.rejects(issueSvid({ ...base, spiffeId: "spiffe://other.example/ns/a" }), { check: "trust-domain-mismatch" });
    await assert.rejects(issueSvid({ ...base, spiffeId: "spiffe://Edge.example/a" }), { check: "spiffe-id" });
    await assert.rejects(issueSvid({ ...base, spiffeId: `spiffe://${TD}/a`, dns: ["bad name"] }), { check: "dns" });
    await assert.rejects(issueSvid({ ...base, spiffeId: `spiffe://${TD}/a`, ip: ["999.1.1.1"] }), { check: "ip" });
    await assert.rejects(issueSvid({ ...base, spiffeId: `spiffe://${TD}/a`, ttlSeconds: 0 }), { check: "ttl" });
    await assert.rejects(issueSvid({ ...base, spiffeId: `spiffe://${TD}/a`, ttlSeconds: 31 * 86400 }), { check: "ttl" });
    await assert.rejects(issueSvid({ ...base, dir: join(dir, "nowhere"), spiffeId: `spiffe://${TD}/a` }), { check: "ca-missing" });
  });

  it("replaces an SVID's files by rename, so a reader sees the old pair or the new one, never a half-written file", async () => {
    const out = join(dir, "rotating");
    const first = await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/rotating`, out, now });
    const before = { cert: readFileSync(first.certPath, "utf8"), certIno: statSync(first.certPath).ino, keyIno: statSync(first.keyPath).ino };
    // A reader that opened the old certificate keeps reading it whole while the new one is written.
    const reader = openSync(first.certPath, "r");
    try {
      await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/rotating`, out, now });
      const buffer = Buffer.alloc(before.cert.length + 16);
      assert.equal(buffer.subarray(0, readSync(reader, buffer, 0, buffer.length, 0)).toString("utf8"), before.cert);
    } finally {
      closeSync(reader);
    }
    assert.notEqual(statSync(first.certPath).ino, before.certIno, "the certificate is a new file, not rewritten in place");
    assert.notEqual(statSync(first.keyPath).ino, before.keyIno, "the key is a new file, not rewritten in place");
    assert.notEqual(readFileSync(first.certPath, "utf8"), before.cert);
    assert.equal(statSync(first.keyPath).mode & 0o777, 0o600);
    assert.equal(statSync(first.certPath).mode & 0o777, 0o644);
    assert.deepEqual(readdirSync(dir).filter((name) => name.endsWith(".tmp")), [], "no temporary file is left behind");
  });

  it("replaces a forced CA by rename too, with a 0600 key whatever the umask", async () => {
    const forced = join(dir, "forced-rename");
    await initDevCa({ dir: forced, trustDomain: TD, now });
    const inodes = [statSync(join(forced, "ca.pem")).ino, statSync(join(forced, "ca.key")).ino];
    const umask = process.umask(0);
    try {
      await initDevCa({ dir: forced, trustDomain: TD, now, force: true });
    } finally {
      process.umask(umask);
    }
    assert.notEqual(statSync(join(forced, "ca.pem")).ino, inodes[0]);
    assert.notEqual(statSync(join(forced, "ca.key")).ino, inodes[1]);
    assert.equal(statSync(join(forced, "ca.key")).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(forced).sort(), ["ca.key", "ca.pem"]);
  });

  it("refuses to use a CA key that others can read", async () => {
    const loose = join(dir, "loose");
    await initDevCa({ dir: loose, trustDomain: TD, now });
    chmodSync(join(loose, "ca.key"), 0o644);
    await assert.rejects(issueSvid({ dir: loose, spiffeId: `spiffe://${TD}/a`, out: join(dir, "y"), now }), {
      check: "key-file-permissions",
    });
  });
});

describe("readPrivateKeyFile", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-keyfile-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("reads a 0600 file", async () => {
    const path = join(dir, "ok.key");
    writeFileSync(path, "secret-material", { mode: 0o600 });
    assert.equal(await readPrivateKeyFile(path), "secret-material");
  });

  for (const mode of [0o644, 0o640, 0o604, 0o660, 0o602]) {
    it(`refuses mode ${mode.toString(8)} without revealing the content`, async () => {
      const path = join(dir, `k${mode.toString(8)}.key`);
      writeFileSync(path, "secret-material");
      chmodSync(path, mode);
      await assert.rejects(readPrivateKeyFile(path), (error: unknown) => {
        assert.ok(error instanceof DevCaError);
        assert.equal(error.check, "key-file-permissions");
        assert.ok(error.message.includes(path));
        assert.ok(!error.message.includes("secret-material"));
        return true;
      });
    });
  }

  it("refuses a missing file, a directory and an oversized file", async () => {
    await assert.rejects(readPrivateKeyFile(join(dir, "missing.key")), { check: "key-file-unreadable" });
    await assert.rejects(readPrivateKeyFile(dir), (error: unknown) => {
      assert.ok(error instanceof DevCaError);
      assert.ok(["key-file-type", "key-file-permissions"].includes(error.check));
      return true;
    });
    const big = join(dir, "big.key");
    writeFileSync(big, Buffer.alloc(70 * 1024), { mode: 0o600 });
    await assert.rejects(readPrivateKeyFile(big), { check: "key-file-size" });
  });
});

describe("parseDuration", () => {
  it("converts seconds, minutes, hours and days", () => {
    assert.equal(parseDuration("90s"), 90);
    assert.equal(parseDuration("15m"), 900);
    assert.equal(parseDuration("1h"), 3600);
    assert.equal(parseDuration("24h"), 86400);
    assert.equal(parseDuration("7d"), 604800);
  });

  for (const text of ["", "1", "h", "0s", "-1h", "1.5h", "1H", " 1h", "1h ", "1h30m", "01h", "1w", "99999999999s", "1e3s"]) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseDuration(text), { name: "DevCaError", check: "duration" });
    });
  }
});
