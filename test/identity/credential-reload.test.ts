import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import * as tls from "node:tls";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { loadConfig } from "../../src/config/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { issueSvid, KeyPairError, parseKeyPair } from "../../src/identity/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { createPki, TD } from "../support/gateway-fixture.ts";
import { waitFor } from "../support/wait.ts";

const POLICY = fileURLToPath(new URL("../gateway/fixtures/policy.yaml", import.meta.url));

describe("parseKeyPair", () => {
  let dir: string;
  let pair: { cert: string; key: string; otherKey: string };
  const names = { cert: "gateway.pem", key: "gateway.key" };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-keypair-"));
    await createPki(dir, ["other"]);
    pair = {
      cert: readFileSync(join(dir, "gateway.pem"), "utf8"),
      key: readFileSync(join(dir, "gateway.key"), "utf8"),
      otherKey: readFileSync(join(dir, "other.key"), "utf8"),
    };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const refuses = (cert: string, key: string, check: string, message: RegExp) =>
    assert.throws(() => parseKeyPair(cert, key, names), (error: unknown) => {
      assert.ok(error instanceof KeyPairError, String(error));
      assert.equal(error.check, check);
      assert.match(error.message, message);
      assert.doesNotMatch(error.message, /BEGIN|PRIVATE KEY-----/, "never echoes key material");
      return true;
    });

  it("accepts a certificate with its own key, and returns the chain the file carries", () => {
    const parsed = parseKeyPair(pair.cert, pair.key, names);
    assert.equal(parsed.chain.length, 2);
    assert.equal(parsed.key.type, "private");
  });

  it("refuses an empty, half-written or garbled certificate file", () => {
    refuses("", pair.key, "certificate", /^keypair: gateway\.pem: no CERTIFICATE block found$/);
    refuses(pair.cert.slice(0, pair.cert.length / 3), pair.key, "certificate", /^keypair: gateway\.pem: .*unterminated block/);
    refuses(pair.key, pair.key, "certificate", /^keypair: gateway\.pem: PEM block 1 is a PRIVATE KEY, not a CERTIFICATE$/);
  });

  it("refuses an empty or unparsable key, and a key that is not the certificate's", () => {
    refuses(pair.cert, "", "key", /^keypair: gateway\.key: not a PEM private key \(the file is empty\)$/);
    refuses(pair.cert, pair.key.slice(0, 60), "key", /^keypair: gateway\.key: not a PEM private key$/);
    refuses(pair.cert, pair.otherKey, "mismatch", /^keypair: gateway\.key does not match the public key of the certificate in gateway\.pem$/);
  });
});

describe("gateway credential reload", () => {
  let dir: string;
  let caPem: string;
  let gateway: Gateway;
  let original: { cert: string; key: string };
  const logs: string[] = [];
  const certPath = () => join(dir, "gateway.pem");
  const keyPath = () => join(dir, "gateway.key");

  /** The SHA-256 fingerprint of the certificate the gateway serves in a fresh handshake. */
  function servedFingerprint(): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port: gateway.address.port,
        servername: "localhost",
        ca: readFileSync(caPem),
        cert: readFileSync(join(dir, "alice.pem")),
        key: readFileSync(join(dir, "alice.key")),
      });
      socket.once("secureConnect", () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.end();
      });
      socket.once("error", reject);
    });
  }

  async function restore(): Promise<void> {
    writeFileSync(certPath(), original.cert);
    writeFileSync(keyPath(), original.key);
    await gateway.reloadCredentials();
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-reload-"));
    ({ caPem } = await createPki(dir, ["alice"]));
    original = { cert: readFileSync(certPath(), "utf8"), key: readFileSync(keyPath(), "utf8") };
    writeFileSync(join(dir, "edgeward.yaml"), stringify({
      listen: "127.0.0.1:0",
      admin: "127.0.0.1:0",
      tls: { cert: "gateway.pem", key: "gateway.key", reloadInterval: "50ms" },
      trustBundles: { [TD]: "ca/ca.pem" },
      policy: POLICY,
      runners: [{ name: "none", url: "http://127.0.0.1:9", models: ["m"] }],
      decisionLog: "decisions.log",
    }));
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logs.push(chunk.toString("utf8"));
        done();
      },
    });
    gateway = await Gateway.start(await loadConfig(join(dir, "edgeward.yaml")), { logger: createLogger("info", sink) });
  });

  after(async () => {
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses an empty certificate file and keeps serving the old credentials", async () => {
    const served = await servedFingerprint();
    writeFileSync(certPath(), "");
    await assert.rejects(gateway.reloadCredentials(), { name: "KeyPairError", check: "certificate" });
    assert.equal(await servedFingerprint(), served);
    await restore();
  });

  it("refuses a half-written certificate file and keeps serving the old credentials", async () => {
    const served = await servedFingerprint();
    const next = await issueSvid({ dir: join(dir, "ca"), spiffeId: `spiffe://${TD}/ns/edge/sa/gateway`, out: join(dir, "next"), ip: ["127.0.0.1"], dns: ["localhost"] });
    writeFileSync(certPath(), readFileSync(next.certPath, "utf8").slice(0, 400));
    await assert.rejects(gateway.reloadCredentials(), { name: "KeyPairError", check: "certificate" });
    assert.equal(await servedFingerprint(), served);
    await restore();
  });

  it("refuses a key written before its certificate (a rotation caught between its two writes), then takes the pair", async () => {
    const served = await servedFingerprint();
    const next = await issueSvid({ dir: join(dir, "ca"), spiffeId: `spiffe://${TD}/ns/edge/sa/gateway`, out: join(dir, "rotated"), ip: ["127.0.0.1"], dns: ["localhost"] });
    copyFileSync(next.keyPath, keyPath());
    await assert.rejects(gateway.reloadCredentials(), { name: "KeyPairError", check: "mismatch" });
    assert.equal(await servedFingerprint(), served);
    copyFileSync(next.certPath, certPath());
    await gateway.reloadCredentials();
    const rotated = await servedFingerprint();
    assert.notEqual(rotated, served);
    assert.equal(rotated, new X509Certificate(readFileSync(next.certPath)).fingerprint256);
    original = { cert: readFileSync(certPath(), "utf8"), key: readFileSync(keyPath(), "utf8") };
  });

  it("on the rotation timer, logs why a reload was refused and keeps serving until the files are whole again", async () => {
    const served = await servedFingerprint();
    logs.length = 0;
    writeFileSync(certPath(), "");
    const refusals = () => logs.map((line) => JSON.parse(line) as { msg: string; err?: string }).filter((l) => /credential reload refused/.test(l.msg));
    const refused = await waitFor("the rotation timer to refuse the empty certificate", () => (refusals().length > 0 ? refusals() : null));
    assert.match(refused[0]!.err ?? "", /keypair: .*gateway\.pem: no CERTIFICATE block found/);
    assert.equal(await servedFingerprint(), served);
    writeFileSync(certPath(), original.cert);
    await waitFor("the rotation timer to reload the whole files", () => logs.some((line) => /TLS credentials and trust bundles reloaded/.test(line)));
    assert.equal(await servedFingerprint(), served);
  });
});
