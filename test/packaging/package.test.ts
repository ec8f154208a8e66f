// What `npm pack` puts in the published package: the build, the bin, docs, examples, README and LICENSE — no tests,
// benchmarks, sources or container images.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "edgeward-pack-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function packedFiles(cwd: string): Promise<string[] | null> {
  try {
    const { stdout } = await exec("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd, env: { ...process.env, npm_config_update_notifier: "false" } });
    return (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/** Files a user does not need: tests, benchmarks, sources, tooling, container images. */
const unwanted = (path: string): boolean =>
  /^(src|test|bench|packaging|web|\.ci|dist\/image|node_modules)\//.test(path) || (path.endsWith(".ts") && !path.endsWith(".d.ts")) || /^tsconfig/.test(path);

test("the package's files: the build, bin, docs, examples, README and LICENSE, and nothing else", async (t) => {
  // A stand-in tree with the real package.json: one file wherever the repository may have some.
  const tree = join(dir, "tree");
  const files = [
    "bin/edgeward.js", "dist/cli/run.js", "dist/cli/run.js.map", "dist/build-info.json",
    "dist/gateway/ext-authz/proto/envoy/service/auth/v3/external_auth.proto",
    "dist/vendor/node-llama-cpp/package.json", "dist/vendor/node-llama-cpp/LICENSE", "dist/vendor/node-llama-cpp/dist/index.js",
    "dist/image/edgeward-0.1.0-amd64.oci.tar", "dist/image/edgeward-0.1.0-amd64.cdx.json",
    "docs/install.md", "examples/policy.yaml", "README.md", "LICENSE",
    "src/cli/main.ts", "test/cli/version.test.ts", "bench/run.ts", "packaging/build.ts", "packaging/no-prebuilt/package.json",
    ".ci/run", "tsconfig.json", "tsconfig.build.json", "package-lock.json",
  ];
  for (const f of files) {
    mkdirSync(dirname(join(tree, f)), { recursive: true });
    writeFileSync(join(tree, f), "x\n");
  }
  copyFileSync(join(ROOT, "package.json"), join(tree, "package.json"));
  const packed = await packedFiles(tree);
  if (packed === null) return t.skip("npm is not on PATH");
  assert.deepEqual(packed, [
    "LICENSE", "README.md", "bin/edgeward.js",
    "dist/build-info.json", "dist/cli/run.js", "dist/cli/run.js.map",
    "dist/gateway/ext-authz/proto/envoy/service/auth/v3/external_auth.proto",
    "dist/vendor/node-llama-cpp/LICENSE", "dist/vendor/node-llama-cpp/dist/index.js", "dist/vendor/node-llama-cpp/package.json",
    "docs/install.md", "examples/policy.yaml", "package.json",
  ]);
});

test("the repository packs no tests or sources, and its build when there is one", async (t) => {
  const packed = await packedFiles(ROOT);
  if (packed === null) return t.skip("npm is not on PATH");
  assert.deepEqual(packed.filter(unwanted), []);
  for (const f of ["LICENSE", "README.md", "bin/edgeward.js", "docs/install.md", "examples/policy.yaml"]) assert.ok(packed.includes(f), f);
  if (!existsSync(join(ROOT, "dist", "cli", "run.js"))) return t.skip("no build in dist/ (npm run build)");
  for (const f of ["dist/cli/run.js", "dist/cli/main.js.map", "dist/build-info.json", "dist/vendor/node-llama-cpp/package.json", "dist/gateway/ext-authz/proto/envoy/service/auth/v3/external_auth.proto"]) {
    assert.ok(packed.includes(f), f);
  }
});

test("the package's entry points are the build, never TypeScript", async () => {
  const pkg = (await import("../../package.json", { with: { type: "json" } })).default as { bin: Record<string, string>; exports: Record<string, string> };
  assert.deepEqual(pkg.bin, { edgeward: "bin/edgeward.js" });
  for (const [path, target] of Object.entries(pkg.exports)) {
    assert.match(target, path === "./package.json" ? /^\.\/package\.json$/ : /^\.\/dist\/.*\.js$/, path);
  }
});
