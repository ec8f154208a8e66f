import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { pathToFileURL } from "node:url";
import pkg from "../../package.json" with { type: "json" };
import { formatVersion, provenance } from "../../src/cli/version.ts";
import { BIN, runCli } from "../support/processes.ts";

const dir = mkdtempSync(join(tmpdir(), "edgeward-version-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const COMMIT = "0123456789abcdef0123456789abcdef01234567";

test("the version line: a build names its commit; the sources say dev", () => {
  assert.equal(formatVersion("1.2.3", { built: true, commit: COMMIT, modified: false }), `edgeward 1.2.3 (commit ${COMMIT})`);
  assert.equal(formatVersion("1.2.3", { built: true, commit: COMMIT, modified: true }), `edgeward 1.2.3 (commit ${COMMIT}, modified)`);
  assert.equal(formatVersion("1.2.3", { built: true, commit: null, modified: false }), "edgeward 1.2.3 (commit unknown)");
  assert.equal(formatVersion("1.2.3", { built: false, commit: COMMIT, modified: true }), `edgeward 1.2.3 (dev, commit ${COMMIT}, modified)`);
  assert.equal(formatVersion("1.2.3", { built: false, commit: null, modified: false }), "edgeward 1.2.3 (dev)");
});

test("a build reads the commit recorded in dist/build-info.json", async () => {
  const built = join(dir, "pkg", "dist");
  mkdirSync(join(built, "cli"), { recursive: true });
  writeFileSync(join(built, "build-info.json"), JSON.stringify({ commit: COMMIT, modified: false, vendored: [] }));
  assert.deepEqual(await provenance(pathToFileURL(join(built, "cli", "version.js")).href), { built: true, commit: COMMIT, modified: false });
});

test("sources outside a git checkout and without a build are dev", async () => {
  mkdirSync(join(dir, "nogit", "src", "cli"), { recursive: true });
  assert.deepEqual(await provenance(pathToFileURL(join(dir, "nogit", "src", "cli", "version.ts")).href), { built: false, commit: null, modified: false });
});

function gitHead(): string | null {
  try {
    return execFileSync("git", ["rev-parse", "--verify", "HEAD"], { cwd: new URL("../..", import.meta.url), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

test("edgeward --version from the sources prints the version and the checkout's commit", async () => {
  const head = gitHead();
  const r = await runCli(["--version"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  if (head === null) assert.equal(r.stdout, `edgeward ${pkg.version} (dev)\n`);
  else assert.match(r.stdout, new RegExp(`^edgeward ${pkg.version.replaceAll(".", "\\.")} \\(dev, commit ${head}(, modified)?\\)\\n$`));
  assert.ok(BIN.endsWith(join("src", "cli", "run.ts")));
});
