import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { request, type Agent } from "undici";
import { stringify } from "yaml";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { writeTinyModel } from "../../src/runners/tiny-model.ts";
import { call, mtlsAgent } from "../support/gateway-fixture.ts";
import { isAlive, runCli, startCli, type Started } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const EXAMPLE_POLICY = fileURLToPath(new URL("../../examples/policy.yaml", import.meta.url));
const READY = /listening on https:\/\/127\.0\.0\.1:(\d+) \(admin http:\/\/127\.0\.0\.1:(\d+)\)/;

/** Process ids of the `edgeward runner` processes whose command line names `socket` (read from /proc). */
function runnerPids(socket: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // gone meanwhile
    }
    if (argv.includes("runner") && argv.includes(socket)) pids.push(Number(entry));
  }
  return pids;
}


/**
 * `edgeward serve` with a runner the config marks `embedded`: the gateway starts `edgeward runner` itself, restarts it
 * when it dies, reports it in /readyz and edgeward_runner_up, and never leaves it behind — SIGKILL included.
 */
describe("serve supervises its embedded runner (real processes, tiny model, real llama.cpp)", () => {
  let dir: string;
  let socket: string;
  let assistant: Agent;
  let gw: Started | undefined;

  const CHAT = { model: "tiny", messages: [{ role: "user", content: "hello" }], max_tokens: 4, temperature: 0 };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-supervise-"));
    await initDevCa({ dir: join(dir, "ca"), trustDomain: "example.org" });
    await issueSvid({ dir: join(dir, "ca"), spiffeId: "spiffe://example.org/ns/edge/sa/gateway", out: join(dir, "certs", "gateway"), dns: ["localhost"] });
    await issueSvid({ dir: join(dir, "ca"), spiffeId: "spiffe://example.org/ns/kiosk/sa/assistant", out: join(dir, "certs", "assistant") });
    await writeTinyModel(join(dir, "tiny.gguf"), 7);
    socket = join(dir, "run", "runner.sock");
    writeFileSync(join(dir, "edgeward.yaml"), stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0",
      tls: { cert: "certs/gateway.pem", key: "certs/gateway.key" },
      trustBundles: { "example.org": "ca/ca.pem" },
      policy: EXAMPLE_POLICY,
      // A relative socket path: resolved against this file's folder, like every other path in it.
      runners: [{ name: "embedded", url: "unix:run/runner.sock", models: ["tiny"], probeInterval: "200ms", embedded: { model: "tiny.gguf", threads: 1 } }],
      decisionLog: "decisions.log",
      limits: { maxTokens: 16 },
      logLevel: "warn",
    }));
    assistant = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "certs", "assistant"));
  });

  after(async () => {
    await assistant?.close();
    await gw?.stop("SIGKILL");
    for (const pid of runnerPids(socket)) process.kill(pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  const serve = () => startCli(["serve", "--config", join(dir, "edgeward.yaml")], READY, { timeoutMs: 90_000 });
  const readyz = async (g: Started) => {
    const res = await request(`http://127.0.0.1:${g.match[2]}/readyz`);
    return { status: res.statusCode, body: await res.body.json() as { status: string; reason?: string; runners: Record<string, { up: boolean; reason?: string }> } };
  };
  const metrics = async (g: Started) => (await request(`http://127.0.0.1:${g.match[2]}/metrics`)).body.text();
  const complete = (g: Started) => call(assistant, `https://localhost:${g.match[1]}/v1/chat/completions`, { body: CHAT });

  test("serve starts the runner before it listens: the first request is answered by the model", async () => {
    gw = await serve();
    const pids = runnerPids(socket);
    assert.equal(pids.length, 1, "one runner process");
    const r = await complete(gw);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json().object, "chat.completion");
    const ready = await readyz(gw);
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body.runners.embedded!.up, true);
    assert.match(await metrics(gw), /^edgeward_runner_up\{runner="embedded"\} 1$/m);
  });

  test("a runner that dies is reported down at once (/readyz 503 naming it, 502 for requests) and started again", async () => {
    const [pid] = runnerPids(socket);
    process.kill(pid!, "SIGKILL");
    const down = await waitFor("/readyz to say the runner is down", async () => {
      const r = await readyz(gw!);
      return r.status === 503 ? r : null;
    });
    assert.equal(down.body.status, "unavailable");
    assert.match(down.body.reason!, /^no runner is up \(runner embedded is down: the embedded runner was killed by SIGKILL; restarting in 1000 ms\)$/);
    assert.equal(down.body.runners.embedded!.up, false);
    // While it is down, a request fails as unavailable rather than waiting for it.
    const refused = await complete(gw!);
    if (refused.status !== 200) assert.equal(refused.json().error.code, "upstream_unavailable");
    // Started again after the backoff, on the same socket (the dead one's file is cleared): ready, and serving.
    await waitFor("/readyz ready again", async () => (await readyz(gw!)).status === 200, 60_000);
    const again = runnerPids(socket);
    assert.equal(again.length, 1);
    assert.notEqual(again[0], pid);
    assert.equal((await complete(gw!)).status, 200);
    const text = await metrics(gw!);
    assert.match(text, /^edgeward_runner_restarts_total\{runner="embedded"\} 1$/m);
    assert.match(text, /^edgeward_runner_up\{runner="embedded"\} 1$/m);
  });

  test("SIGTERM stops the gateway and its runner, and the runner's socket is gone", async () => {
    const [pid] = runnerPids(socket);
    assert.equal(await gw!.stop("SIGTERM"), 0);
    gw = undefined;
    assert.equal(isAlive(pid!), false, "the runner stopped before the gateway exited");
    assert.equal(existsSync(socket), false);
  });

  test("SIGKILL of the gateway does not orphan the runner: it exits, and the next serve starts on the same socket", async () => {
    gw = await serve();
    const [pid] = runnerPids(socket);
    await gw.stop("SIGKILL");
    gw = undefined;
    await waitFor("the orphaned runner to exit", () => !isAlive(pid!));
    gw = await serve();
    assert.equal((await complete(gw)).status, 200);
    await gw.stop("SIGTERM");
    gw = undefined;
  });

  test("a runner that cannot start stops serve with exit 1, naming the config key and the runner's own reason", async () => {
    writeFileSync(join(dir, "broken.gguf"), "not a model");
    const config = readFileSync(join(dir, "edgeward.yaml"), "utf8").replace("model: tiny.gguf", "model: broken.gguf");
    writeFileSync(join(dir, "broken.yaml"), config);
    const r = await runCli(["serve", "--config", join(dir, "broken.yaml")], { timeoutMs: 90_000 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /runners\[0\]\.embedded: the embedded runner embedded exited with code \d+ before it was ready: .+/);
    assert.deepEqual(runnerPids(socket), [], "nothing left running");
  });
});
