// The Debian part of the image: the few packages whose files the image holds (the C and C++ runtimes Node and the
// llama.cpp prebuilt binaries link against, the CA certificates, the OS identity files), fetched with apt and
// unpacked file by file — no maintainer scripts run, and no shell or package manager ends up in the image.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { PackageURL } from "packageurl-js";
import { Parser, type ReadEntry } from "tar";
import type { ResourceDescriptor, TarEntry } from "../../src/release/index.ts";
import type { DebianPackage } from "../../src/release/sbom.ts";
import { copyrightLicenses, parseDeb822 } from "./debian-copyright.ts";

const run = promisify(execFile);
const MAX_OUTPUT = 256 * 1024 * 1024;

/**
 * What the image needs from Debian; their dependencies are added (see NOT_NEEDED). `ldd` on node and on
 * node-llama-cpp's prebuilt llama-addon.node and libggml*.so lists only libc, libm, libstdc++ and libgcc_s.
 */
export const ROOT_PACKAGES = ["base-files", "netbase", "ca-certificates", "libc6", "libgcc-s1", "libstdc++6"] as const;

/** Dependencies left out, and why: only maintainer scripts use them, and none run in the image. */
export const NOT_NEEDED: Readonly<Record<string, string>> = {
  awk: "base-files' postinst",
  mawk: "base-files' postinst",
  openssl: "ca-certificates' postinst (the certificate bundle is made here)",
  debconf: "ca-certificates' postinst",
  "debconf-2.0": "ca-certificates' postinst",
};

/** Parts of the packages the image leaves out: executables (the image runs node only) and documentation. */
function keep(path: string, pkg: string): boolean {
  if (/^(usr\/)?(s?bin|libexec|games)(\/|$)/.test(path)) return /^(usr\/)?s?bin$/.test(path);
  if (path.startsWith("usr/share/doc/")) return path === "usr/share/doc/" + pkg || path === `usr/share/doc/${pkg}/copyright`;
  if (/^usr\/share\/(man|info|lintian|bug|gdb|gcc|locale|bash-completion|menu)(\/|$)/.test(path)) return false;
  return true;
}

/** Merged /usr (as every Debian since 12 is installed): /lib, /lib64, /bin, /sbin are links into /usr. */
const MERGED = ["bin", "lib", "lib64", "sbin"] as const;

function mergedPath(path: string): string {
  for (const top of MERGED) {
    if (path === top || path.startsWith(`${top}/`)) return `usr/${path}`;
  }
  return path;
}

export interface AptPackage {
  name: string;
  version: string;
  architecture: string;
  source?: { name: string; version: string };
  filename: string;
  sha256: string;
  depends: string[];
}

async function aptShow(name: string): Promise<AptPackage> {
  let stdout: string;
  try {
    ({ stdout } = await run("apt-cache", ["show", "--no-all-versions", name], { maxBuffer: MAX_OUTPUT }));
  } catch (error) {
    throw new Error(`apt-cache show ${name} failed: ${(error as { stderr?: string }).stderr?.trim() || (error as Error).message} (run apt-get update?)`);
  }
  const fields = parseDeb822(stdout)[0];
  if (fields === undefined || fields.get("package") !== name) throw new Error(`apt knows no package ${name} (run apt-get update?)`);
  const depends = [fields.get("pre-depends"), fields.get("depends")]
    .filter((d): d is string => d !== undefined)
    .flatMap((d) => d.split(","))
    // The first alternative, without version or architecture qualifiers: what apt would pick here.
    .map((d) => d.split("|")[0]!.trim().split(/[\s(:]/)[0]!)
    .filter((d) => d !== "");
  const source = fields.get("source");
  const version = fields.get("version")!;
  const sourceMatch = source === undefined ? null : /^(\S+)(?:\s+\(([^)]+)\))?$/.exec(source);
  return {
    name,
    version,
    architecture: fields.get("architecture")!,
    ...(sourceMatch === null ? {} : { source: { name: sourceMatch[1]!, version: sourceMatch[2] ?? version } }),
    filename: fields.get("filename")!,
    sha256: fields.get("sha256")!,
    depends,
  };
}

