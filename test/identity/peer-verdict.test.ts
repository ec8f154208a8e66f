import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as tls from "node:tls";
import { authenticatePeer as controlPlanePeer } from "../../src/controlplane/access.ts";
import { authenticatePeer as gatewayPeer } from "../../src/gateway/authenticate.ts";
import { initDevCa, issueSvid, parsePemCertificates, PeerVerdicts, trustBundleSet, type TrustBundleSet } from "../../src/identity/index.ts";
import { writeDefectiveSvid } from "../support/svid-factory.ts";

const TD = "verdict.example";

describe("PeerVerdicts", () => {
  let dir: string;
  let bundles: TrustBundleSet;
  let svid: { certPath: string; keyPath: string };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-verdict-"));
    await initDevCa({ dir, trustDomain: TD });
    bundles = trustBundleSet({ [TD]: parsePemCertificates(readFileSync(join(dir, "ca.pem"), "utf8")) });
    svid = await issueSvid({ dir, spiffeId: `spiffe://${TD}/ns/apps/sa/chat`, out: join(dir, "chat"), ttlSeconds: 600 });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A socket as the TLS layer presents it, counting how often its certificate is read. */
  function socketPresenting(certPath: string | undefined): { socket: tls.TLSSocket; reads: () => number } {
    let reads = 0;
    const [leaf, ca] = certPath === undefined ? [] : parsePemCertificates(readFileSync(certPath, "utf8"));
    const caNode = ca === undefined ? undefined : { raw: ca.raw, fingerprint256: ca.fingerprint256 } as Record<string, unknown>;
    if (caNode !== undefined) caNode.issuerCertificate = caNode;
    const peer = leaf === undefined ? {} : { raw: leaf.raw, fingerprint256: leaf.fingerprint256, issuerCertificate: caNode };
    const socket = { getPeerCertificate: () => (reads++, peer) } as unknown as tls.TLSSocket;
    return { socket, reads: () => reads };
  }

  it("verifies a connection's certificate once, then re-checks only the expiry, naming notAfter", () => {
    const verdicts = new PeerVerdicts();
    const { socket, reads } = socketPresenting(svid.certPath);
    const notAfter = parsePemCertificates(readFileSync(svid.certPath, "utf8"))[0]!.validToDate;
    const now = new Date();
    const first = verdicts.verdict(socket, bundles, now);
    assert.ok(first?.ok === true);
    assert.equal(first.svid.id.uri, `spiffe://${TD}/ns/apps/sa/chat`);
    assert.equal(verdicts.verdict(socket, bundles, new Date(notAfter.getTime())), first, "still valid at notAfter itself");
    assert.equal(reads(), 1);
    const expired = verdicts.verdict(socket, bundles, new Date(notAfter.getTime() + 1));
    assert.deepEqual(expired, {
      ok: false,
      check: "expired",
      message: `x509svid: leaf certificate expired at ${notAfter.toISOString()}, while its connection was open`,
    });
    // Expiry is final: turning the clock back does not revive the connection.
    assert.equal(verdicts.verdict(socket, bundles, now), expired);
    assert.equal(reads(), 1);
  });

  it("answers null when no certificate was presented, and keeps a refusal for the connection's life", () => {
    const verdicts = new PeerVerdicts();
    assert.equal(verdicts.verdict(socketPresenting(undefined).socket, bundles, new Date()), null);
    const { socket, reads } = socketPresenting(svid.certPath);
    const elsewhere = trustBundleSet({ "other.example": bundles.get(TD)! });
    const refused = verdicts.verdict(socket, elsewhere, new Date());
    assert.equal(refused?.ok, false);
    assert.equal(verdicts.verdict(socket, bundles, new Date()), refused);
    assert.equal(reads(), 1);
  });

  it("an acceptance is reached again when the trust bundles are replaced: a removed CA refuses the open connection", () => {
    const verdicts = new PeerVerdicts();
    const { socket, reads } = socketPresenting(svid.certPath);
    assert.equal(verdicts.verdict(socket, bundles, new Date())?.ok, true);
    assert.equal(verdicts.verdict(socket, bundles, new Date())?.ok, true);
    assert.equal(reads(), 1, "the same bundles: verified once");
    const rotated = trustBundleSet({ "other.example": bundles.get(TD)! });
    const refused = verdicts.verdict(socket, rotated, new Date());
    assert.equal(refused?.ok, false);
    assert.equal(reads(), 2);
    // And the refusal stands, even if the old bundles come back.
    assert.equal(verdicts.verdict(socket, bundles, new Date()), refused);
  });

  it("the gateway and the control plane read the same verdict, each in its own shape", () => {
    const { socket } = socketPresenting(svid.certPath);
    const leaf = parsePemCertificates(readFileSync(svid.certPath, "utf8"))[0]!;
    const now = new Date();
    assert.deepEqual(gatewayPeer(socket, bundles, now), {
      ok: true, principal: `spiffe://${TD}/ns/apps/sa/chat`, trustDomain: TD, serial: leaf.serialNumber, notAfter: leaf.validToDate.getTime(),
    });
    const cp = controlPlanePeer(socket, bundles, now);
    assert.ok(cp?.ok === true);
    assert.equal(cp.principal, `spiffe://${TD}/ns/apps/sa/chat`);
    assert.equal(cp.serial, leaf.serialNumber.toLowerCase().replace(/^0+/, ""));
    const none = socketPresenting(undefined).socket;
    assert.equal(controlPlanePeer(none, bundles, now), null);
    assert.equal(gatewayPeer(none, bundles, now).ok, false);
  });

  describe("over a real handshake", () => {
    let server: tls.Server;
    let port: number;
    const seen: Array<ReturnType<typeof gatewayPeer>> = [];

    before(async () => {
      const gw = await issueSvid({ dir, spiffeId: `spiffe://${TD}/gateway`, out: join(dir, "gateway"), ip: ["127.0.0.1"] });
      server = tls.createServer(
        { cert: readFileSync(gw.certPath), key: readFileSync(gw.keyPath), ca: readFileSync(join(dir, "ca.pem")), requestCert: true, rejectUnauthorized: false },
        (socket) => {
          seen.push(gatewayPeer(socket, bundles, new Date()));
          socket.end("done");
        },
      );
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      port = (server.address() as AddressInfo).port;
    });
    after(() => new Promise<void>((resolve) => server.close(() => resolve())));

    function connect(credentials: { certPath: string; keyPath: string }, maxVersion: tls.SecureVersion): Promise<ReturnType<typeof gatewayPeer>> {
      return new Promise((resolve, reject) => {
        const socket = tls.connect({
          host: "127.0.0.1", port, ca: readFileSync(join(dir, "ca.pem")), ciphers: "DEFAULT@SECLEVEL=0", maxVersion,
          cert: readFileSync(credentials.certPath), key: readFileSync(credentials.keyPath),
        });
        socket.on("data", () => undefined);
        socket.on("end", () => resolve(seen.at(-1)!));
        socket.on("error", reject);
      });
    }

    it("an RSA-512 client certificate is refused for its key when presented, and the empty TLS 1.3 Certificate is explained", async () => {
      const weak = await writeDefectiveSvid(dir, "rsa-512-leaf", join(dir, "rsa512"));
      const tls12 = await connect(weak, "TLSv1.2");
      assert.equal(tls12.ok, false);
      assert.ok(!tls12.ok);
      assert.equal(tls12.check, "weak-key");
      assert.match(tls12.message, /leaf certificate has a 512-bit RSA key; at least 2048 bits are required/);
      const tls13 = await connect(weak, "TLSv1.3");
      assert.ok(!tls13.ok);
      assert.equal(tls13.check, "no-certificate");
      assert.match(tls13.message, /^no client certificate presented: .*TLS 1\.3.*512-bit RSA key/);
    });
  });
});
