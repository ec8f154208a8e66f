import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import { call, mtlsAgent } from "../support/gateway-fixture.ts";
import { runCli, startCli, type Started } from "../support/processes.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const README = readFileSync(join(ROOT, "README.md"), "utf8");

/** The `edgeward …` lines of the README's Configuration section's sh block, as a reader would paste them. */
function readmeSetupCommands(): string[][] {
  const section = README.slice(README.indexOf("## Configuration"), README.indexOf("## Offline operation"));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  assert.ok(block, "README's Configuration section has an sh block");
  return block[1]!.split("\n").filter((l) => l.startsWith("edgeward ")).map((l) => l.split(/\s+/).slice(1));
}

/**
 * The README's setup, followed as written in an empty folder with examples/edgeward.yaml and examples/policy.yaml
 * beside it: the dev CA's commands, then `serve` with the example config's embedded runner switched on.
 */
describe("the README's setup, from nothing, with the example config", () => {
  let dir: string;
  let gw: Started | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-setup-"));
    copyFileSync(join(ROOT, "examples/policy.yaml"), join(dir, "policy.yaml"));
  });

  after(async () => {
    await gw?.stop("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  });

  test("every command runs as written, and the gateway answers the assistant through the embedded runner", async () => {
    const commands = readmeSetupCommands();
    assert.deepEqual(commands.map((c) => c.slice(0, 2).join(" ")), ["ca init", "ca issue", "ca issue", "serve --config"]);
    for (const args of commands.slice(0, -1)) {
      const r = await runCli(args, { cwd: dir });
      assert.equal(r.code, 0, `edgeward ${args.join(" ")}: ${r.stderr}`);
    }
    assert.equal((await runCli(["model", "tiny", "--out", "models/tiny.gguf"], { cwd: dir })).code, 0);
    // The example config, with its embedded runner switched on in place of the vLLM one, on free ports.
    const example = readFileSync(join(ROOT, "examples/edgeward.yaml"), "utf8");
    const embedded = /^ {2}# (- \{name: embedded, .*\})$/m.exec(example);
    assert.ok(embedded, "examples/edgeward.yaml shows an embedded runner");
    const config = example
      .replace(/^ {2}- \{name: local, .*$/m, `  ${embedded[1]}`)
      .replace(/^listen: 127\.0\.0\.1:8443/m, "listen: 127.0.0.1:0")
      .replace(/^admin: 127\.0\.0\.1:9464/m, "admin: 127.0.0.1:0");
    writeFileSync(join(dir, "edgeward.yaml"), config);
    gw = await startCli(commands.at(-1)!, /listening on https:\/\/127\.0\.0\.1:(\d+) \(admin http:\/\/127\.0\.0\.1:(\d+)\)/, { cwd: dir, timeoutMs: 90_000 });
    const assistant = mtlsAgent(join(dir, "ca/ca.pem"), join(dir, "certs/assistant"));
    try {
      const r = await call(assistant, `https://localhost:${gw.match[1]}/v1/chat/completions`, {
        body: { model: "tiny", messages: [{ role: "user", content: "hello world" }], max_tokens: 4 },
      });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json().usage.completion_tokens, 4);
    } finally {
      await assistant.close();
    }
    const ready = await request(`http://127.0.0.1:${gw.match[2]}/readyz`);
    assert.equal(ready.statusCode, 200);
    assert.equal((await ready.body.json() as { runners: { embedded: { up: boolean } } }).runners.embedded.up, true);
  });

  test("a file the config names that is missing stops serve, naming its key", async () => {
    const config = readFileSync(join(dir, "edgeward.yaml"), "utf8").replace("ca/ca.pem", "certs/ca.pem");
    writeFileSync(join(dir, "missing.yaml"), config);
    const r = await runCli(["serve", "--config", "missing.yaml"], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /config: trustBundles\.example\.org: cannot read \S+certs\/ca\.pem: ENOENT/);
  });
});
