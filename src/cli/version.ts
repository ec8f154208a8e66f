// `edgeward --version`: the package version and the commit it was built from. A build records the commit in
// dist/build-info.json (packaging/build.ts); the sources, run from a checkout, ask git, and say "dev" either way.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pkg from "../../package.json" with { type: "json" };

const exec = promisify(execFile);

export interface Provenance {
  /** True for the build in dist/, false for the sources. */
  built: boolean;
  commit: string | null;
  /** The tracked files differed from the commit. */
  modified: boolean;
}

/** Where the running code came from; `moduleUrl` is this module's URL (dist/cli/version.js or src/cli/version.ts). */
export async function provenance(moduleUrl: string = import.meta.url): Promise<Provenance> {
  const recorded = await readFile(new URL("../build-info.json", moduleUrl), "utf8").catch(() => null);
  if (recorded !== null) {
    const info = JSON.parse(recorded) as { commit?: unknown; modified?: unknown };
    return { built: true, commit: typeof info.commit === "string" ? info.commit : null, modified: info.modified === true };
  }
  const checkout = fileURLToPath(new URL("../..", moduleUrl));
  const git = async (...args: string[]): Promise<string | null> =>
    exec("git", ["-C", checkout, ...args], { timeout: 5000 }).then((r) => r.stdout.trim(), () => null);
  const commit = await git("rev-parse", "--verify", "HEAD");
  if (commit === null || !/^[0-9a-f]{40,64}$/.test(commit)) return { built: false, commit: null, modified: false };
  return { built: false, commit, modified: ((await git("status", "--porcelain", "--untracked-files=no")) ?? "") !== "" };
}

export function formatVersion(version: string, from: Provenance): string {
  const commit = from.commit === null ? (from.built ? ["commit unknown"] : []) : [`commit ${from.commit}${from.modified ? ", modified" : ""}`];
  return `edgeward ${version} (${[...(from.built ? [] : ["dev"]), ...commit].join(", ")})`;
}

export async function versionLine(): Promise<string> {
  return formatVersion(pkg.version, await provenance());
}
