import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { run } from "../../src/cli/runner.ts";
import { missingBinaryMessage, prebuiltPackages } from "../../src/runners/embedded/prebuilt.ts";
import { writeTinyModel } from "../../src/runners/tiny-model.ts";

const dir = mkdtempSync(join(tmpdir(), "edgeward-prebuilt-"));
const modelPath = join(dir, "tiny.gguf");
before(() => writeTinyModel(modelPath));
after(() => rmSync(dir, { recursive: true, force: true }));

function cliIO() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s), cwd: dir }, out, err };
}

test("the prebuilt package for each platform, architecture and GPU choice", () => {
  assert.deepEqual(prebuiltPackages("linux", "x64", "off"), ["@node-llama-cpp/linux-x64"]);
  assert.deepEqual(prebuiltPackages("linux", "x64", "cuda"), ["@node-llama-cpp/linux-x64-cuda", "@node-llama-cpp/linux-x64-cuda-ext"]);
  assert.deepEqual(prebuiltPackages("linux", "x64", "vulkan"), ["@node-llama-cpp/linux-x64-vulkan"]);
  assert.deepEqual(prebuiltPackages("linux", "arm64", "off"), ["@node-llama-cpp/linux-arm64"]);
  assert.deepEqual(prebuiltPackages("linux", "arm", "off"), ["@node-llama-cpp/linux-armv7l"]);
  assert.deepEqual(prebuiltPackages("darwin", "arm64", "metal"), ["@node-llama-cpp/mac-arm64-metal"]);
  assert.deepEqual(prebuiltPackages("darwin", "arm64", "off"), ["@node-llama-cpp/mac-arm64-metal"]);
  assert.deepEqual(prebuiltPackages("darwin", "x64", "off"), ["@node-llama-cpp/mac-x64"]);
  assert.deepEqual(prebuiltPackages("win32", "x64", "cuda"), ["@node-llama-cpp/win-x64-cuda", "@node-llama-cpp/win-x64-cuda-ext"]);
  assert.equal(prebuiltPackages("linux", "arm64", "cuda"), null);
  assert.equal(prebuiltPackages("linux", "x64", "metal"), null);
  assert.equal(prebuiltPackages("freebsd", "x64", "off"), null);
});

test("the default install carries exactly the CPU prebuilts package.json lists, at node-llama-cpp's version", () => {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { optionalDependencies: Record<string, string> };
  const llama = JSON.parse(readFileSync(new URL("../../node_modules/node-llama-cpp/package.json", import.meta.url), "utf8")) as { version: string };
  const cpu = [["linux", "x64"], ["linux", "arm64"], ["darwin", "arm64"], ["darwin", "x64"]].map(([p, a]) => prebuiltPackages(p!, a!, "off")![0]!);
  assert.deepEqual(Object.keys(pkg.optionalDependencies).sort(), cpu.sort());
  for (const name of cpu) assert.equal(pkg.optionalDependencies[name], llama.version, name);
});

test("a missing binary names the package to install, at node-llama-cpp's version", () => {
  assert.equal(
    missingBinaryMessage("linux", "x64", "cuda", "3.22.1"),
    "no llama.cpp binary for linux-x64 with --gpu cuda: install @node-llama-cpp/linux-x64-cuda@3.22.1 (and @node-llama-cpp/linux-x64-cuda-ext@3.22.1) beside edgeward (docs/install.md)",
  );
  assert.equal(
    missingBinaryMessage("linux", "arm", "off", "3.22.1"),
    "no llama.cpp binary for linux-arm: install @node-llama-cpp/linux-armv7l@3.22.1 beside edgeward (docs/install.md)",
  );
  assert.match(missingBinaryMessage("linux", "arm64", "vulkan", "3.22.1"), /^no prebuilt llama\.cpp binary exists for linux-arm64 with --gpu vulkan; /);
});

test("--gpu takes off, auto, cuda, vulkan or metal", async () => {
  const c = cliIO();
  assert.equal(await run(["--model", modelPath, "--socket", join(dir, "r.sock"), "--gpu", "rocm"], c.io), 2);
  assert.match(c.err.join(""), /^runner: --gpu must be one of off, auto, cuda, vulkan, metal\n/);
});

// The checkout replaces the Linux x64 Vulkan prebuilt with an empty placeholder (package.json overrides), so asking
// for it here is asking for a GPU build that is not installed.
test("--gpu vulkan without the Vulkan build installed fails with the package to install", { skip: process.platform === "linux" && process.arch === "x64" ? false : "the placeholder stands in for the Linux x64 Vulkan build only" }, async () => {
  const c = cliIO();
  assert.equal(await run(["--model", modelPath, "--socket", join(dir, "gpu.sock"), "--gpu", "vulkan"], c.io), 1);
  assert.match(c.err.join(""), /^runner: cannot start: no llama\.cpp binary for linux-x64 with --gpu vulkan: install @node-llama-cpp\/linux-x64-vulkan@\d+\.\d+\.\d+ beside edgeward \(docs\/install\.md\)\n$/);
  assert.deepEqual(c.out, []);
});
