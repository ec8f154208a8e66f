import "reflect-metadata";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as x509 from "@peculiar/x509";
import fc from "fast-check";
import {
  createCaCertificate,
  generateKeyPair,
  signCertificate,
  svidExtensions,
  type IssuingAuthority,
} from "../../src/identity/certificate-builder.ts";
import { DerError, readChildren, readElement } from "../../src/identity/der.ts";
import {
  initDevCa,
  issueSvid,
  parsePemCertificates,
  trustBundleSet,
  verifyX509Svid,
  X509SvidError,
  type TrustBundleSet,
} from "../../src/identity/index.ts";
import { DEFECTS, EXPECTED_CHECK, loadAuthority, writeDefectiveSvid } from "../support/svid-factory.ts";

const TD = "example.org";
const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;

function rejects(fn: () => unknown, check: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof X509SvidError, `expected X509SvidError, got ${String(error)}`);
    assert.equal(error.check, check, error.message);
    assert.match(error.message, /^x509svid: /);
    return true;
  });
}

function caExtensions(opts: { keyCertSign?: boolean; ca?: boolean; pathLength?: number } = {}): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(opts.ca ?? true, opts.pathLength, true),
    new x509.KeyUsagesExtension(
      opts.keyCertSign === false ? x509.KeyUsageFlags.digitalSignature : x509.KeyUsageFlags.keyCertSign,
      true,
    ),
  ];
}

