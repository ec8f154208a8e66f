// `npm run build`: the program as it is published, in dist/ — src/ compiled to JavaScript (with source maps), the
// files the code reads at run time copied beside it, node-llama-cpp's JavaScript vendored into dist/vendor/, and the
// commit it was built from (dist/build-info.json). The bin and the package exports run this; development runs src/.
//
// Why node-llama-cpp is vendored rather than depended on: its package lists every prebuilt llama.cpp binary as an
// optional dependency, and a consumer's npm installs all that match the machine — on Linux x64 the CUDA and Vulkan
// builds too, about 600 MB. Overrides apply only to the project that declares them, never to a package's consumers.
// So the published package carries node-llama-cpp's JavaScript, depends on what that JavaScript imports, and lists
// the CPU prebuilts itself as optional dependencies (each restricted by os/cpu); GPU builds are an opt-in
// (docs/install.md). dependencyProblems() keeps the dependency lists honest at every build.
import { execFileSync, spawnSync } from "node:child_process";
import { builtinModules } from "node:module";
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { dirname, join, posix, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Packages whose JavaScript the build copies into dist/vendor/<name>/ instead of depending on them. */
export const VENDORED = ["node-llama-cpp"] as const;

/**
 * Packages of which the build copies only the modules one entry needs into dist/vendor/<name>/ (with the package's
 * package.json and LICENSE): gpt-tokenizer ships every OpenAI encoding in three forms (about 30 MB); the gateway uses
 * one (cl100k_base, about 1.2 MB of CommonJS). src/policy/tokens.ts loads the copy when it is there.
 */
export const PARTLY_VENDORED = [{ name: "gpt-tokenizer", entry: "gpt-tokenizer/encoding/cl100k_base" }] as const;

/** What dist/build-info.json holds; src/cli/version.ts reads it. */
export interface BuildInfo {
  commit: string | null;
  /** True when the working tree differed from the commit (tracked files only). */
  modified: boolean;
  vendored: { name: string; version: string; license: string; path: string }[];
}

/** The container image build (packaging/image) writes its outputs under dist/image; a build leaves them alone. */
const NOT_OURS = new Set(["image"]);

/** The files of a vendored package the build copies: what runs — not types, source maps or llama.cpp's sources. */
function vendoredFileWanted(rel: string): boolean {
  const path = rel.split(sep).join("/");
  if (/\.(d\.ts|map)$/.test(path)) return false;
  // llama.cpp's source, as a git bundle (34 MB): only a build from source reads it, and Edgeward never builds.
  if (path === "llama/gitRelease.bundle") return false;
  return /^(package\.json|LICENSE|dist\/|llama\/|bins\/)/.test(path);
}

interface PackageJson {
  name: string;
  version: string;
  license?: string;
  exports?: unknown;
  main?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

const readJson = async <T>(path: string): Promise<T> => JSON.parse(await readFile(path, "utf8")) as T;

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(relative(dir, join(entry.parentPath, entry.name)));
  }
  return out.sort();
}

