import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:https";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { loadConfig } from "../../src/config/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { issueSvid } from "../../src/identity/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { createPki, TD } from "../support/gateway-fixture.ts";

const POLICY = fileURLToPath(new URL("./fixtures/policy.yaml", import.meta.url));

interface Answer {
  status: number;
  body: { error?: { message: string; code: string } };
  socket: Socket;
}

function get(agent: Agent, url: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, servername: "localhost" }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Answer["body"], socket: req.socket as Socket }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("a kept-alive connection is refused once its client certificate expires: the expiry is checked on every request", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-keepalive-"));
  let gateway: Gateway | undefined;
  const { caPem, caDir } = await createPki(dir, []);
  const alice = await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/ns/apps/sa/alice`, out: join(dir, "alice"), ttlSeconds: 600 });
  const notAfter = new X509Certificate(readFileSync(alice.certPath)).validToDate;
  let now = Date.now();
  writeFileSync(join(dir, "edgeward.yaml"), stringify({
    listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "gateway.pem", key: "gateway.key" },
    trustBundles: { [TD]: "ca/ca.pem" }, policy: POLICY,
    runners: [{ name: "none", url: "http://127.0.0.1:9", models: ["m"] }], decisionLog: "decisions.log",
  }));
  const agent = new Agent({
    keepAlive: true, maxSockets: 1,
    ca: readFileSync(caPem), cert: readFileSync(alice.certPath), key: readFileSync(alice.keyPath),
  });
  try {
    gateway = await Gateway.start(await loadConfig(join(dir, "edgeward.yaml")), { logger: createLogger("silent"), clock: () => now });
    const url = `https://127.0.0.1:${gateway.address.port}/v1/models`;
    const before = await get(agent, url);
    assert.equal(before.status, 200, JSON.stringify(before.body));

    now = notAfter.getTime() + 1000;
    const after = await get(agent, url);
    assert.equal(after.socket, before.socket, "the second request must travel on the same connection");
    assert.equal(after.status, 401);
    assert.equal(after.body.error?.code, "invalid_client_certificate");
    assert.match(after.body.error?.message ?? "", new RegExp(`expired at ${notAfter.toISOString().replaceAll(".", "\\.")}`));
  } finally {
    agent.destroy();
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
