// `npm run image`: the container image of the built package, as an OCI image layout archive, with its CycloneDX SBOM
// and its SLSA provenance (an unsigned DSSE envelope until `edgeward release sign`). No container daemon: the layers
// are written here, from Debian packages (./debian.ts), the Node binary the npm registry serves, and the package
// installed with its production dependencies. Reproducible: the same source, lockfile, Debian package versions and
// SOURCE_DATE_EPOCH (default: the commit's time) give the same image digest. See docs/release.md.
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, copyFile, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix, relative, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { PackageURL } from "packageurl-js";
import { extract } from "tar";
import {
  descriptor,
  digestHex,
  encodeEnvelope,
  encodeStatement,
  imageConfig,
  imageIndex,
  imageManifest,
  imageStatement,
  layoutEntries,
  MEDIA_TYPE,
  ociArchitecture,
  provenancePredicate,
  REF_NAME_ANNOTATION,
  releasePaths,
  SLSA_PROVENANCE_PREDICATE_TYPE,
  tarStream,
  TITLE_LABEL,
  unsignedEnvelope,
  VERSION_LABEL,
  writeLayer,
  type Descriptor,
  type Digest,
  type LayerDigests,
  type LayoutBlob,
  type ResourceDescriptor,
  type TarEntry,
} from "../../src/release/index.ts";
// Not in the module's index: the SBOM builder's library is a development dependency (see src/release/index.ts).
import { buildSbom, type NpmPackage } from "../../src/release/sbom.ts";
import { debianRoot, resolvePackages } from "./debian.ts";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CACHE = join(ROOT, "node_modules", ".cache", "edgeward-image");
const MAX_OUTPUT = 64 * 1024 * 1024;

/** The unprivileged user the image runs as (distroless' "nonroot"). */
export const IMAGE_UID = 65532;
/** Where the package is installed in the image, and the one directory it writes to. */
export const APP_DIR = "usr/lib/edgeward";
export const STATE_DIR = "var/lib/edgeward";

