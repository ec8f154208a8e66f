import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as tls from "node:tls";
import {
  initDevCa,
  issueSvid,
  parsePemCertificates,
  peerCertificateChain,
  trustBundleSet,
  verifyX509Svid,
  X509SvidError,
  type TrustBundleSet,
} from "../../src/identity/index.ts";
import { DEFECTS, EXPECTED_CHECK, WEAK_CRYPTO_DEFECTS, writeDefectiveSvid } from "../support/svid-factory.ts";

const TD = "tls.example";

type Outcome = { ok: true; id: string; chainLength: number } | { ok: false; check: string };

describe("peerCertificateChain over a real TLS handshake", () => {
  let dir: string;
  let caPem: string;
  let bundles: TrustBundleSet;
  let server: tls.Server;
  let port: number;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-tls-"));
    await initDevCa({ dir, trustDomain: TD });
    caPem = readFileSync(join(dir, "ca.pem"), "utf8");
    bundles = trustBundleSet({ [TD]: parsePemCertificates(caPem) });
    const serverSvid = await issueSvid({ dir, spiffeId: `spiffe://${TD}/gateway`, out: join(dir, "server"), ip: ["127.0.0.1"] });
    server = tls.createServer(
      {
        cert: readFileSync(serverSvid.certPath),
        key: readFileSync(serverSvid.keyPath),
        ca: caPem,
        requestCert: true,
        rejectUnauthorized: false,
      },
      (socket) => {
        // The server reports what the identity module decided; the test reads it as the client.
        let outcome: Outcome;
        try {
          const chain = peerCertificateChain(socket);
          const verified = verifyX509Svid(chain, bundles, new Date());
          outcome = { ok: true, id: verified.id.uri, chainLength: chain.length };
        } catch (error) {
          outcome = { ok: false, check: error instanceof X509SvidError ? error.check : `unexpected: ${String(error)}` };
        }
        socket.end(JSON.stringify(outcome));
      },
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  function connect(
    credentials: { certPath: string; keyPath: string } | undefined,
    client: Pick<tls.ConnectionOptions, "ciphers" | "maxVersion"> = {},
  ): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        ...client,
        host: "127.0.0.1",
        port,
        ca: caPem,
        ...(credentials ? { cert: readFileSync(credentials.certPath), key: readFileSync(credentials.keyPath) } : {}),
      });
      let body = "";
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => (body += chunk));
      socket.on("end", () => {
        try {
          resolve(JSON.parse(body) as Outcome);
        } catch (error) {
          reject(error);
        }
      });
      socket.on("error", reject);
    });
  }

  it("accepts a client presenting an issued SVID", async () => {
    const client = await issueSvid({ dir, spiffeId: `spiffe://${TD}/ns/apps/sa/chat`, out: join(dir, "client") });
    const outcome = await connect(client);
    assert.deepEqual(outcome, { ok: true, id: `spiffe://${TD}/ns/apps/sa/chat`, chainLength: 2 });
  });

  it("reports no certificate when the client presents none", async () => {
    assert.deepEqual(await connect(undefined), { ok: false, check: "no-certificate" });
  });

  for (const defect of DEFECTS) {
    it(`rejects a client presenting the "${defect}" SVID`, async () => {
      const credentials = await writeDefectiveSvid(dir, defect, join(dir, `client-${defect}`));
      assert.deepEqual(await connect(credentials), { ok: false, check: EXPECTED_CHECK[defect] });
    });
  }

  // A client with OpenSSL's security level lowered presents what a default one refuses to load; TLS 1.2 lets even a
  // 512-bit RSA key sign the handshake. The verifier, not the client's settings, must refuse them.
  for (const defect of WEAK_CRYPTO_DEFECTS) {
    it(`Go crypto/x509: refuses a client presenting the "${defect}" SVID with check ${EXPECTED_CHECK[defect]}`, async () => {
      const credentials = await writeDefectiveSvid(dir, defect, join(dir, `client-${defect}`));
      const weakClient = { ciphers: "DEFAULT@SECLEVEL=0", maxVersion: "TLSv1.2" } as const;
      assert.deepEqual(await connect(credentials, weakClient), { ok: false, check: EXPECTED_CHECK[defect] });
    });
  }

  it("an RSA-512 client over TLS 1.3 sends an empty Certificate message: no RSA-PSS scheme fits a 512-bit key", async () => {
    const credentials = await writeDefectiveSvid(dir, "rsa-512-leaf", join(dir, "client-rsa-512-tls13"));
    assert.deepEqual(await connect(credentials, { ciphers: "DEFAULT@SECLEVEL=0", maxVersion: "TLSv1.3" }), { ok: false, check: "no-certificate" });
    // The same client, allowed TLS 1.2 (PKCS#1 v1.5 signatures), does present the certificate — and it is refused for its key.
    assert.deepEqual(await connect(credentials, { ciphers: "DEFAULT@SECLEVEL=0", maxVersion: "TLSv1.2" }), { ok: false, check: "weak-key" });
  });
});

describe("peerCertificateChain walking", () => {
  let dir: string;
  let pems: { leaf: Buffer; ca: Buffer };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-walk-"));
    await initDevCa({ dir, trustDomain: TD });
    const svid = await issueSvid({ dir, spiffeId: `spiffe://${TD}/w`, out: join(dir, "w") });
    const [leaf, ca] = parsePemCertificates(readFileSync(svid.certPath, "utf8"));
    pems = { leaf: leaf!.raw, ca: ca!.raw };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const socketReturning = (peer: unknown) => ({ getPeerCertificate: () => peer }) as unknown as tls.TLSSocket;
  const node = (raw: Buffer, fingerprint256: string) => ({ raw, fingerprint256 }) as Record<string, unknown>;

  it("returns [] when the peer sent nothing", () => {
    assert.deepEqual(peerCertificateChain(socketReturning({})), []);
    assert.deepEqual(peerCertificateChain(socketReturning(null)), []);
  });

  it("stops at a self-reference", () => {
    const leaf = node(pems.leaf, "L");
    const ca = node(pems.ca, "C");
    leaf.issuerCertificate = ca;
    ca.issuerCertificate = ca;
    const chain = peerCertificateChain(socketReturning(leaf));
    assert.deepEqual(chain.map((c) => c.raw), [pems.leaf, pems.ca]);
  });

  it("stops at a repeat instead of looping", () => {
    const leaf = node(pems.leaf, "L");
    const ca = node(pems.ca, "C");
    leaf.issuerCertificate = ca;
    ca.issuerCertificate = leaf;
    assert.equal(peerCertificateChain(socketReturning(leaf)).length, 2);
  });
});
