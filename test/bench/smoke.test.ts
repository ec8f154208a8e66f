import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { spawnChild } from "../support/processes.ts";

const RUN = fileURLToPath(new URL("../../bench/run.ts", import.meta.url));
const TARGETS = ["direct", "minimal-proxy-plain", "minimal-proxy-mtls", "edgeward", "edgeward-tmpfs-log"];
const SCENARIOS = ["chat-closed-loop", "chat-open-loop", "stream-5", "slow-streams", "handshake"];

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawnChild(process.execPath, [RUN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

test("the benchmark harness measures every target end to end on a tiny run", { timeout: 60_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), "edgeward-bench-smoke-"));
  try {
    const r = await runBench(["--profile", "smoke", "--targets", "direct,minimal-proxy,edgeward", "--no-setup", "--no-micro", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(readFileSync(join(out, "latest.json"), "utf8"));
    assert.equal(json.config.profile, "smoke");
    assert.equal(typeof json.machine.cpu, "string");
    assert.ok(json.machine.cores >= 1);
    assert.match(json.machine.node, /^\d+\.\d+\.\d+$/);
    assert.deepEqual(json.targets.map((t: { name: string }) => t.name), TARGETS);
    for (const t of json.targets) assert.equal(t.unavailable, null, `${t.name}: ${t.unavailable}`);
    assert.deepEqual(json.scenarios.map((s: { name: string }) => s.name), SCENARIOS);
    for (const s of json.scenarios) {
      assert.equal(s.rounds.length, 1);
      for (const target of TARGETS) {
        const m = s.rounds[0][target];
        assert.ok(m !== undefined && !("failed" in m), `${s.name}/${target}: ${JSON.stringify(m)}`);
        assert.equal(m.errors, 0, `${s.name}/${target} had errors`);
        const cpuKey = ["cpuUsPerReq", "cpuUsPerStream", "cpuUsPerConn"].find((k) => k in m)!;
        const cpu = m[cpuKey];
        if (target === "direct") assert.equal(cpu, null, "direct has no proxy to charge");
        else assert.ok(cpu > 0, `${s.name}/${target} charged no CPU`);
        assert.equal(typeof s.medians[target], "object");
      }
    }
    const closed = json.scenarios[0];
    assert.equal(closed.ratioToMinimalMtls["minimal-proxy-mtls"].cpuUsPerReq, 1);
    assert.ok(closed.ratioToMinimalMtls.edgeward.cpuUsPerReq > 0);
    assert.ok(closed.medians.edgeward.rps > 0);
    assert.equal(json.scenarios[3].rounds[0].edgeward.streams, 20);
    assert.ok(json.scenarios[3].rounds[0].edgeward.rssMaxMB > 0);
    assert.ok(json.checks.some((c: { target: string }) => c.target.startsWith("proxy CPU per request")));
    const md = readFileSync(join(out, "latest.md"), "utf8");
    assert.match(md, /^\| edgeward \|/m);
    assert.equal(r.stdout, md);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("bad arguments print the usage and exit 2", async () => {
  const r = await runBench(["--rounds", "zero"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^usage: node bench\/run\.ts/m);
});
