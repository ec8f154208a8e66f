// Adds lockfile entries for node-llama-cpp's prebuilt-binary packages that the registry used to write the
// lockfile did not serve (some mirrors lack other platforms' packages). Without them `npm ci` refuses the
// lockfile everywhere; with them, each platform installs its own prebuilt from the registry as usual.
// Run after any `npm install` that rewrites package-lock.json:  node packaging/complete-lockfile.mjs
import { readFileSync, writeFileSync } from "node:fs";

const PLATFORMS = {
  "linux-riscv64": { os: ["linux"], cpu: ["riscv64"], libc: ["glibc"] },
  "mac-arm64-metal": { os: ["darwin"], cpu: ["arm64", "x64"] },
  "mac-x64": { os: ["darwin"], cpu: ["x64"] },
  "win-arm64": { os: ["win32"], cpu: ["arm64", "x64"] },
  "win-x64": { os: ["win32"], cpu: ["x64"] },
  "win-x64-cuda": { os: ["win32"], cpu: ["x64"] },
  "win-x64-cuda-ext": { os: ["win32"], cpu: ["x64"] },
  "win-x64-vulkan": { os: ["win32"], cpu: ["x64"] },
};

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const parent = lock.packages["node_modules/node-llama-cpp"];
let added = 0;
for (const [name, version] of Object.entries(parent.optionalDependencies ?? {})) {
  const key = `node_modules/${name}`;
  if (lock.packages[key]) continue;
  const platform = PLATFORMS[name.replace("@node-llama-cpp/", "")];
  if (!platform) throw new Error(`no platform known for ${name}; add it to PLATFORMS`);
  lock.packages[key] = { version, ...platform, license: "MIT", optional: true, engines: { node: ">=20.0.0" } };
  added++;
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : a > b ? 1 : 0)));
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`package-lock.json: ${added} entr${added === 1 ? "y" : "ies"} added`);
