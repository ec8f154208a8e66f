import "reflect-metadata";
import assert from "node:assert/strict";
import { webcrypto, X509Certificate } from "node:crypto";
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
import {
  DEFECTS,
  EXPECTED_CHECK,
  loadAuthority,
  nameConstraintsExtension,
  resign,
  signingExtensions,
  signWith,
  WEAK_CRYPTO_DEFECTS,
  writeDefectiveSvid,
  type ConstraintName,
} from "../support/svid-factory.ts";

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

  for (const defect of WEAK_CRYPTO_DEFECTS) {
    it(`Go crypto/x509: refuses the "${defect}" chain with check ${EXPECTED_CHECK[defect]}`, async () => {
      const { certPath } = await writeDefectiveSvid(dir, defect, join(dir, defect), now);
      const chain = parsePemCertificates(readFileSync(certPath, "utf8"));
      rejects(() => verifyX509Svid(chain, bundles, now), EXPECTED_CHECK[defect]);
    });
  }

  it("Go crypto/x509: names the insecure algorithm and the weak key it refuses", async () => {
    const md5 = parsePemCertificates(readFileSync((await writeDefectiveSvid(dir, "md5-leaf-signature", join(dir, "md5"), now)).certPath, "utf8"));
    assert.throws(() => verifyX509Svid(md5, bundles, now), /leaf certificate is signed with MD5-RSA, an insecure algorithm/);
    const sha1 = parsePemCertificates(readFileSync((await writeDefectiveSvid(dir, "sha1-intermediate-signature", join(dir, "sha1i"), now)).certPath, "utf8"));
    assert.throws(() => verifyX509Svid(sha1, bundles, now), /intermediate certificate is signed with ECDSA-SHA1, an insecure algorithm/);
    const rsa512 = parsePemCertificates(readFileSync((await writeDefectiveSvid(dir, "rsa-512-leaf", join(dir, "rsa512"), now)).certPath, "utf8"));
    assert.throws(() => verifyX509Svid(rsa512, bundles, now), /leaf certificate has a 512-bit RSA key; at least 2048 bits are required/);
    const rsa1024 = parsePemCertificates(readFileSync((await writeDefectiveSvid(dir, "rsa-1024-intermediate", join(dir, "rsa1024i"), now)).certPath, "utf8"));
    assert.throws(() => verifyX509Svid(rsa1024, bundles, now), /intermediate certificate has a 1024-bit RSA key/);
  });

  it("Go crypto/x509: accepts RSA-2048 keys and SHA-256 RSA signatures on the path", async () => {
    const keys = await webcrypto.subtle.generateKey(
      { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      true,
      ["sign", "verify"],
    );
    const window = { notBefore: new Date(now.getTime() - DAY), notAfter: new Date(now.getTime() + DAY) };
    const intermediate = await signWith({ authority: root, publicKey: keys.publicKey, subject: "CN=rsa", ...window, extensions: signingExtensions(TD) });
    const leaf = await signWith({
      authority: { certificate: intermediate, privateKey: keys.privateKey },
      publicKey: keys.publicKey,
      subject: "O=SPIFFE",
      ...window,
      extensions: svidExtensions({ uris: [`spiffe://${TD}/rsa`] }),
    });
    assert.equal(verifyX509Svid([leaf, intermediate], bundles, now).id.path, "/rsa");
  });

  it("Go crypto/x509: a SHA-1 self-signature on a trusted root is never relied on, so it is not refused", async () => {
    const keys = await generateKeyPair();
    const window = { notBefore: new Date(now.getTime() - DAY), notAfter: new Date(now.getTime() + DAY) };
    const sha1Root = resign(await createCaCertificate({ keys, trustDomain: TD, ...window }), "ecdsa-with-SHA1", keys.privateKey);
    const leaf = await leafFrom({ certificate: sha1Root, privateKey: keys.privateKey });
    assert.ok(verifyX509Svid([leaf], trustBundleSet({ [TD]: [sha1Root] }), now));
  });

  it("X509-SVID §5.2: refuses an X.509-SVID whose SPIFFE ID has no path", async () => {
    const leaf = await leafFrom(root, svidExtensions({ uris: [`spiffe://${TD}`] }));
    assert.throws(() => verifyX509Svid([leaf], bundles, now), (error: unknown) => {
      assert.ok(error instanceof X509SvidError);
      assert.equal(error.check, "leaf-id-no-path");
      assert.match(error.message, /SPIFFE ID "spiffe:\/\/example\.org" has no path/);
      return true;
    });
  });

  describe("name constraints (RFC 5280 §4.2.1.10, as Go's crypto/x509 applies them)", () => {
    const window = (): { notBefore: Date; notAfter: Date } => ({ notBefore: new Date(now.getTime() - DAY), notAfter: new Date(now.getTime() + DAY) });

    async function constrainedIntermediate(
      subtrees: { permitted?: ConstraintName[]; excluded?: ConstraintName[] },
      opts: { critical?: boolean; authority?: IssuingAuthority; trustDomain?: string } = {},
    ): Promise<IssuingAuthority> {
      const keys = await generateKeyPair();
      const certificate = await signCertificate({
        authority: opts.authority ?? root,
        publicKey: keys.publicKey,
        subject: "O=SPIFFE, CN=constrained",
        ...window(),
        extensions: signingExtensions(opts.trustDomain ?? TD, [nameConstraintsExtension(subtrees, opts.critical ?? true)]),
      });
      return { certificate, privateKey: keys.privateKey };
    }

    const sans = (names: x509.JsonGeneralName[], uri = `spiffe://${TD}/ns/a/sa/b`) => [
      ...svidExtensions({ uris: [] }),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: uri }, ...names], false),
    ];

    async function outcome(
      subtrees: { permitted?: ConstraintName[]; excluded?: ConstraintName[] },
      names: x509.JsonGeneralName[] = [],
      critical = true,
    ): Promise<string> {
      const intermediate = await constrainedIntermediate(subtrees, { critical });
      const leaf = await leafFrom(intermediate, sans(names));
      try {
        verifyX509Svid([leaf, intermediate.certificate], bundles, now);
        return "ok";
      } catch (error) {
        if (!(error instanceof X509SvidError)) throw error;
        return `${error.check}: ${error.message}`;
      }
    }

    it("Go crypto/x509: a URI constraint applies to the host, so a SPIFFE ID in the permitted trust domain passes, critical or not", async () => {
      assert.equal(await outcome({ permitted: [{ uri: TD }] }), "ok");
      assert.equal(await outcome({ permitted: [{ uri: TD }] }, [], false), "ok");
      assert.equal(await outcome({ permitted: [{ uri: "other.example" }, { uri: TD }] }), "ok");
      assert.equal(await outcome({ excluded: [{ uri: "other.example" }] }), "ok");
    });

    it("Go crypto/x509: refuses a SPIFFE ID outside the permitted URI subtrees, critical or not", async () => {
      for (const critical of [true, false]) {
        assert.equal(
          await outcome({ permitted: [{ uri: "other.example" }] }, [], critical),
          `name-constraints: x509svid: intermediate certificate is not authorized to sign for this name: URI "spiffe://${TD}/ns/a/sa/b" is not permitted by any constraint`,
        );
      }
    });

    it("Go crypto/x509: refuses a SPIFFE ID in an excluded URI subtree", async () => {
      assert.match(await outcome({ excluded: [{ uri: TD }] }), /^name-constraints: .*URI "spiffe:\/\/example\.org\/ns\/a\/sa\/b" is excluded by constraint "example\.org"$/);
      // Excluded wins over permitted.
      assert.match(await outcome({ permitted: [{ uri: TD }], excluded: [{ uri: TD }] }), /is excluded by constraint/);
    });

    it("Go crypto/x509: a leading dot permits subdomains only; without it the domain and its subdomains", async () => {
      assert.match(await outcome({ permitted: [{ uri: `.${TD}` }] }), /URI .* is not permitted by any constraint/);
      assert.equal(await outcome({ permitted: [{ uri: ".org" }] }), "ok");
      assert.equal(await outcome({ permitted: [{ uri: "org" }] }), "ok");
      assert.match(await outcome({ permitted: [{ uri: "ample.org" }] }), /is not permitted/, "labels match whole, not as suffixes");
      assert.equal(await outcome({ permitted: [{ dns: ".example.org" }] }, [{ type: "dns", value: "api.example.org" }]), "ok");
      assert.match(await outcome({ permitted: [{ dns: ".example.org" }] }, [{ type: "dns", value: "example.org" }]), /DNS name "example\.org" is not permitted/);
      assert.equal(await outcome({ permitted: [{ dns: "example.org" }] }, [{ type: "dns", value: "example.org" }, { type: "dns", value: "a.b.EXAMPLE.org" }]), "ok");
    });

    it("Go crypto/x509: DNS constraints, including a wildcard SAN that covers an excluded name", async () => {
      assert.match(await outcome({ excluded: [{ dns: "internal" }] }, [{ type: "dns", value: "db.internal" }]), /DNS name "db\.internal" is excluded by constraint "internal"/);
      assert.match(await outcome({ excluded: [{ dns: "api.example.org" }] }, [{ type: "dns", value: "*.example.org" }]), /DNS name "\*\.example\.org" is excluded/);
      assert.equal(await outcome({ excluded: [{ dns: "a.api.example.org" }] }, [{ type: "dns", value: "*.example.org" }]), "ok");
      assert.match(await outcome({ permitted: [{ dns: "example.org" }] }, [{ type: "dns", value: "example.net" }]), /DNS name "example\.net" is not permitted/);
    });

    it("Go crypto/x509: IP constraints compare address and mask, IPv4 and IPv6 apart", async () => {
      assert.equal(await outcome({ permitted: [{ ip: "10.0.0.0/8" }] }, [{ type: "ip", value: "10.1.2.3" }]), "ok");
      assert.match(await outcome({ permitted: [{ ip: "10.0.0.0/8" }] }, [{ type: "ip", value: "192.168.1.1" }]), /IP address "192\.168\.1\.1" is not permitted/);
      assert.match(await outcome({ permitted: [{ ip: "10.0.0.0/8" }] }, [{ type: "ip", value: "2001:db8::1" }]), /IP address "2001:db8:0:0:0:0:0:1" is not permitted/);
      assert.match(await outcome({ excluded: [{ ip: "2001:db8::/32" }] }, [{ type: "ip", value: "2001:db8::1" }]), /is excluded by constraint "2001:db8:0:0:0:0:0:0\/32"/);
      assert.match(await outcome({ excluded: [{ ip: "127.0.0.1/32" }] }, [{ type: "ip", value: "127.0.0.1" }]), /IP address "127\.0\.0\.1" is excluded/);
    });

    it("Go crypto/x509: email constraints match a mailbox, a domain or its subdomains", async () => {
      const email = (value: string): x509.JsonGeneralName => ({ type: "email", value });
      assert.equal(await outcome({ permitted: [{ email: TD }] }, [email(`ops@${TD}`)]), "ok");
      assert.match(await outcome({ permitted: [{ email: TD }] }, [email("ops@evil.org")]), /email address "ops@evil\.org" is not permitted/);
      assert.equal(await outcome({ permitted: [{ email: `ops@${TD}` }] }, [email(`ops@EXAMPLE.org`)]), "ok");
      assert.match(await outcome({ permitted: [{ email: `ops@${TD}` }] }, [email(`dev@${TD}`)]), /is not permitted/);
      assert.match(await outcome({ excluded: [{ email: `.${TD}` }] }, [email(`ops@mail.${TD}`)]), /is excluded/);
    });

    it("Go crypto/x509: permitted subtrees of one name type do not restrict names of another", async () => {
      assert.equal(await outcome({ permitted: [{ dns: "internal" }] }), "ok");
      assert.equal(await outcome({ permitted: [{ ip: "10.0.0.0/8" }] }, [{ type: "dns", value: "anything.example" }]), "ok");
    });

    it("Go crypto/x509: a trusted root's constraints bind the leaf, and a CA's bind the SANs of intermediates below it", async () => {
      const keys = await generateKeyPair();
      const generated = await x509.X509CertificateGenerator.createSelfSigned({
        name: "O=SPIFFE, CN=constrained root",
        keys,
        ...window(),
        extensions: signingExtensions(TD, [nameConstraintsExtension({ permitted: [{ uri: "other.example" }] })]),
      });
      const constrainedRoot = { certificate: new X509Certificate(Buffer.from(generated.rawData)), privateKey: keys.privateKey };
      const rootBundles = trustBundleSet({ [TD]: [constrainedRoot.certificate] });
      const direct = await leafFrom(constrainedRoot);
      assert.throws(() => verifyX509Svid([direct], rootBundles, now), /root certificate is not authorized to sign for this name: URI "spiffe:\/\/example\.org\/ns\/a\/sa\/b"/);
      // The intermediate's own URI SAN is checked against the root's constraints too.
      const permittedRoot = await constrainedIntermediate({ permitted: [{ uri: TD }] });
      const stray = await constrainedIntermediate({ permitted: [{ uri: TD }] }, { authority: permittedRoot, trustDomain: "other.example" });
      const leaf = await leafFrom(stray);
      rejects(() => verifyX509Svid([leaf, stray.certificate, permittedRoot.certificate], bundles, now), "name-constraints");
    });

    it("Go crypto/x509: constraints on a name type it does not check refuse the CA only when critical", async () => {
      assert.match(await outcome({ permitted: [{ directoryName: true }] }, [], true), /^untrusted-chain: /);
      assert.equal(await outcome({ permitted: [{ directoryName: true }] }, [], false), "ok");
    });

    it("Go crypto/x509: refuses malformed name constraints", async () => {
      assert.match(await outcome({}), /^malformed-certificate: .*empty name constraints extension/);
      assert.match(await outcome({ permitted: [{ uri: "10.0.0.1" }] }), /^malformed-certificate: .*is an IP address/);
      assert.match(await outcome({ permitted: [{ dns: "example.org." }] }), /^malformed-certificate: .*failed to parse dNSName constraint/);
    });
  });

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

  it("terminates on cross-signed intermediates that form a loop", async (t) => {
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
    // The work is counted, not timed: path building is capped at 100 signature checks (as Go's crypto/x509 is), so
    // however the intermediates loop, the search ends.
    const verify = t.mock.method(X509Certificate.prototype, "verify");
    rejects(() => verifyX509Svid([leaf, a, b, a, b, a, b, selfB], bundles, now), "untrusted-chain");
    assert.ok(verify.mock.callCount() > 0 && verify.mock.callCount() <= 100, `${verify.mock.callCount()} signature checks`);
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
