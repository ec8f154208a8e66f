import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { connect, type TLSSocket } from "node:tls";
import { stringify } from "yaml";
import { FakeRunner } from "../support/fake-runner.ts";
import { call, createPki, mtlsAgent } from "../support/gateway-fixture.ts";
import { BIN, exited, killGroup, spawnChild } from "../support/processes.ts";

/**
 * A caller with a valid certificate tries to take every descriptor of a real gateway process that runs under a
 * small open-files limit: hundreds of connections, each drip-feeding a request body. Good callers keep being served.
 */

const POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: callers, namespace: test}
spec:
  action: ALLOW
  rules:
    - from: [{source: {principals: ["example.org/ns/apps/sa/alice", "example.org/ns/apps/sa/bob", "example.org/ns/apps/sa/mallory"]}}]
`;
const CHAT = { model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: 4 };
const OPEN_FILES = 256;

describe("descriptor exhaustion by an authenticated caller (real process, ulimit -n 256)", () => {
  let dir: string;
  let fake: FakeRunner;
  let child: ChildProcess;
  let port: number;
  let admin: number;
  let stderr = "";

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-fds-"));
    await createPki(dir, ["alice", "bob", "mallory"]);
    fake = await FakeRunner.start();
    writeFileSync(join(dir, "policy.yaml"), POLICY);
    writeFileSync(join(dir, "edgeward.yaml"), stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "gateway.pem", key: "gateway.key" },
      trustBundles: { "example.org": "ca/ca.pem" }, policy: "policy.yaml",
      runners: [{ name: "fake", url: fake.url, models: ["m"] }], decisionLog: "decisions.log",
      // Default connection limits: maxConnections (1024) is lowered to what 256 descriptors can hold.
      limits: { bodyTimeout: "3s" }, logLevel: "warn",
    }));
    // The node binary itself, under the limit (soft and hard), so the gateway cannot raise it.
    child = spawnChild("bash", ["-c", `ulimit -n ${OPEN_FILES} && exec "$0" "$@"`, process.execPath, BIN, "serve", "--config", join(dir, "edgeward.yaml")], { stdio: ["ignore", "pipe", "pipe"] });
    child.stderr!.on("data", (d) => (stderr += d));
    const ready = await new Promise<RegExpExecArray>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`gateway did not start: ${stderr}`)), 30_000);
      createInterface({ input: child.stdout! }).on("line", (line) => {
        const m = /listening on https:\/\/127\.0\.0\.1:(\d+) \(admin http:\/\/127\.0\.0\.1:(\d+)\)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m);
        }
      });
      child.once("exit", (code) => reject(new Error(`gateway exited with ${code}: ${stderr}`)));
    });
    port = Number(ready[1]);
    admin = Number(ready[2]);
  });

  after(async () => {
    if (child?.exitCode === null) {
      killGroup(child);
      await exited(child, "the gateway after SIGKILL");
    }
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Opens a connection as `who` and starts a POST whose body never completes; resolves null when refused. */
  function dripper(who: string): Promise<TLSSocket | null> {
    return new Promise((resolve) => {
      const s = connect({
        host: "127.0.0.1", port, servername: "localhost", ca: readFileSync(join(dir, "ca", "ca.pem")),
        cert: readFileSync(join(dir, `${who}.pem`)), key: readFileSync(join(dir, `${who}.key`)),
      }, () => {
        s.write('POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{"model":');
        resolve(s);
      });
      s.on("error", () => resolve(null));
      // A handshake the gateway never gets to (its accept queue full) ends here as a refusal, not a hang.
      s.on("close", () => resolve(null));
      s.setTimeout(10_000, () => s.destroy());
    });
  }

  test("hundreds of drip-fed connections from one caller: the gateway stays up and other callers are served", async () => {
    const alice = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "alice"));
    const url = `https://127.0.0.1:${port}/v1/chat/completions`;
    const sockets: (TLSSocket | null)[] = [];
    try {
      assert.equal((await call(alice, url, { body: CHAT })).status, 200);
      assert.match(stderr, /limits\.maxConnections is above what the open-files limit can hold; lowered/);
      // Twice the descriptors the process has.
      for (let wave = 0; wave < 4; wave++) sockets.push(...(await Promise.all(Array.from({ length: OPEN_FILES / 2 }, () => dripper("mallory")))));
      // Alice's kept-alive connection and a new caller's fresh one are both served while the attack holds on.
      for (let i = 0; i < 10; i++) assert.equal((await call(alice, url, { body: CHAT })).status, 200);
      const bob = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "bob"));
      try {
        assert.equal((await call(bob, url, { body: CHAT })).status, 200);
      } finally {
        await bob.close();
      }
      assert.equal(child.exitCode, null, "the gateway is still running");
      const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
      assert.match(metrics, /edgeward_connections_refused_total\{limit="principal"\} [1-9]/);
      assert.match(metrics, /edgeward_denials_total\{reason="capacity"\} [1-9]/);
    } finally {
      for (const s of sockets) s?.destroy();
      await alice.close();
    }
  });
});
