import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:https";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ControlPlane, parseControlPlaneConfig } from "../../src/controlplane/index.ts";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { makeKey } from "../support/bundle-factory.ts";

const TD = "example.org";

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

test("a kept-alive connection to the control plane is refused once its client certificate expires", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-cp-keepalive-"));
  let plane: ControlPlane | undefined;
  const caDir = join(dir, "ca");
  await initDevCa({ dir: caDir, trustDomain: TD });
  await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/controlplane`, out: join(dir, "cp"), dns: ["localhost"], ip: ["127.0.0.1"] });
  const admin = await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/ops/admin`, out: join(dir, "admin"), ttlSeconds: 600 });
  const notAfter = new X509Certificate(readFileSync(admin.certPath)).validToDate;
  writeFileSync(join(dir, "release.pub"), (await makeKey()).publicPem);
  let now = Date.now();
  const agent = new Agent({
    keepAlive: true, maxSockets: 1,
    ca: readFileSync(join(caDir, "ca.pem")), cert: readFileSync(admin.certPath), key: readFileSync(admin.keyPath),
  });
  try {
    const config = parseControlPlaneConfig({
      listen: "127.0.0.1:0",
      tls: { cert: "cp.pem", key: "cp.key" },
      trustBundles: { [TD]: "ca/ca.pem" },
      storage: { sqlite: "data/controlplane.db" },
      operators: { principals: [`spiffe://${TD}/ops/admin`] },
      groups: [{ name: "kiosks", principals: [`spiffe://${TD}/edge/node/*`] }],
      bundles: { keys: ["release.pub"] },
      logLevel: "silent",
    }, join(dir, "controlplane.yaml"));
    plane = await ControlPlane.start(config, { logger: createLogger("silent"), clock: () => now });
    const url = `https://127.0.0.1:${plane.address.port}/v1/nodes`;
    const before = await get(agent, url);
    assert.equal(before.status, 200, JSON.stringify(before.body));

    now = notAfter.getTime() + 1000;
    const after = await get(agent, url);
    assert.equal(after.socket, before.socket, "the second request must travel on the same connection");
    assert.equal(after.status, 401);
    assert.equal(after.body.error?.code, "unauthenticated");
    assert.match(after.body.error?.message ?? "", /client certificate refused \(expired\)/);
    assert.match(after.body.error?.message ?? "", new RegExp(`expired at ${notAfter.toISOString().replaceAll(".", "\\.")}`));
  } finally {
    agent.destroy();
    await plane?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