let started = Date.now();
function log(step: string): void {
  process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${step}\n`);
}

async function sh(command: string, args: readonly string[], cwd = ROOT): Promise<string> {
  try {
    const { stdout } = await run(command, args, { cwd, maxBuffer: MAX_OUTPUT, env: { ...process.env, npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false" } });
    return stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`${command} ${args.join(" ")} failed: ${stderr.trim().split("\n").slice(-5).join("\n") || (error as Error).message}`);
  }
}

/** Runs a command with its output shown (npm run build): a long step should not look hung. */
function visible(command: string, args: readonly string[], cwd = ROOT): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", process.stderr, process.stderr] });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolvePromise() : reject(new Error(`${command} ${args.join(" ")} exited with ${code}`))));
  });
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash("sha256");
    createReadStream(path).on("data", (c) => hash.update(c)).on("end", () => resolvePromise(hash.digest("hex"))).on("error", reject);
  });
}

/** npm's integrity ("sha512-<base64>") as an in-toto digest ({ sha512: hex }). */
function integrityDigest(integrity: string): Record<string, string> {
  const match = /^(sha\d+)-([A-Za-z0-9+/=]+)$/.exec(integrity);
  if (match === null) throw new Error(`unexpected integrity ${integrity}`);
  return { [match[1]!]: Buffer.from(match[2]!, "base64").toString("hex") };
}

interface Source {
  commit: string | null;
  remote: string | null;
  dirty: boolean;
  commitTime: number | null;
}

async function gitSource(): Promise<Source> {
  const git = async (...args: string[]): Promise<string | null> => (await sh("git", args).catch(() => null))?.trim() || null;
  const commit = await git("rev-parse", "HEAD");
  const remote = await git("config", "--get", "remote.origin.url");
  const status = await git("status", "--porcelain", "--untracked-files=no");
  const time = await git("log", "-1", "--format=%ct");
  return { commit, remote, dirty: status !== null, commitTime: time === null ? null : Number(time) };
}

function sourceDateEpoch(source: Source): number {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env !== undefined && env !== "") {
    if (!/^[0-9]{1,12}$/.test(env)) throw new Error("SOURCE_DATE_EPOCH must be whole seconds since 1970-01-01T00:00:00Z");
    return Number(env);
  }
  if (source.commitTime === null) throw new Error("set SOURCE_DATE_EPOCH: there is no git commit to take the time from");
  return source.commitTime;
}

const owner = (uid = 0): { uid: number; gid: number } => ({ uid, gid: uid });

/** `entries` and a directory entry (root-owned 0755) for each parent they lack, so each layer stands on its own. */
function withParents(entries: readonly TarEntry[]): TarEntry[] {
  const present = new Set(entries.map((e) => e.path));
  const added: TarEntry[] = [];
  for (const { path } of entries) {
    for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) {
      const dir = path.slice(0, i);
      if (present.has(dir)) continue;
      present.add(dir);
      added.push({ type: "directory", path: dir, mode: 0o755, ...owner() });
    }
  }
  return [...added, ...entries];
}

/**
 * Every file under `dir` as layer entries below `prefix`: owned by root, directories 0755, files 0644 or 0755 (the
 * executable bit kept), symbolic links as they are but only to targets inside `dir`.
 */
async function treeEntries(dir: string, prefix: string): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const visit = async (abs: string, rel: string): Promise<void> => {
    for (const name of (await readdir(abs)).sort()) {
      const path = join(abs, name);
      const inImage = posix.join(prefix, rel, name);
      const info = await lstat(path);
      if (info.isSymbolicLink()) {
        const target = await readlink(path);
        const resolved = resolve(abs, target);
        if (target.startsWith("/") || relative(dir, resolved).startsWith("..")) throw new Error(`${inImage} links outside the package (${target})`);
        entries.push({ type: "symlink", path: inImage, target, ...owner() });
      } else if (info.isDirectory()) {
        entries.push({ type: "directory", path: inImage, mode: 0o755, ...owner() });
        await visit(path, posix.join(rel, name));
      } else if (info.isFile()) {
        entries.push({ type: "file", path: inImage, mode: info.mode & 0o111 ? 0o755 : 0o644, size: info.size, body: () => createReadStream(path), ...owner() });
      } else {
        throw new Error(`${inImage} is not a file, directory or symbolic link`);
      }
    }
  };
  await visit(dir, "");
  return entries;
}

/** Prebuilt llama.cpp binaries for other architectures (node-llama-cpp installs its neighbours' too). */
async function pruneOtherArchitectures(appDir: string, nodeArch: string): Promise<string[]> {
  const scope = join(appDir, "node_modules", "@node-llama-cpp");
  const names = await readdir(scope).catch(() => [] as string[]);
  const removed = names.filter((n) => n.startsWith("linux-") && !n.startsWith(`linux-${nodeArch}`) && !n.startsWith("linux-" + nodeArch + "-"));
  for (const name of removed) await rm(join(scope, name), { recursive: true, force: true });
  return removed.map((n) => `@node-llama-cpp/${n}`);
}

/** Every npm package installed under `appDir` (each node_modules, scoped or not), with the lockfile's integrity. */
async function npmPackages(appDir: string, prefix: string): Promise<NpmPackage[]> {
  const hidden = JSON.parse(await readFile(join(appDir, "node_modules", ".package-lock.json"), "utf8")) as { packages: Record<string, { integrity?: string }> };
  const found: NpmPackage[] = [];
  const visit = async (modules: string, rel: string): Promise<void> => {
    const names = (await readdir(modules).catch(() => [] as string[])).filter((n) => !n.startsWith(".")).sort();
    for (const name of names) {
      const dirs = name.startsWith("@") ? (await readdir(join(modules, name))).sort().map((n) => `${name}/${n}`) : [name];
      for (const pkgName of dirs) {
        const dir = join(modules, pkgName);
        if ((await lstat(dir)).isSymbolicLink()) continue;
        const packageJson = JSON.parse(await readFile(join(dir, "package.json"), "utf8").catch(() => "null")) as Record<string, unknown> | null;
        if (packageJson === null) continue;
        const lockKey = posix.join(rel, "node_modules", pkgName);
        const integrity = hidden.packages[lockKey]?.integrity;
        found.push({ path: posix.join(prefix, lockKey), packageJson, ...(integrity === undefined ? {} : { integrity }) });
        await visit(join(dir, "node_modules"), lockKey);
      }
    }
  };
  await visit(join(appDir, "node_modules"), "");
  // Packages the build copies into the package itself (dist/build-info.json lists them): in the image, but in no node_modules.
  const info = JSON.parse(await readFile(join(appDir, "dist", "build-info.json"), "utf8").catch(() => "{}")) as { vendored?: { name: string; path: string }[] };
  const lock = JSON.parse(await readFile(join(appDir, "package-lock.json"), "utf8")) as { packages: Record<string, { integrity?: string }> };
  for (const vendored of info.vendored ?? []) {
    const packageJson = JSON.parse(await readFile(join(appDir, vendored.path, "package.json"), "utf8")) as Record<string, unknown>;
    const integrity = lock.packages[`node_modules/${vendored.name}`]?.integrity;
    found.push({ path: posix.join(prefix, vendored.path), packageJson, bundled: true, ...(integrity === undefined ? {} : { integrity }) });
  }
  return found;
}

async function writeAtomically(path: string, bytes: Uint8Array | Readable): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    if (bytes instanceof Readable) await pipeline(bytes, createWriteStream(tmp, { mode: 0o644 }));
    else await writeFile(tmp, bytes, { mode: 0o644 });
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

const ETC_PASSWD = `root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:${IMAGE_UID}:${IMAGE_UID}:nonroot:/${STATE_DIR}:/sbin/nologin
`;
const ETC_GROUP = `root:x:0:
nobody:x:65534:
nonroot:x:${IMAGE_UID}:
`;
const NSSWITCH = `passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
`;

function textFile(path: string, text: string, mode = 0o644): TarEntry {
  const body = Buffer.from(text);
  return { type: "file", path, mode, size: body.length, body, ...owner() };
}

export interface BuildResult {
  image: string;
  sbom: string;
  provenance: string;
  manifestDigest: Digest;
  compressedBytes: number;
  seconds: number;
}

export async function buildImage(outDir = join(ROOT, "dist", "image")): Promise<BuildResult> {
  started = Date.now();
  const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
    name: string; version: string; description?: string; license?: string; bin?: Record<string, string>; scripts?: Record<string, string>;
  };
  const lockfile = await readFile(join(ROOT, "package-lock.json"));
  const lock = JSON.parse(lockfile.toString("utf8")) as { packages: Record<string, { version?: string }> };
  if (process.platform !== "linux") throw new Error("the image is built on Linux, for the architecture of the machine building it");
  const nodeArch = process.arch;
  const architecture = ociArchitecture(nodeArch);
  const source = await gitSource();
  const epoch = sourceDateEpoch(source);
  const created = new Date(epoch * 1000).toISOString().replace(/\.000Z$/, "Z");
  const binPath = pkg.bin?.[pkg.name];
  if (binPath === undefined) throw new Error(`package.json has no bin entry "${pkg.name}"`);
  await mkdir(outDir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), "edgeward-image-"));
  try {
    // 1. The package, as npm would publish it, installed with its production dependencies only.
    if (pkg.scripts?.build !== undefined) {
      log("npm run build");
      await visible("npm", ["run", "build"]);
    }
    log("npm pack");
    const [packed] = JSON.parse(await sh("npm", ["pack", "--json", "--pack-destination", work])) as { filename: string; integrity: string }[];
    const appDir = join(work, "app");
    await mkdir(appDir);
    await extract({ file: join(work, packed!.filename), cwd: appDir, strip: 1 });
    await copyFile(join(ROOT, "package-lock.json"), join(appDir, "package-lock.json"));
    log("npm ci --omit=dev (production dependencies, no install scripts)");
    await sh("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], appDir);
    const pruned = await pruneOtherArchitectures(appDir, nodeArch);

    // 2. Node: the platform binary the npm registry serves, at the version the lockfile's `node` pins.
    const nodeVersion = lock.packages["node_modules/node"]?.version;
    if (nodeVersion === undefined) throw new Error("package-lock.json pins no node version (the `node` development dependency)");
    const nodePackage = `node-linux-${nodeArch}`;
    log(`${nodePackage}@${nodeVersion} from the npm registry`);
    const nodeCache = join(CACHE, "node");
    await mkdir(nodeCache, { recursive: true });
    const [nodePacked] = JSON.parse(await sh("npm", ["pack", "--json", "--pack-destination", nodeCache, `${nodePackage}@${nodeVersion}`], nodeCache)) as { filename: string; integrity: string }[];
    const nodeDir = join(work, "node");
    await mkdir(nodeDir);
    await extract({ file: join(nodeCache, nodePacked!.filename), cwd: nodeDir, strip: 1 }, ["package/bin/node", "package/LICENSE"]);
    const nodeSha256 = await sha256File(join(nodeDir, "bin", "node"));
    await chmod(join(nodeDir, "bin", "node"), 0o755);

    // 3. Debian: the C/C++ runtimes, CA certificates and OS files, unpacked.
    log("Debian packages (apt-get download)");
    const apt = await resolvePackages();
    const debian = await debianRoot(apt, join(CACHE, "debs"));

    // 4. Three layers, least to most often changed: Debian, Node, the application.
    const baseDirs = new Set(debian.entries.filter((e) => e.type === "directory").map((e) => e.path));
    const base = withParents([
      ...debian.entries,
      ...(baseDirs.has("tmp") ? [] : [{ type: "directory", path: "tmp", mode: 0o1777, ...owner() } as TarEntry]),
      { type: "directory", path: STATE_DIR, mode: 0o700, ...owner(IMAGE_UID) },
      textFile("etc/passwd", ETC_PASSWD),
      textFile("etc/group", ETC_GROUP),
      textFile("etc/nsswitch.conf", NSSWITCH),
    ]);
    const nodeFiles: TarEntry[] = [
      { type: "file", path: "usr/bin/node", mode: 0o755, size: (await lstat(join(nodeDir, "bin", "node"))).size, body: () => createReadStream(join(nodeDir, "bin", "node")), ...owner() },
      { type: "file", path: "usr/share/doc/node/LICENSE", mode: 0o644, size: (await lstat(join(nodeDir, "LICENSE"))).size, body: () => createReadStream(join(nodeDir, "LICENSE")), ...owner() },
    ];
    // The image has no /usr/bin/env for the package bin's shebang: this launcher runs it with the image's node.
    const launcher = textFile("usr/bin/edgeward", `#!/usr/bin/node\n// ${pkg.name} in the image: the package's bin, run by the image's Node.\nimport(${JSON.stringify(`/${APP_DIR}/${binPath.replace(/^\.\//, "")}`)});\n`, 0o755);
    const appFiles = [{ type: "directory", path: APP_DIR, mode: 0o755, ...owner() } as TarEntry, ...(await treeEntries(appDir, APP_DIR)), launcher];
    const layers: { entries: TarEntry[]; createdBy: string }[] = [
      { entries: base, createdBy: `debian: ${apt.map((p) => `${p.name}=${p.version}`).join(" ")}` },
      { entries: withParents(nodeFiles), createdBy: `node: ${nodePackage}@${nodeVersion}` },
      { entries: withParents(appFiles), createdBy: `${pkg.name}@${pkg.version} with its production dependencies` },
    ];

    const blobsDir = join(work, "blobs");
    await mkdir(blobsDir);
    const blobs = new Map<string, LayoutBlob>();
    const layerDescriptors: Descriptor[] = [];
    const history: { diffId: Digest; createdBy: string }[] = [];
    for (const [i, layer] of layers.entries()) {
      log(`layer ${i + 1}/${layers.length}: ${layer.createdBy.slice(0, 80)}`);
      const tmp = join(blobsDir, `layer-${i}`);
      const digests: LayerDigests = await writeLayer(layer.entries, epoch, createWriteStream(tmp));
      const hex = digestHex(digests.digest)!;
      await rename(tmp, join(blobsDir, hex));
      blobs.set(hex, { size: digests.size, read: () => createReadStream(join(blobsDir, hex)) });
      layerDescriptors.push({ mediaType: MEDIA_TYPE.layerGzip, digest: digests.digest, size: digests.size });
      history.push({ diffId: digests.diffId, createdBy: layer.createdBy });
    }

    const labels: Record<string, string> = {
      [TITLE_LABEL]: pkg.name,
      [VERSION_LABEL]: pkg.version,
      "org.opencontainers.image.created": created,
    };
    if (pkg.description !== undefined) labels["org.opencontainers.image.description"] = pkg.description;
    if (pkg.license !== undefined) labels["org.opencontainers.image.licenses"] = pkg.license;
    if (source.commit !== null) labels["org.opencontainers.image.revision"] = source.commit;
    if (source.remote !== null) labels["org.opencontainers.image.source"] = source.remote;
    const config = imageConfig({
      created,
      architecture,
      os: "linux",
      user: `${IMAGE_UID}:${IMAGE_UID}`,
      env: ["PATH=/usr/bin", `HOME=/${STATE_DIR}`, "NODE_ENV=production", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
      entrypoint: ["/usr/bin/edgeward"],
      cmd: ["--help"],
      workingDir: `/${STATE_DIR}`,
      volumes: [`/${STATE_DIR}`],
      labels,
      stopSignal: "SIGTERM",
      layers: history,
    });
    const configDescriptor = descriptor(MEDIA_TYPE.config, config);
    blobs.set(digestHex(configDescriptor.digest)!, config);
    const manifest = imageManifest(configDescriptor, layerDescriptors);
    const manifestDescriptor: Descriptor = {
      ...descriptor(MEDIA_TYPE.manifest, manifest, { [REF_NAME_ANNOTATION]: `${pkg.name}:${pkg.version}` }),
      platform: { architecture, os: "linux" },
    };
    blobs.set(digestHex(manifestDescriptor.digest)!, manifest);
    const digest = manifestDescriptor.digest;

    const paths = releasePaths(join(outDir, `${pkg.name}-${pkg.version}-${architecture}.oci.tar`))!;
    log(`writing ${relative(ROOT, paths.image)}`);
    await writeAtomically(paths.image, Readable.from(tarStream(layoutEntries(blobs, imageIndex(manifestDescriptor)), epoch)));
    // Signatures of an earlier build are for another image (or, reproduced, for this one: sign again).
    for (const stale of [paths.release, paths.sbomAttestation, paths.signature, paths.attestations]) await rm(stale, { force: true });

    // 5. The SBOM: every npm package and Debian package in the image, and Node.
    log("SBOM (CycloneDX)");
    const application = { path: APP_DIR, packageJson: JSON.parse(await readFile(join(appDir, "package.json"), "utf8")) as Record<string, unknown> };
    const sbom = buildSbom({
      image: { name: pkg.name, version: pkg.version, architecture, manifestDigest: digest },
      application,
      npm: await npmPackages(appDir, APP_DIR),
      debian: debian.packages,
      node: { version: nodeVersion, packageName: nodePackage, license: "MIT", path: "usr/bin/node", sha256: nodeSha256 },
      timestamp: created,
      tool: { name: `${pkg.name}-image-build`, version: pkg.version },
    });
    await writeAtomically(paths.sbom, Buffer.from(sbom));

    // 6. The provenance: how and from what, as an in-toto statement about the image in a DSSE envelope to sign.
    log("provenance (SLSA v1)");
    const npmVersion = (await sh("npm", ["--version"])).trim();
    const resolvedDependencies: ResourceDescriptor[] = [
      source.commit === null
        ? { name: "source (not a git checkout)", digest: { sha256: createHash("sha256").update(lockfile).digest("hex") } }
        : { ...(source.remote === null ? { name: "source" } : { uri: `git+${source.remote}` }), digest: { gitCommit: source.commit } },
      { name: "package-lock.json", digest: { sha256: createHash("sha256").update(lockfile).digest("hex") } },
      { uri: new PackageURL("npm", null, pkg.name, pkg.version, null, null).toString(), digest: integrityDigest(packed!.integrity) },
      { uri: new PackageURL("npm", null, nodePackage, nodeVersion, null, null).toString(), digest: integrityDigest(nodePacked!.integrity) },
      ...debian.materials,
    ];
    const predicate = provenancePredicate({
      builderId: process.env.EDGEWARD_BUILDER_ID || "https://edgeward.dev/release/builders/npm-run-image",
      builderVersion: { node: process.version, npm: npmVersion },
      externalParameters: {
        source: { ...(source.remote === null ? {} : { uri: source.remote }), ...(source.commit === null ? {} : { commit: source.commit }) },
        version: pkg.version,
        architecture,
        sourceDateEpoch: epoch,
      },
      internalParameters: {
        sourceTreeDirty: source.dirty,
        npmCi: ["--omit=dev", "--ignore-scripts"],
        prunedPackages: pruned,
        debianDistro: debian.distro,
      },
      resolvedDependencies,
      byproducts: [{ name: posix.basename(paths.sbom), digest: { sha256: createHash("sha256").update(sbom).digest("hex") } }],
      ...(process.env.EDGEWARD_BUILD_INVOCATION ? { invocationId: process.env.EDGEWARD_BUILD_INVOCATION } : {}),
    });
    const statement = imageStatement(pkg.name, digest, SLSA_PROVENANCE_PREDICATE_TYPE, predicate);
    await writeAtomically(paths.provenance, encodeEnvelope(unsignedEnvelope(encodeStatement(statement))));

    const compressedBytes = layerDescriptors.reduce((sum, l) => sum + l.size, 0);
    return { image: paths.image, sbom: paths.sbom, provenance: paths.provenance, manifestDigest: digest, compressedBytes, seconds: (Date.now() - started) / 1000 };
  } finally {
    if (process.env.EDGEWARD_IMAGE_KEEP_WORK === undefined) await rm(work, { recursive: true, force: true });
    else log(`work directory kept: ${work}`);
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outArg = process.argv.indexOf("--out");
  const outDir = outArg === -1 ? undefined : resolve(process.argv[outArg + 1] ?? "");
  buildImage(outDir).then((r) => {
    log("done");
    process.stdout.write(
      `${relative(process.cwd(), r.image)}\n` +
      `  digest      ${r.manifestDigest}\n` +
      `  layers      ${(r.compressedBytes / 1e6).toFixed(1)} MB compressed\n` +
      `  sbom        ${relative(process.cwd(), r.sbom)}\n` +
      `  provenance  ${relative(process.cwd(), r.provenance)} (unsigned: edgeward release sign --key KEY ${relative(process.cwd(), r.image)})\n` +
      `  built in    ${r.seconds.toFixed(0)} s\n`,
    );
  }, (error: unknown) => {
    process.stderr.write(`image: ${(error as Error).message}\n`);
    process.exitCode = 1;
  });
}
