import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { DecisionLog } from "../../src/decision-log/index.ts";
import { run } from "../../src/cli/log.ts";
import { entry, tempDir } from "./fixtures.ts";

async function cli(argv: string[], cwd: string): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await run(argv, { stdout: (s) => { out += s; }, stderr: (s) => { err += s; }, cwd });
  return { code, out, err };
}

async function writeLog(path: string, n: number): Promise<string> {
  const log = await DecisionLog.open(path);
  let head = "";
  for (let i = 1; i <= n; i++) head = (await log.append(entry(i))).hash;
  await log.close();
  return head;
}

describe("edgeward log verify", () => {
  test("an intact log: exit 0 with the count, last seq and head (path relative to cwd)", async (t) => {
    const dir = tempDir(t);
    const head = await writeLog(join(dir, "decisions.jsonl"), 20);
    assert.deepEqual(await cli(["verify", "decisions.jsonl"], dir), {
      code: 0, out: `ok: 20 records, last seq 20, head ${head}\n`, err: "",
    });
  });

  test("an empty log is intact", async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, "empty.jsonl"), "");
    assert.deepEqual(await cli(["verify", "empty.jsonl"], dir), {
      code: 0, out: `ok: 0 records, last seq 0, head ${"0".repeat(64)}\n`, err: "",
    });
  });

  const tamper: Array<[string, (lines: string[]) => string[], string]> = [
    ["an edited record", (l) => l.map((x, i) => (i === 16 ? x.replace('"method":"POST"', '"method":"GET"') : x)),
      "log verify: record seq 17 (line 17): hash mismatch — the record was edited\n"],
    ["a deleted record", (l) => l.filter((_x, i) => i !== 9),
      "log verify: record seq 10 (line 10): expected seq 10, found 11 — a record was deleted, inserted or reordered\n"],
    ["swapped records", (l) => l.map((x, i) => (i === 4 ? l[5]! : i === 5 ? l[4]! : x)),
      "log verify: record seq 5 (line 5): expected seq 5, found 6 — a record was deleted, inserted or reordered\n"],
    ["an inserted line", (l) => [...l.slice(0, 3), l[3]!, ...l.slice(3)],
      "log verify: record seq 5 (line 5): expected seq 5, found 4 — a record was deleted, inserted or reordered\n"],
  ];
  for (const [name, mutate, message] of tamper) {
    test(`${name}: exit 1 naming the first bad record`, async (t) => {
      const dir = tempDir(t);
      const path = join(dir, "decisions.jsonl");
      await writeLog(path, 20);
      const lines = readFileSync(path, "utf8").split("\n").slice(0, -1);
      writeFileSync(path, `${mutate(lines).join("\n")}\n`);
      assert.deepEqual(await cli(["verify", path], dir), { code: 1, out: "", err: message });
    });
  }

  test("a log truncated mid-record: exit 1", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "decisions.jsonl");
    await writeLog(path, 3);
    writeFileSync(path, readFileSync(path).subarray(0, -10));
    assert.deepEqual(await cli(["verify", path], dir), {
      code: 1, out: "", err: "log verify: record seq 3 (line 3): the log ends inside a record (torn write or truncation)\n",
    });
  });

  test("a missing file: exit 1 with a clear message", async (t) => {
    const dir = tempDir(t);
    assert.deepEqual(await cli(["verify", "missing.jsonl"], dir), {
      code: 1, out: "", err: "log verify: cannot read missing.jsonl: no such file\n",
    });
  });

  test("a directory: exit 1", async (t) => {
    const dir = tempDir(t);
    assert.deepEqual(await cli(["verify", "."], dir), { code: 1, out: "", err: "log verify: cannot read .: not a regular file\n" });
  });

  const usage: Array<[string, string[]]> = [
    ["no subcommand", []],
    ["an unknown subcommand", ["tail", "x.jsonl"]],
    ["no path", ["verify"]],
    ["two paths", ["verify", "a.jsonl", "b.jsonl"]],
    ["an empty path", ["verify", ""]],
    ["an unknown option", ["verify", "--fix", "a.jsonl"]],
  ];
  for (const [name, argv] of usage) {
    test(`usage error (${name}): exit 2 with usage`, async (t) => {
      const result = await cli(argv, tempDir(t));
      assert.equal(result.code, 2);
      assert.equal(result.out, "");
      assert.match(result.err, /usage: edgeward log verify PATH/);
    });
  }

  test("--help prints usage and exits 0", async (t) => {
    const result = await cli(["--help"], tempDir(t));
    assert.equal(result.code, 0);
    assert.match(result.out, /^usage: edgeward log verify PATH/);
  });
});
