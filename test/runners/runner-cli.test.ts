import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { run } from "../../src/cli/runner.ts";
import { EmbeddedRunnerError, modelNameFor, startEmbeddedRunner } from "../../src/runners/embedded-server.ts";
import { writeTinyModel } from "../../src/runners/tiny-model.ts";
import { exited, spawnChild } from "../support/processes.ts";
import { nextEvent } from "../support/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "edgeward-runner-cli-"));
const modelPath = join(dir, "tiny-model.gguf");
before(() => writeTinyModel(modelPath));
after(() => rmSync(dir, { recursive: true, force: true }));

function cliIO() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s), cwd: dir }, out, err };
}

test("bad arguments print usage and exit 2", async () => {
  const cases = [
    [],
    ["--socket", "r.sock"],
    ["--model", "tiny-model.gguf"],
    ["--model", "tiny-model.gguf", "--socket", "r.sock", "--port", "0"],
    ["--model", "tiny-model.gguf", "--socket", "r.sock", "--host", "0.0.0.0"],
    ["--model", "tiny-model.gguf", "--port", "65536"],
    ["--model", "tiny-model.gguf", "--port", "-1"],
    ["--model", "tiny-model.gguf", "--port", "80a"],
    ["--model", "tiny-model.gguf", "--socket", "r.sock", "--threads", "0"],
    ["--model", "tiny-model.gguf", "--socket", "r.sock", "--context-size", "8"],
    ["--model", "tiny-model.gguf", "--socket", "r.sock", "--name", ""],
    ["--model", "tiny-model.gguf", "--socket", "r.sock", "--frobnicate"],
    ["--model", "tiny-model.gguf", "--socket", "r.sock", "extra"],
  ];
  for (const argv of cases) {
    const c = cliIO();
    assert.equal(await run(argv, c.io), 2, argv.join(" "));
    assert.match(c.err.join(""), /usage: edgeward runner/, argv.join(" "));
    assert.deepEqual(c.out, []);
  }
});

test("a missing or corrupt model exits 1 with a message", async () => {
  const missing = cliIO();
  assert.equal(await run(["--model", "nope.gguf", "--socket", "r.sock"], missing.io), 1);
  assert.match(missing.err.join(""), /^runner: model file \S*nope\.gguf not found/);
  const junkFiles: Array<[string, Uint8Array]> = [
    ["text.gguf", Buffer.from("GGUF but not really, just some text")],
    ["short.gguf", Buffer.from("GGUF")],
    ["v1.gguf", Buffer.concat([Buffer.from("GGUF"), Buffer.from([1, 0, 0, 0]), Buffer.alloc(16)])],
    // A valid magic and version but counts no file of this size could hold.
    ["counts.gguf", Buffer.concat([Buffer.from("GGUF"), Buffer.from([3, 0, 0, 0]), Buffer.alloc(16, 0xff)])],
  ];
  for (const [name, bytes] of junkFiles) {
    writeFileSync(join(dir, name), bytes);
    const junk = cliIO();
    assert.equal(await run(["--model", name, "--socket", "r.sock", "--threads", "1"], junk.io), 1, name);
    assert.match(junk.err.join(""), /^runner: \S+ is not a GGUF v2\/v3 model file\n$/, name);
  }
  assert.equal(existsSync(join(dir, "r.sock")), false);
});

test("refuses to replace a file that is not a socket", async () => {
  const path = join(dir, "not-a-socket");
  writeFileSync(path, "keep me");
  await assert.rejects(
    startEmbeddedRunner({ modelPath, socketPath: path }),
    (err: unknown) => err instanceof EmbeddedRunnerError && err.check === "socket-path",
  );
  assert.ok(statSync(path).isFile());
});

test("refuses a socket another server is listening on", async () => {
  const path = join(dir, "live.sock");
  const server = createServer().listen(path);
  await nextEvent(server, "listening", "a server on the socket");
  try {
    await assert.rejects(
      startEmbeddedRunner({ modelPath, socketPath: path }),
      (err: unknown) => err instanceof EmbeddedRunnerError && err.check === "socket-in-use",
    );
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test("needs exactly one of a socket and a port", async () => {
  for (const opts of [{ modelPath }, { modelPath, socketPath: join(dir, "a.sock"), port: 0 }, { modelPath, port: 70000 }]) {
    await assert.rejects(startEmbeddedRunner(opts), (err: unknown) => err instanceof EmbeddedRunnerError && err.check === "listen");
  }
});

test("replaces a stale socket left by a killed process, serves, and removes it on close", async () => {
  const path = join(dir, "stale.sock");
  // A process killed with SIGKILL cannot unlink its socket.
  const holder = spawnChild(
    process.execPath,
    ["-e", `require("node:net").createServer().listen(${JSON.stringify(path)}, () => console.log("up"))`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await nextEvent(holder.stdout!, "data", "the holder listening on the socket");
  holder.kill("SIGKILL");
  await exited(holder, "the holder");
  assert.ok(statSync(path).isSocket());

  const runner = await startEmbeddedRunner({ modelPath, socketPath: path, threads: 1, contextSize: 512 });
  try {
    assert.equal(runner.address, `unix:${path}`);
    assert.equal(statSync(path).mode & 0o777, 0o600);
  } finally {
    await runner.close();
  }
  assert.equal(existsSync(path), false);
});

test("TCP on 127.0.0.1 with --port 0 reports the real port", async () => {
  const runner = await startEmbeddedRunner({ modelPath, port: 0, threads: 1, contextSize: 512 });
  try {
    assert.match(runner.address, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(runner.address, "http://127.0.0.1:0");
    const models = (await (await fetch(`${runner.address}/v1/models`)).json()) as { data: Array<{ id: string }> };
    assert.deepEqual(
      models.data.map((m) => m.id),
      ["tiny-model"],
    );
    const res = await fetch(`${runner.address}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "tiny-model", prompt: "hello", max_tokens: 3 }),
    });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 3);
  } finally {
    await runner.close();
  }
});

test("the model id defaults to the file name without .gguf", () => {
  assert.equal(modelNameFor("/models/Qwen2.5-0.5B-Q4_K_M.gguf"), "Qwen2.5-0.5B-Q4_K_M");
  assert.equal(modelNameFor("plain"), "plain");
});