describe("verifyX509Svid", () => {
  let dir: string;
  let root: IssuingAuthority;
  let bundles: TrustBundleSet;
  let now: Date;

  async function leafFrom(
    authority: IssuingAuthority,
    extensions: x509.Extension[] = svidExtensions({ uris: [`spiffe://${TD}/ns/a/sa/b`] }),
    window: [Date, Date] = [new Date(now.getTime() - HOUR), new Date(now.getTime() + HOUR)],
  ): Promise<X509Certificate> {
    const keys = await generateKeyPair();
    return signCertificate({
      authority,
      publicKey: keys.publicKey,
      subject: "O=SPIFFE",
      notBefore: window[0],
      notAfter: window[1],
      extensions,
    });
  }

  async function intermediateFrom(
    authority: IssuingAuthority,
    opts: { keyCertSign?: boolean; ca?: boolean; window?: [Date, Date]; name?: string } = {},
  ): Promise<IssuingAuthority> {
    const keys = await generateKeyPair();
    const certificate = await signCertificate({
      authority,
      publicKey: keys.publicKey,
      subject: `O=SPIFFE, CN=${opts.name ?? "intermediate"}`,
      notBefore: opts.window?.[0] ?? new Date(now.getTime() - DAY),
      notAfter: opts.window?.[1] ?? new Date(now.getTime() + DAY),
      extensions: caExtensions(opts),
    });
    return { certificate, privateKey: keys.privateKey };
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-x509svid-"));
    now = new Date();
    await initDevCa({ dir, trustDomain: TD, now });
    root = await loadAuthority(dir);
    bundles = trustBundleSet({ [TD]: [root.certificate] });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("accepts an SVID issued by the dev CA", async () => {
    const out = join(dir, "good");
    await issueSvid({ dir, spiffeId: `spiffe://${TD}/ns/prod/sa/api`, out, now });
    const chain = parsePemCertificates(readFileSync(`${out}.pem`, "utf8"));
    const verified = verifyX509Svid(chain, bundles, now);
    assert.equal(verified.id.uri, `spiffe://${TD}/ns/prod/sa/api`);
    assert.equal(verified.leaf, chain[0]);
    assert.equal(verified.serialNumber, chain[0]!.serialNumber);
    assert.equal(verified.notAfter.getTime(), Math.floor(now.getTime() / 1000) * 1000 + HOUR);
    // The leaf alone (without the CA the file carries) verifies too.
    assert.equal(verifyX509Svid(chain.slice(0, 1), bundles, now).id.path, "/ns/prod/sa/api");
  });

  for (const defect of DEFECTS) {
    it(`rejects the "${defect}" defect with check ${EXPECTED_CHECK[defect]}`, async () => {
      const { certPath } = await writeDefectiveSvid(dir, defect, join(dir, defect), now);
      rejects(() => verifyX509Svid(parsePemCertificates(readFileSync(certPath, "utf8")), bundles, now), EXPECTED_CHECK[defect]);
    });
  }

  it("rejects an empty chain", () => {
    rejects(() => verifyX509Svid([], bundles, now), "no-certificate");
  });

  it("rejects an SVID whose trust domain has no bundle", async () => {
    const leaf = await leafFrom(root, svidExtensions({ uris: ["spiffe://other.org/ns/a/sa/b"] }));
    rejects(() => verifyX509Svid([leaf], bundles, now), "unknown-trust-domain");
  });

  it("uses only the bundle of the leaf's own trust domain", async () => {
    const otherKeys = await generateKeyPair();
    const otherRoot = await createCaCertificate({
      keys: otherKeys,
      trustDomain: "other.org",
      notBefore: new Date(now.getTime() - DAY),
      notAfter: new Date(now.getTime() + DAY),
    });
    const leaf = await leafFrom(root);
    // The signing root is trusted, but only for other.org: example.org's bundle holds someone else's CA.
    const crossed = trustBundleSet({ [TD]: [otherRoot], "other.org": [root.certificate] });
    rejects(() => verifyX509Svid([leaf], crossed, now), "untrusted-chain");
  });

  it("accepts a chain through presented intermediates", async () => {
    const first = await intermediateFrom(root, { name: "first" });
    const second = await intermediateFrom(first, { name: "second" });
    const leaf = await leafFrom(second);
    assert.equal(verifyX509Svid([leaf, second.certificate, first.certificate], bundles, now).id.uri, `spiffe://${TD}/ns/a/sa/b`);
    // Order of the presented intermediates does not matter, and a presented copy of the root is harmless.
    assert.ok(verifyX509Svid([leaf, first.certificate, second.certificate, root.certificate], bundles, now));
    rejects(() => verifyX509Svid([leaf, second.certificate], bundles, now), "untrusted-chain");
    rejects(() => verifyX509Svid([leaf], bundles, now), "untrusted-chain");
  });

  it("refuses intermediates that are not CAs or may not sign certificates", async () => {
    for (const opts of [{ ca: false }, { keyCertSign: false }]) {
      const intermediate = await intermediateFrom(root, opts);
      const leaf = await leafFrom(intermediate);
      rejects(() => verifyX509Svid([leaf, intermediate.certificate], bundles, now), "untrusted-chain");
    }
  });

  it("enforces pathLenConstraint", async () => {
    const keys = await generateKeyPair();
    const pinned = await x509.X509CertificateGenerator.createSelfSigned({
      name: "O=SPIFFE, CN=pinned",
      keys,
      notBefore: new Date(now.getTime() - DAY),
      notAfter: new Date(now.getTime() + DAY),
      extensions: caExtensions({ pathLength: 0 }),
    });
    const pinnedRoot = { certificate: new X509Certificate(Buffer.from(pinned.rawData)), privateKey: keys.privateKey };
    const pinnedBundles = trustBundleSet({ [TD]: [pinnedRoot.certificate] });
    assert.ok(verifyX509Svid([await leafFrom(pinnedRoot)], pinnedBundles, now));
    const intermediate = await intermediateFrom(pinnedRoot);
    const deepLeaf = await leafFrom(intermediate);
    rejects(() => verifyX509Svid([deepLeaf, intermediate.certificate], pinnedBundles, now), "untrusted-chain");
  });

  it("reports an expired or not-yet-valid intermediate", async () => {
    const expired = await intermediateFrom(root, { window: [new Date(now.getTime() - 2 * DAY), new Date(now.getTime() - DAY)] });
    const underExpired = await leafFrom(expired);
    rejects(() => verifyX509Svid([underExpired, expired.certificate], bundles, now), "expired");
    const early = await intermediateFrom(root, { window: [new Date(now.getTime() + DAY), new Date(now.getTime() + 2 * DAY)] });
    const underEarly = await leafFrom(early);
    rejects(() => verifyX509Svid([underEarly, early.certificate], bundles, now), "not-yet-valid");
  });

  it("checks validity at the given time, not the wall clock", async () => {
    const leaf = await leafFrom(root);
    assert.ok(verifyX509Svid([leaf], bundles, now));
    rejects(() => verifyX509Svid([leaf], bundles, new Date(now.getTime() + 2 * HOUR)), "expired");
    rejects(() => verifyX509Svid([leaf], bundles, new Date(now.getTime() - 2 * HOUR)), "not-yet-valid");
    // The root's own window counts too: the leaf is valid 30 s ago, the (10 s backdated) root is not.
    rejects(() => verifyX509Svid([leaf], bundles, new Date(now.getTime() - 30_000)), "not-yet-valid");
  });

  it("rejects a tampered leaf", async () => {
    const leaf = await leafFrom(root);
    const der = Buffer.from(leaf.raw);
    der[der.length - 5]! ^= 0x01; // inside the signature value
    rejects(() => verifyX509Svid([new X509Certificate(der)], bundles, now), "untrusted-chain");
  });

  it("rejects an over-long chain", async () => {
    const leaf = await leafFrom(root);
    rejects(() => verifyX509Svid(Array.from({ length: 9 }, () => leaf), bundles, now), "chain-too-long");
  });

  it("rejects an unhandled critical extension", async () => {
    const leaf = await leafFrom(root, [
      ...svidExtensions({ uris: [`spiffe://${TD}/w`] }),
      new x509.Extension("1.2.3.4.5", true, new Uint8Array([0x05, 0x00])),
    ]);
    rejects(() => verifyX509Svid([leaf], bundles, now), "unhandled-critical-extension");
  });

  it("turns hostile extension bytes into malformed-certificate, never a crash", async () => {
    const sanWith = (bytes: number[]) => new x509.Extension("2.5.29.17", false, new Uint8Array(bytes));
    const usage = new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true);
    const basic = new x509.BasicConstraintsExtension(false, undefined, true);
    const sanOnly = (uri: string) => svidExtensions({ uris: [uri] }).slice(3);
    const hostile: Array<[string, x509.Extension[]]> = [
      ["truncated SAN", [basic, usage, sanWith([0x30, 0x10, 0x86, 0x03, 0x61])]],
      ["SAN with trailing bytes", [basic, usage, sanWith([0x30, 0x00, 0x00])]],
      ["SAN with an indefinite length", [basic, usage, sanWith([0x30, 0x80, 0x00, 0x00])]],
      ["SAN with a huge length", [basic, usage, sanWith([0x30, 0x84, 0xff, 0xff, 0xff, 0xff])]],
      ["SAN URI that is not IA5", [basic, usage, sanWith([0x30, 0x04, 0x86, 0x02, 0xc3, 0xa9])]],
      ["garbage basicConstraints", [new x509.Extension("2.5.29.19", true, new Uint8Array([0x01, 0x01])), usage]],
      ["empty keyUsage bit string", [basic, new x509.Extension("2.5.29.15", true, new Uint8Array([0x03, 0x00]))]],
      ["duplicate SAN extension", [basic, usage, ...sanOnly(`spiffe://${TD}/a`), ...sanOnly(`spiffe://${TD}/b`)]],
    ];
    for (const [name, extensions] of hostile) {
      const leaf = await leafFrom(root, extensions);
      assert.throws(() => verifyX509Svid([leaf], bundles, now), (error: unknown) => {
        assert.ok(error instanceof X509SvidError, `${name}: ${String(error)}`);
        assert.equal(error.check, "malformed-certificate", `${name}: ${error.message}`);
        return true;
      });
    }
  });

  it("rejects a chain whose presented intermediate is malformed", async () => {
    const intermediate = await intermediateFrom(root);
    const keys = await generateKeyPair();
    const broken = await signCertificate({
      authority: root,
      publicKey: keys.publicKey,
      subject: "O=SPIFFE, CN=broken",
      notBefore: new Date(now.getTime() - DAY),
      notAfter: new Date(now.getTime() + DAY),
      extensions: [new x509.Extension("2.5.29.19", true, new Uint8Array([0x30, 0x03, 0x01, 0x01]))],
    });
    const leaf = await leafFrom(intermediate);
    rejects(() => verifyX509Svid([leaf, intermediate.certificate, broken], bundles, now), "malformed-certificate");
  });

  it("terminates on cross-signed intermediates that form a loop", async () => {
    const keysA = await generateKeyPair();
    const keysB = await generateKeyPair();
    const window = { notBefore: new Date(now.getTime() - DAY), notAfter: new Date(now.getTime() + DAY) };
    const selfB = await createCaCertificate({ keys: keysB, trustDomain: TD, subject: "CN=B", ...window });
    const a = await signCertificate({
      authority: { certificate: selfB, privateKey: keysB.privateKey },
      publicKey: keysA.publicKey,
      subject: "CN=A",
      ...window,
      extensions: caExtensions(),
    });
    const b = await signCertificate({
      authority: { certificate: a, privateKey: keysA.privateKey },
      publicKey: keysB.publicKey,
      subject: "CN=B",
      ...window,
      extensions: caExtensions(),
    });
    const leaf = await leafFrom({ certificate: a, privateKey: keysA.privateKey });
    assert.ok(a.checkIssued(b) && a.verify(b.publicKey) && b.checkIssued(a) && b.verify(a.publicKey));
    const started = performance.now();
    rejects(() => verifyX509Svid([leaf, a, b, a, b, a, b, selfB], bundles, now), "untrusted-chain");
    assert.ok(performance.now() - started < 1000);
  });

  it("never throws anything but X509SvidError on mutated certificates", async () => {
    const good = Buffer.from((await leafFrom(root)).raw);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: good.length - 1 }), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        (edits) => {
          const der = Buffer.from(good);
          for (const [offset, xor] of edits) der[offset]! ^= xor;
          let cert: X509Certificate;
          try {
            cert = new X509Certificate(der);
          } catch {
            return; // Node refused it; nothing reaches the verifier.
          }
          try {
            verifyX509Svid([cert], bundles, now);
          } catch (error) {
            assert.ok(error instanceof X509SvidError, String(error));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("der reader", () => {
  it("only ever throws DerError on random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        for (const read of [() => readElement(bytes), () => readChildren(bytes)]) {
          try {
            read();
          } catch (error) {
            assert.ok(error instanceof DerError, String(error));
          }
        }
      }),
      { numRuns: 1000 },
    );
  });
});