/** The file a package's "." export (or main) names for `import`. */
export function packageEntry(pkg: PackageJson): string {
  let target: unknown = pkg.exports;
  if (typeof target === "object" && target !== null && "." in target) target = (target as Record<string, unknown>)["."];
  while (typeof target === "object" && target !== null) {
    const conditions = target as Record<string, unknown>;
    target = conditions.import ?? conditions.node ?? conditions.default;
  }
  const entry = typeof target === "string" ? target : pkg.main ?? "index.js";
  return entry.replace(/^\.\//, "");
}

const BUILTINS = new Set(builtinModules);
const isBuiltin = (specifier: string): boolean => specifier.startsWith("node:") || BUILTINS.has(specifier.split("/")[0]!);
const packageName = (specifier: string): string => specifier.split("/").slice(0, specifier.startsWith("@") ? 2 : 1).join("/");

export interface BareImport {
  /** The package a bare specifier names. */
  name: string;
  /** False for a dynamic import(): loaded only when that code runs. */
  static: boolean;
  /** The vendored package whose code imports it; undefined for our own code. */
  vendored?: string;
  /** A file that imports it (the first found). */
  from: string;
}

/**
 * The packages the code reachable from `entries` imports: relative imports are followed (static ones and dynamic
 * ones with a literal specifier — the CLI loads each command that way), type-only imports are not, and imports of a
 * vendored package continue inside it (`vendored` maps its name to its entry file). Works on src/ (.ts) and dist/ alike.
 */
export function reachableImports(entries: readonly string[], vendored: ReadonlyMap<string, string> = new Map()): BareImport[] {
  const roots = [...vendored].map(([name, entry]) => ({ name, dir: packageRoot(entry) + sep }));
  const found = new Map<string, BareImport>();
  const seen = new Set<string>();
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const owner = roots.find((r) => file.startsWith(r.dir))?.name;
    const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, false, file.endsWith(".ts") ? ts.ScriptKind.TS : ts.ScriptKind.JS);
    const visit = (specifier: string, isStatic: boolean): void => {
      if (specifier.startsWith(".") || specifier.startsWith("/")) {
        let target = resolve(dirname(file), specifier);
        if (existsSync(target) && statSync(target).isDirectory()) target = join(target, "index.js");
        if (!target.endsWith(".json")) queue.push(target);
        return;
      }
      if (isBuiltin(specifier)) return;
      const name = packageName(specifier);
      const entry = vendored.get(name);
      if (entry !== undefined) {
        if (specifier !== name) throw new Error(`${file}: "${specifier}": import the vendored package ${name} by its name only`);
        queue.push(entry);
        return;
      }
      const key = `${owner ?? ""}\0${name}`;
      const known = found.get(key);
      if (known === undefined || (isStatic && !known.static)) found.set(key, { name, static: isStatic, ...(owner === undefined ? {} : { vendored: owner }), from: file });
    };
    const walk = (node: ts.Node): void => {
      if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
        const typeOnly = ts.isImportDeclaration(node) ? node.importClause?.isTypeOnly === true : node.isTypeOnly;
        if (!typeOnly) visit(node.moduleSpecifier.text, true);
      } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
        const [arg] = node.arguments;
        if (arg !== undefined && ts.isStringLiteralLike(arg)) visit(arg.text, false);
      }
      ts.forEachChild(node, walk);
    };
    walk(source);
  }
  return [...found.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : (a.vendored ?? "") < (b.vendored ?? "") ? -1 : 1));
}

/**
 * What is wrong with `pkg`'s dependency lists for the code reachable from `entries`, one line per problem: a package
 * imported statically must be a production dependency (a development one is missing from an install); one a vendored
 * package imports must be declared with the vendored package's own range; the vendored package's prebuilt binaries
 * that `pkg` lists must be at the vendored version exactly (node-llama-cpp loads only binaries of its own version).
 */
export function dependencyProblems(pkg: PackageJson, entries: readonly string[], vendored: ReadonlyMap<string, { entry: string; pkg: PackageJson }>): string[] {
  const production = { ...pkg.optionalDependencies, ...pkg.dependencies };
  const problems: string[] = [];
  for (const imported of reachableImports(entries, new Map([...vendored].map(([name, v]) => [name, v.entry])))) {
    const owner = imported.vendored === undefined ? undefined : vendored.get(imported.vendored)!.pkg;
    const wanted = owner?.dependencies?.[imported.name] ?? owner?.optionalDependencies?.[imported.name];
    const declared = production[imported.name];
    const by = owner === undefined ? relative(ROOT, imported.from) : `the vendored ${owner.name}@${owner.version}`;
    if (declared === undefined) {
      // A dynamic import may name what an install does not have on purpose: another platform's or a GPU build.
      if (!imported.static) continue;
      const where = pkg.devDependencies?.[imported.name] !== undefined ? "is only a devDependency" : "is not a dependency";
      problems.push(`${imported.name} ${where}, yet ${by} imports it${wanted === undefined ? "" : ` (add "${imported.name}": "${wanted}")`}`);
    } else if (wanted !== undefined && declared !== wanted) {
      problems.push(`${imported.name}: ${pkg.name} lists "${declared}", but ${by} declares "${wanted}"`);
    }
  }
  return problems;
}

