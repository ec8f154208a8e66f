import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { startCli } from "../support/processes.ts";

const exec = promisify(execFile);

test("edgeward demo prints curl calls that succeed and are denied as stated, and stops cleanly on Ctrl-C", async () => {
  const cwd = mkdtempSync(join(tmpdir(), "edgeward-demo-"));
  const demo = await startCli(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"], /^Press Ctrl-C to stop\.$/, { cwd, timeoutMs: 90_000 });
  try {
    const curls = demo.stdout().split("\n").filter((l) => l.startsWith("  curl ")).map((l) => l.trim());
    assert.equal(curls.length, 4);
    const run = async (cmd: string) => {
      const { stdout } = await exec("sh", ["-c", `${cmd} -s -w '\\n%{http_code}'`], { cwd, timeout: 30_000 });
      const at = stdout.lastIndexOf("\n");
      return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) };
    };
    const allowed = await run(curls[0]!);
    assert.equal(allowed.status, 200, allowed.body);
    assert.equal(JSON.parse(allowed.body).object, "chat.completion");
    const denied = await run(curls[1]!);
    assert.equal(denied.status, 403);
    assert.equal(JSON.parse(denied.body).error.code, "policy_denied");
    const streamed = await run(curls[2]!);
    assert.equal(streamed.status, 200);
    assert.match(streamed.body, /data: \[DONE\]\s*$/);
    const models = await run(curls[3]!);
    assert.deepEqual(JSON.parse(models.body).data.map((m: { id: string }) => m.id), ["tiny"]);
    assert.equal(await demo.stop("SIGINT"), 0);
    assert.equal(existsSync(join(cwd, ".edgeward", "demo", "runner.sock")), false, "the runner's socket is removed");
  } finally {
    await demo.stop("SIGKILL");
    rmSync(cwd, { recursive: true, force: true });
  }
});