/** The root packages and their dependencies (less NOT_NEEDED), at apt's candidate versions, sorted by name. */
export async function resolvePackages(roots: readonly string[] = ROOT_PACKAGES): Promise<AptPackage[]> {
  const found = new Map<string, AptPackage>();
  const queue = [...roots];
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (found.has(name) || Object.hasOwn(NOT_NEEDED, name)) continue;
    const pkg = await aptShow(name);
    found.set(name, pkg);
    queue.push(...pkg.depends);
  }
  return [...found.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The .deb of a package, from the cache when it holds the same bytes, else downloaded by apt-get and checked. */
export async function fetchDeb(pkg: AptPackage, cacheDir: string): Promise<Buffer> {
  await mkdir(cacheDir, { recursive: true });
  const file = join(cacheDir, pkg.filename.split("/").pop()!);
  const cached = await readFile(file).catch(() => null);
  if (cached !== null && sha256(cached) === pkg.sha256) return cached;
  const staging = join(cacheDir, `.download-${process.pid}`);
  await mkdir(staging, { recursive: true });
  try {
    await run("apt-get", ["download", "-q", `${pkg.name}=${pkg.version}`], { cwd: staging, maxBuffer: MAX_OUTPUT });
  } catch (error) {
    throw new Error(`apt-get download ${pkg.name}=${pkg.version} failed: ${(error as { stderr?: string }).stderr?.trim() || (error as Error).message}`);
  }
  const { stdout } = await run("find", [staging, "-maxdepth", "1", "-name", "*.deb"]);
  const downloaded = stdout.trim().split("\n").filter((l) => l !== "");
  if (downloaded.length !== 1) throw new Error(`apt-get download ${pkg.name} left ${downloaded.length} files`);
  const bytes = await readFile(downloaded[0]!);
  if (sha256(bytes) !== pkg.sha256) throw new Error(`${pkg.name}_${pkg.version}: the download does not match apt's SHA256`);
  await rename(downloaded[0]!, file);
  await run("rmdir", [staging]);
  return bytes;
}

interface DebFile {
  path: string;
  type: "directory" | "file" | "symlink";
  mode: number;
  body?: Buffer;
  target?: string;
}

/** The files of a .deb's data archive (dpkg-deb reads every compression Debian uses), hard links made copies. */
async function debFiles(debPath: string): Promise<DebFile[]> {
  const { stdout } = await run("dpkg-deb", ["--fsys-tarfile", debPath], { encoding: "buffer", maxBuffer: MAX_OUTPUT });
  const files: DebFile[] = [];
  const byPath = new Map<string, DebFile>();
  const strip = (p: string): string => p.replace(/^\.\//, "").replace(/\/$/, "");
  const parser = new Parser({ strict: true });
  parser.on("entry", (entry: ReadEntry) => {
    const path = strip(entry.path);
    // No set-uid or set-gid bit reaches the image.
    const mode = (entry.mode ?? 0o644) & 0o1777;
    if (path === "" || path === ".") return entry.resume();
    if (entry.type === "Directory") {
      files.push({ path, type: "directory", mode });
      return entry.resume();
    }
    if (entry.type === "SymbolicLink") {
      files.push({ path, type: "symlink", mode, target: entry.linkpath! });
      return entry.resume();
    }
    if (entry.type === "Link") {
      const original = byPath.get(strip(entry.linkpath!));
      if (original?.body === undefined) throw new Error(`${debPath}: hard link ${path} to an unknown file`);
      files.push({ path, type: "file", mode, body: original.body });
      return entry.resume();
    }
    if (entry.type !== "File" && entry.type !== "OldFile") throw new Error(`${debPath}: ${path} is a ${entry.type}`);
    const chunks: Buffer[] = [];
    entry.on("data", (c: Buffer) => chunks.push(c));
    entry.on("end", () => {
      const file: DebFile = { path, type: "file", mode, body: Buffer.concat(chunks) };
      files.push(file);
      byPath.set(path, file);
    });
  });
  parser.end(stdout);
  return files;
}

async function debControl(debPath: string): Promise<string> {
  const { stdout } = await run("dpkg-deb", ["--info", debPath, "control"], { maxBuffer: MAX_OUTPUT });
  return stdout;
}

export interface DebianRoot {
  /** the layer's entries: the packages' files (merged /usr), the CA bundle, dpkg's status.d for scanners */
  entries: TarEntry[];
  packages: DebianPackage[];
  /** the .deb files, for the provenance */
  materials: ResourceDescriptor[];
  /** e.g. "debian-12", from the os-release base-files installs */
  distro: string;
}

/** "ID=debian\nVERSION_ID="12"" → "debian-12". */
function distroOf(osRelease: string): string {
  const field = (name: string): string => new RegExp(`^${name}="?([^"\\n]*)"?$`, "m").exec(osRelease)?.[1] ?? "";
  return [field("ID"), field("VERSION_ID")].filter((s) => s !== "").join("-") || "debian";
}

/**
 * Unpacks the packages into one file tree (owned by root, merged /usr, documentation and executables left out),
 * adds what their maintainer scripts would have made — /etc/ssl/certs/ca-certificates.crt — and dpkg's
 * var/lib/dpkg/status.d/<package> control files, the way distroless images let scanners find the packages.
 */
export async function debianRoot(packages: readonly AptPackage[], cacheDir: string): Promise<DebianRoot> {
  const tree = new Map<string, DebFile & { pkg: string }>();
  const info: DebianPackage[] = [];
  const materials: ResourceDescriptor[] = [];
  const copyrights = new Map<string, string>();
  const controls = new Map<string, string>();
  const debSha256 = new Map<string, string>();
  for (const pkg of packages) {
    const deb = await fetchDeb(pkg, cacheDir);
    debSha256.set(pkg.name, sha256(deb));
    const debPath = join(cacheDir, pkg.filename.split("/").pop()!);
    materials.push({ uri: new PackageURL("deb", "debian", pkg.name, pkg.version, { arch: pkg.architecture }, null).toString(), digest: { sha256: sha256(deb) } });
    controls.set(pkg.name, await debControl(debPath));
    for (const file of await debFiles(debPath)) {
      if (!keep(file.path, pkg.name)) continue;
      const path = mergedPath(file.path);
      if (file.path === `usr/share/doc/${pkg.name}/copyright` && file.body !== undefined) copyrights.set(pkg.name, file.body.toString("utf8"));
      const existing = tree.get(path);
      if (existing !== undefined) {
        if (existing.type === "directory" && file.type === "directory") continue;
        throw new Error(`${path} is in both ${existing.pkg} and ${pkg.name}`);
      }
      tree.set(path, { ...file, path, pkg: pkg.name });
    }
  }
  // A package whose doc directory links to another's (libstdc++6 → gcc-12-base) shares that copyright file.
  for (const pkg of packages) {
    if (copyrights.has(pkg.name)) continue;
    const link = tree.get(`usr/share/doc/${pkg.name}`);
    if (link?.type === "symlink") {
      const other = copyrights.get(link.target!.replace(/\/$/, "").split("/").pop()!);
      if (other !== undefined) copyrights.set(pkg.name, other);
    }
  }
  const osRelease = tree.get("usr/lib/os-release")?.body?.toString("utf8") ?? "";
  const distro = distroOf(osRelease);
  for (const pkg of packages) {
    info.push({
      name: pkg.name,
      version: pkg.version,
      architecture: pkg.architecture,
      ...(pkg.source === undefined || (pkg.source.name === pkg.name && pkg.source.version === pkg.version) ? {} : { source: pkg.source }),
      licenses: copyrightLicenses(copyrights.get(pkg.name) ?? ""),
      debSha256: debSha256.get(pkg.name)!,
      distro,
    });
  }

  const root = { uid: 0, gid: 0 };
  const entries: TarEntry[] = [];
  const directories = new Set<string>();
  const addDirectory = (path: string, mode = 0o755): void => {
    const parent = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : null;
    if (parent !== null && !directories.has(parent)) addDirectory(parent);
    if (directories.has(path)) return;
    directories.add(path);
    entries.push({ type: "directory", path, mode, ...root });
  };
  for (const file of [...tree.values()].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    if (file.type === "directory") {
      addDirectory(file.path, file.mode);
      continue;
    }
    addDirectory(file.path.slice(0, file.path.lastIndexOf("/")));
    entries.push(file.type === "symlink"
      ? { type: "symlink", path: file.path, target: file.target!, ...root }
      : { type: "file", path: file.path, mode: file.mode, size: file.body!.length, body: file.body!, ...root });
  }
  for (const top of MERGED) {
    addDirectory(`usr/${top}`);
    entries.push({ type: "symlink", path: top, target: `usr/${top}`, ...root });
  }

  // update-ca-certificates: every certificate the package ships (all are enabled by default), in name order.
  const certificates = [...tree.values()]
    .filter((f) => f.type === "file" && f.path.startsWith("usr/share/ca-certificates/") && f.path.endsWith(".crt"))
    .sort((a, b) => (a.path < b.path ? -1 : 1))
    .map((f) => f.body!.toString("utf8").replace(/\n*$/, "\n"));
  if (certificates.length === 0) throw new Error("ca-certificates holds no certificate");
  const bundle = Buffer.from(certificates.join(""));
  addDirectory("etc/ssl/certs");
  entries.push({ type: "file", path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, size: bundle.length, body: bundle, ...root });

  addDirectory("var/lib/dpkg/status.d");
  for (const pkg of packages) {
    const control = Buffer.from(controls.get(pkg.name)!.replace(/\n*$/, "\n"));
    entries.push({ type: "file", path: `var/lib/dpkg/status.d/${pkg.name}`, mode: 0o644, size: control.length, body: control, ...root });
  }
  return { entries, packages: info, materials, distro };
}