/** The directory holding the package.json of the package that `file` belongs to. */
function packageRoot(file: string): string {
  let dir = dirname(file);
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`${file} is in no package`);
    dir = up;
  }
  return dir;
}

/** The vendored packages as installed in node_modules (the sources of the copy). */
export async function installedVendored(root = ROOT): Promise<Map<string, { dir: string; entry: string; pkg: PackageJson }>> {
  const out = new Map<string, { dir: string; entry: string; pkg: PackageJson }>();
  for (const name of VENDORED) {
    const dir = join(root, "node_modules", name);
    const pkg = await readJson<PackageJson>(join(dir, "package.json"));
    out.set(name, { dir, entry: join(dir, packageEntry(pkg)), pkg });
  }
  return out;
}

function git(args: string[], cwd: string): string | null {
  try {
    return execFileSync("git", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

/** The commit of `dir`'s git checkout, and whether tracked files differ from it; null when it is no checkout. */
export function gitCommit(dir: string): { commit: string; modified: boolean } | null {
  const commit = git(["rev-parse", "--verify", "HEAD"], dir);
  if (commit === null || !/^[0-9a-f]{40,64}$/.test(commit)) return null;
  return { commit, modified: (git(["status", "--porcelain", "--untracked-files=no"], dir) ?? "") !== "" };
}

export interface BuildSummary {
  seconds: number;
  files: number;
  info: BuildInfo;
}

export async function build(root = ROOT, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<BuildSummary> {
  const started = performance.now();
  const dist = join(root, "dist");
  const pkg = await readJson<PackageJson>(join(root, "package.json"));

  // 1. A clean dist/ (but for what the image build keeps there).
  await mkdir(dist, { recursive: true });
  for (const entry of await readdir(dist)) if (!NOT_OURS.has(entry)) await rm(join(dist, entry), { recursive: true, force: true });

  // 2. TypeScript to JavaScript: tsconfig.build.json emits src/**/*.ts as dist/**/*.js with `.js` import specifiers.
  log("tsc -p tsconfig.build.json");
  const tsc = spawnSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
  if (tsc.status !== 0) throw new Error(`tsc failed (exit ${tsc.status ?? tsc.signal})`);

  // 3. What the code reads at run time from beside itself (the ext_authz .proto files, ...): every non-TypeScript file.
  const assets = (await filesUnder(join(root, "src"))).filter((f) => !f.endsWith(".ts"));
  for (const file of assets) {
    await mkdir(dirname(join(dist, file)), { recursive: true });
    await copyFile(join(root, "src", file), join(dist, file));
  }
  log(`${assets.length} run-time files copied from src/`);

  // 4. The vendored packages, and the compiled code pointed at them.
  const vendored = await installedVendored(root);
  const info: BuildInfo = { commit: null, modified: false, vendored: [] };
  for (const [name, v] of vendored) {
    const target = join(dist, "vendor", name);
    const files = (await filesUnder(v.dir)).filter(vendoredFileWanted);
    for (const file of files) {
      await mkdir(dirname(join(target, file)), { recursive: true });
      await copyFile(join(v.dir, file), join(target, file));
    }
    info.vendored.push({ name, version: v.pkg.version, license: v.pkg.license ?? "UNKNOWN", path: posix.join("dist", "vendor", name) });
    log(`${name}@${v.pkg.version} vendored (${files.length} files)`);
  }
  for (const { name, entry } of PARTLY_VENDORED) {
    const part = await vendorModulesOf(root, name, entry, join(dist, "vendor", name));
    info.vendored.push({ name, version: part.version, license: part.license, path: posix.join("dist", "vendor", name) });
    log(`${name}@${part.version}: ${part.files} files of ${entry} vendored`);
  }
  const rewritten = await pointAtVendored(dist, [...vendored].map(([name, v]) => ({ name, entry: join(dist, "vendor", name, packageEntry(v.pkg)) })));
  log(`${rewritten} import${rewritten === 1 ? "" : "s"} pointed at dist/vendor/`);
  const byName = reachableImports([join(dist, "cli", "run.js")]).find((i) => vendored.has(i.name));
  if (byName !== undefined) throw new Error(`${relative(root, byName.from)} still imports ${byName.name} by name, which an install does not have`);

  // 5. Every package the shipped code imports is one an install of the package has, at the version it needs.
  const problems = dependencyProblems(pkg, [join(dist, "cli", "run.js")], new Map([...vendored].map(([name, v]) => [name, { entry: join(dist, "vendor", name, packageEntry(v.pkg)), pkg: v.pkg }])));
  if (problems.length > 0) throw new Error(`package.json does not match what dist/ imports:\n  ${problems.join("\n  ")}`);

  // 6. The commit, for `edgeward --version`.
  const source = gitCommit(root);
  if (source !== null) Object.assign(info, source);
  await writeFile(join(dist, "build-info.json"), `${JSON.stringify(info, null, 2)}\n`);

  const files = (await filesUnder(dist)).filter((f) => !f.startsWith(`image${sep}`)).length;
  const seconds = (performance.now() - started) / 1000;
  log(`dist/: ${files} files in ${seconds.toFixed(1)} s (commit ${source === null ? "unknown" : `${source.commit}${source.modified ? ", modified" : ""}`})`);
  return { seconds, files, info };
}

/**
 * Copies the CommonJS modules `entry` loads (as a fresh Node process records them in require.cache), every
 * package.json on their way up (each says its folder's module type) and the package's LICENSE, into `target`.
 */
async function vendorModulesOf(root: string, name: string, entry: string, target: string): Promise<{ version: string; license: string; files: number }> {
  const script = `const r = require("node:module").createRequire(process.argv[1]); r(process.argv[2]); console.log(JSON.stringify(Object.keys(require.cache)));`;
  const loaded = JSON.parse(execFileSync(process.execPath, ["-e", script, join(root, "package.json"), entry], { encoding: "utf8" })) as string[];
  // require.cache holds real paths: node_modules may be a link (a checkout sharing another's).
  const dir = realpathSync(join(root, "node_modules", name));
  const files = new Set<string>(["package.json", "LICENSE"]);
  for (const file of loaded) {
    const rel = relative(dir, file);
    if (rel.startsWith("..")) throw new Error(`${entry} loads ${file}, outside ${name}: vendor that package too`);
    files.add(rel);
    for (let d = dirname(rel); d !== "."; d = dirname(d)) if (existsSync(join(dir, d, "package.json"))) files.add(join(d, "package.json"));
  }
  for (const file of files) {
    await mkdir(dirname(join(target, file)), { recursive: true });
    await copyFile(join(dir, file), join(target, file));
  }
  const pkg = await readJson<PackageJson>(join(dir, "package.json"));
  return { version: pkg.version, license: pkg.license ?? "UNKNOWN", files: files.size };
}

/**
 * Rewrites `import … from "<vendored name>"` (and `import("<name>")`) in the compiled files to the relative path of the
 * vendored copy. The sources keep the package name, so development resolves it in node_modules as usual.
 */
async function pointAtVendored(dist: string, vendored: readonly { name: string; entry: string }[]): Promise<number> {
  let count = 0;
  const vendorDir = join(dist, "vendor") + sep;
  for (const file of await filesUnder(dist)) {
    const path = join(dist, file);
    if (!file.endsWith(".js") || path.startsWith(vendorDir)) continue;
    const text = await readFile(path, "utf8");
    let out = text;
    for (const { name, entry } of vendored) {
      let target = relative(dirname(path), entry).split(sep).join("/");
      if (!target.startsWith(".")) target = `./${target}`;
      const quoted = name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
      out = out.replace(new RegExp(`(\\bfrom\\s*|\\bimport\\s*\\(\\s*|\\bimport\\s+)(["'])${quoted}\\2`, "g"), (_m, lead: string, quote: string) => {
        count++;
        return `${lead}${quote}${target}${quote}`;
      });
    }
    if (out !== text) await writeFile(path, out);
  }
  return count;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    await build();
  } catch (error) {
    process.stderr.write(`build: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
