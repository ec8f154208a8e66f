// The published package depends on exactly what its code and the vendored node-llama-cpp import (packaging/build.ts).
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { dependencyProblems, installedVendored, packageEntry, reachableImports } from "../../packaging/build.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "edgeward-deps-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(dir, "t-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

test("package.json lists every package the command line and the vendored node-llama-cpp import, at the ranges they need", async () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  const vendored = await installedVendored();
  assert.deepEqual(dependencyProblems(pkg, [join(ROOT, "src", "cli", "run.ts")], vendored), []);
});

test("reachable imports: relative ones followed (dynamic ones too), type-only ones not, vendored packages entered", () => {
  const root = tree({
    "main.ts": 'import type { T } from "types-only";\nimport { a } from "./a.ts";\nexport const load = () => import("./lazy.ts");\n',
    "a.ts": 'import { x } from "static-dep/sub";\nimport "node:fs";\nimport "fs";\nexport { y } from "re-exported";\nexport const a = 1;\n',
    "lazy.ts": 'import { v } from "vendored-pkg";\nconst gpu = () => import("@scope/optional-gpu");\n',
    "node_modules/vendored-pkg/package.json": JSON.stringify({ name: "vendored-pkg", version: "1.0.0", exports: { ".": { import: "./dist/index.js" } } }),
    "node_modules/vendored-pkg/dist/index.js": 'import chalk from "chalk";\nexport const v = 1;\n',
    "unreached.ts": 'import "never-seen";\n',
  });
  const imports = reachableImports([join(root, "main.ts")], new Map([["vendored-pkg", join(root, "node_modules/vendored-pkg/dist/index.js")]]));
  assert.deepEqual(
    imports.map((i) => `${i.name}:${i.static ? "static" : "dynamic"}:${i.vendored ?? "-"}`),
    ["@scope/optional-gpu:dynamic:-", "chalk:static:vendored-pkg", "re-exported:static:-", "static-dep:static:-"],
  );
});

test("a development-only or missing dependency, and a range that differs from the vendored package's, are problems", () => {
  const root = tree({
    "run.ts": 'import "dev-only";\nimport "nowhere";\nimport "vendored-pkg";\n',
    "vendor/vendored-pkg/package.json": "{}",
    // Its prebuilt binaries: the CPU one listed by edgeward (at the wrong version), the GPU one left out on purpose.
    "vendor/vendored-pkg/index.js": 'import "chalk";\nimport "semver";\nconst gpu = () => import("@scope/gpu");\nconst cpu = () => import("@scope/cpu");\n',
  });
  const vendoredPkg = { name: "vendored-pkg", version: "2.0.0", dependencies: { chalk: "^5.6.2", semver: "^7.7.1" }, optionalDependencies: { "@scope/cpu": "2.0.0", "@scope/gpu": "2.0.0" } };
  const problems = dependencyProblems(
    {
      name: "edgeward", version: "0.1.0",
      dependencies: { chalk: "^5.0.0" },
      optionalDependencies: { "@scope/cpu": "1.9.0" },
      devDependencies: { "dev-only": "^1.0.0", "vendored-pkg": "2.0.0" },
    },
    [join(root, "run.ts")],
    new Map([["vendored-pkg", { entry: join(root, "vendor/vendored-pkg/index.js"), pkg: vendoredPkg }]]),
  );
  assert.deepEqual(problems, [
    '@scope/cpu: edgeward lists "1.9.0", but the vendored vendored-pkg@2.0.0 declares "2.0.0"',
    'chalk: edgeward lists "^5.0.0", but the vendored vendored-pkg@2.0.0 declares "^5.6.2"',
    `dev-only is only a devDependency, yet ${relative(ROOT, join(root, "run.ts"))} imports it`,
    `nowhere is not a dependency, yet ${relative(ROOT, join(root, "run.ts"))} imports it`,
    'semver is not a dependency, yet the vendored vendored-pkg@2.0.0 imports it (add "semver": "^7.7.1")',
  ]);
});

test("a package's import entry: exports conditions, else main", () => {
  assert.equal(packageEntry({ name: "a", version: "1", exports: { ".": { import: "./dist/index.js", types: "./dist/index.d.ts" } } }), "dist/index.js");
  assert.equal(packageEntry({ name: "a", version: "1", exports: "./x.js" }), "x.js");
  assert.equal(packageEntry({ name: "a", version: "1", main: "lib/main.js" }), "lib/main.js");
});
