// bin/edgeward.js: the Node version check every Node parses, and which code it runs (the build, else the sources).
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const exec = promisify(execFile);
const BIN = fileURLToPath(new URL("../../bin/edgeward.js", import.meta.url));
const RUN_SOURCES = fileURLToPath(new URL("../../packaging/run-sources.js", import.meta.url));
const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { engines: { node: string } };
const minimum = /var MINIMUM = "(\d+\.\d+\.\d+)"/.exec(readFileSync(BIN, "utf8"))?.[1];

const dir = mkdtempSync(join(tmpdir(), "edgeward-bin-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const older = (a: string, b: string): boolean => {
  const [x, y] = [a, b].map((v) => v.replace(/^v/, "").split(".").map(Number));
  for (let i = 0; i < 3; i++) if (x![i] !== y![i]) return x![i]! < y![i]!;
  return false;
};

/** A Node on this machine older than the bin's minimum, outside any node_modules (the system's own), if there is one. */
function oldNode(): { path: string; version: string } | null {
  let candidates: string[];
  try {
    candidates = execFileSync("which", ["-a", "node"], { encoding: "utf8", env: { PATH: process.env.PATH ?? "" } }).split("\n");
  } catch {
    return null;
  }
  for (const path of candidates.filter((p) => p !== "" && !p.includes("node_modules"))) {
    try {
      const version = execFileSync(path, ["--version"], { encoding: "utf8" }).trim();
      if (minimum !== undefined && older(version, minimum)) return { path, version };
    } catch {
      // not runnable: try the next
    }
  }
  return null;
}

test("the bin's minimum Node is the one package.json's engines states", () => {
  assert.ok(minimum, "bin/edgeward.js declares MINIMUM");
  assert.equal(pkg.engines.node, `>=${minimum.replace(/\.0$/, "")}`);
});

const old = oldNode();
test("on a Node older than the minimum, the bin prints one line saying what is needed and exits 1", { skip: old === null ? `no Node older than ${minimum} outside node_modules on this machine (which -a node)` : false }, async () => {
  const r = await exec(old!.path, [BIN, "--version"]).then(
    () => assert.fail("the bin exited 0 on an old Node"),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  assert.equal(
    r.stderr,
    `edgeward: needs Node.js >= ${minimum}, but this is Node.js ${old!.version} (${old!.path}); install Node.js 22 LTS or newer (24 recommended)\n`,
  );
});

/** A copy of the bin in a package folder with stand-ins for the build's and the sources' entries. */
function layout(name: string, parts: { built?: boolean; sources?: boolean }): string {
  const root = join(dir, name);
  mkdirSync(join(root, "bin"), { recursive: true });
  copyFileSync(BIN, join(root, "bin", "edgeward.js"));
  writeFileSync(join(root, "package.json"), JSON.stringify({ name: "edgeward", type: "module" }));
  if (parts.built) {
    mkdirSync(join(root, "dist", "cli"), { recursive: true });
    writeFileSync(join(root, "dist", "cli", "run.js"), 'console.log("build", process.argv.slice(2).join(" "));\n');
  }
  if (parts.sources) {
    mkdirSync(join(root, "packaging"), { recursive: true });
    copyFileSync(RUN_SOURCES, join(root, "packaging", "run-sources.js"));
    mkdirSync(join(root, "src", "cli"), { recursive: true });
    writeFileSync(join(root, "src", "cli", "run.ts"), 'const args: string[] = process.argv.slice(2);\nconsole.log("sources", args.join(" "));\n');
  }
  return join(root, "bin", "edgeward.js");
}

test("the bin runs the build when there is one, even beside the sources", async () => {
  const r = await exec(process.execPath, [layout("both", { built: true, sources: true }), "policy", "check"]);
  assert.equal(r.stdout, "build policy check\n");
});

test("the published bin loads only the build: never a .ts file", () => {
  assert.doesNotMatch(readFileSync(BIN, "utf8"), /\.ts["']/);
});

test("a checkout without a build runs the sources", async () => {
  const r = await exec(process.execPath, [layout("checkout", { sources: true }), "--version"]);
  assert.equal(r.stdout, "sources --version\n");
});

test("a copy with neither says it was not built", async () => {
  const bin = layout("empty", {});
  const r = await exec(process.execPath, [bin]).then(
    () => assert.fail("exited 0"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `edgeward: this copy has no build: ${join(dir, "empty", "dist", "cli", "run.js")} is missing (npm run build)\n`);
});
