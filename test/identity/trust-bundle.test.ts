import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { initDevCa, loadTrustBundles, parsePemCertificates, TrustBundleError, trustBundleSet } from "../../src/identity/index.ts";

describe("trust bundles", () => {
  let dir: string;
  let caPem: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-bundle-"));
    await initDevCa({ dir: join(dir, "a"), trustDomain: "a.example" });
    await initDevCa({ dir: join(dir, "b"), trustDomain: "b.example" });
    caPem = readFileSync(join(dir, "a", "ca.pem"), "utf8");
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function rejects(fn: () => unknown, check: string): void {
    assert.throws(fn, (error: unknown) => {
      assert.ok(error instanceof TrustBundleError, String(error));
      assert.equal(error.check, check, error.message);
      return true;
    });
  }

  it("parses every certificate of a PEM text, ignoring text between blocks", () => {
    const other = readFileSync(join(dir, "b", "ca.pem"), "utf8");
    const certs = parsePemCertificates(`# a.example root\n${caPem}\nsubject: b\n${other}`);
    assert.equal(certs.length, 2);
    assert.match(certs[0]!.subjectAltName ?? "", /spiffe:\/\/a\.example/);
  });

  it("rejects empty, garbled, truncated and non-certificate PEM", () => {
    rejects(() => parsePemCertificates(""), "no-certificate");
    rejects(() => parsePemCertificates("hello"), "no-certificate");
    rejects(() => parsePemCertificates("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"), "garbled-pem");
    rejects(() => parsePemCertificates("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "garbled-pem");
    rejects(() => parsePemCertificates(caPem.slice(0, caPem.length - 30)), "garbled-pem");
    rejects(() => parsePemCertificates(`${caPem}-----BEGIN CERTIFICATE-----\nAAAA`), "garbled-pem");
    rejects(() => parsePemCertificates(caPem.replace("END CERTIFICATE", "END X509 CRL")), "garbled-pem");
    const keyPem = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n";
    assert.throws(() => parsePemCertificates(keyPem), (error: unknown) => {
      assert.ok(error instanceof TrustBundleError);
      assert.equal(error.check, "not-a-certificate");
      assert.doesNotMatch(error.message, /c2VjcmV0/);
      return true;
    });
  });

  it("never throws anything but TrustBundleError on random text", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string().map((s) => `-----BEGIN CERTIFICATE-----\n${s}\n-----END CERTIFICATE-----`)), (text) => {
        try {
          parsePemCertificates(text);
        } catch (error) {
          assert.ok(error instanceof TrustBundleError, String(error));
        }
      }),
      { numRuns: 300 },
    );
  });

  it("builds an immutable set keyed by trust domain", () => {
    const [ca] = parsePemCertificates(caPem);
    const entry = [ca!];
    const set = trustBundleSet({ "z.example": entry, "a.example": entry });
    entry.length = 0;
    assert.equal(set.get("a.example")?.length, 1);
    assert.equal(set.get("nope"), undefined);
    assert.deepEqual(set.trustDomains(), ["a.example", "z.example"]);
    rejects(() => trustBundleSet({ "A.example": [ca!] }), "invalid-trust-domain");
    rejects(() => trustBundleSet({ "a.example": [] }), "no-certificate");
  });

  it("SPIFFE-ID §2.3: refuses a bundle keyed by a trust domain over 255 bytes", () => {
    const [ca] = parsePemCertificates(caPem);
    rejects(() => trustBundleSet({ ["a".repeat(256)]: [ca!] }), "invalid-trust-domain");
  });

  it("loads one file per trust domain", async () => {
    const set = await loadTrustBundles({ "a.example": join(dir, "a", "ca.pem"), "b.example": join(dir, "b", "ca.pem") });
    assert.deepEqual(set.trustDomains(), ["a.example", "b.example"]);
  });

  it("refuses missing, oversized and garbled files, naming the file", async () => {
    await assert.rejects(loadTrustBundles({ "a.example": join(dir, "missing.pem") }), {
      name: "TrustBundleError",
      check: "unreadable",
    });
    const big = join(dir, "big.pem");
    writeFileSync(big, Buffer.alloc(1024 * 1024 + 1, 0x41));
    await assert.rejects(loadTrustBundles({ "a.example": big }), { check: "too-large" });
    const garbled = join(dir, "garbled.pem");
    writeFileSync(garbled, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    await assert.rejects(loadTrustBundles({ "a.example": garbled }), (error: unknown) => {
      assert.ok(error instanceof TrustBundleError);
      assert.equal(error.check, "garbled-pem");
      assert.ok(error.message.startsWith(`trustbundle: ${garbled}: `), error.message);
      return true;
    });
  });
});
