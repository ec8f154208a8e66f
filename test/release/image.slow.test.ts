// The container image, built for real (`npm run image`, twice) and run: reproducible, it answers an allowed request
// over mTLS with its own runner and tiny model, and `release verify` passes on it — then fails for each tampering.
// Slow (a few minutes: two builds). It needs Linux, apt with package lists, dpkg-deb and npm with the registry
// reachable; running the image needs root and a working podman (else chroot and unshare). CI installs them.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { checkLayout, digestHex, ociArchitecture, readLayoutArchive, releasePaths } from "../../src/release/index.ts";
import { IMAGE_UID } from "../../packaging/image/build.ts";
import { atExit, runCli, spawnChild } from "../support/processes.ts";
import { makeRelease } from "../support/release-factory.ts";
import { waitFor } from "../support/wait.ts";

const exec = promisify(execFile);
const EPOCH = "1795392000";
const MINUTE = 60_000;

async function works(command: string, args: string[]): Promise<boolean> {
  try {
    await exec(command, args, { timeout: 60_000 });
    return true;
  } catch {
    return false;
  }
}

async function missingPrerequisite(): Promise<string | false> {
  if (process.platform !== "linux") return "the image is built on Linux";
  if (!(await works("dpkg-deb", ["--version"]))) return "dpkg-deb is missing (a Debian or Ubuntu machine builds the image)";
  if (!(await works("apt-cache", ["show", "--no-all-versions", "libc6"]))) return "apt has no package lists (run apt-get update)";
  if (!(await works("npm", ["--version"]))) return "npm is missing";
  return false;
}

const skip = await missingPrerequisite();

/** How the image is run: a working rootful podman (trying runc where crun cannot), else chroot in new namespaces. */
interface Sandbox {
  how: string;
  /** runs `edgeward ARGS` in the image with `state` at /var/lib/edgeward */
  run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** starts `edgeward ARGS` in the image, and resolves once its output matches `ready` */
  start(name: string, args: string[], ready: RegExp): Promise<void>;
  /** runs the image's node on a script in the state directory, in the network of the started `name` */
  node(name: string, script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  close(): Promise<void>;
}

async function settle(promise: Promise<{ stdout: string; stderr: string }>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    return { code: 0, ...(await promise) };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? String(error) };
  }
}

async function podmanSandbox(archive: string, state: string): Promise<Sandbox | string> {
  if (!(await works("podman", ["--version"]))) return "podman is not installed";
  const loaded = await settle(exec("podman", ["load", "-i", archive], { timeout: 5 * MINUTE }));
  const image = /Loaded image(?:\(s\))?: (\S+)/.exec(loaded.stdout)?.[1];
  if (image === undefined) return `podman load failed: ${loaded.stderr.trim().split("\n").at(-1)}`;
  const names = new Set<string>();
  const cleanup = (): void => {
    for (const name of names) {
      try {
        execFileSync("podman", ["rm", "-f", name], { stdio: "ignore" });
      } catch {
        // already gone
      }
    }
  };
  const unregister = atExit(cleanup);
  // Conservative limits: a machine that cannot raise RLIMIT_NOFILE/NPROC to podman's defaults can still lower them.
  const limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
  let runtime: string[] | null = null;
  for (const candidate of [[], ["--runtime", "runc"]]) {
    const probe = await settle(exec("podman", [...candidate, "run", "--rm", "--network", "none", ...limits, image, "--version"], { timeout: 2 * MINUTE }));
    if (probe.code === 0 && probe.stdout.startsWith("edgeward ")) {
      runtime = candidate;
      break;
    }
  }
  if (runtime === null) return "podman cannot run containers here";
  const common = (name: string) => ["--name", name, "--network", "none", "--read-only", ...limits, "-v", `${state}:/var/lib/edgeward`];
  return {
    how: `podman${runtime.length > 0 ? ` (${runtime.join(" ")})` : ""}`,
    run: (args) => {
      const name = `edgeward-test-${process.pid}-${names.size}`;
      names.add(name);
      return settle(exec("podman", [...runtime, "run", "--rm", ...common(name), image, ...args], { timeout: 2 * MINUTE }));
    },
    start: async (name, args, ready) => {
      const full = `${name}-${process.pid}`;
      names.add(full);
      await exec("podman", [...runtime, "run", "-d", ...common(full), image, ...args], { timeout: MINUTE });
      await waitFor(`${name} to start`, async () => {
        const logs = await settle(exec("podman", ["logs", full]));
        const status = (await settle(exec("podman", ["inspect", "-f", "{{.State.Status}}", full]))).stdout.trim();
        if (status === "exited") throw new Error(`${name} exited: ${logs.stdout}${logs.stderr}`);
        return ready.test(logs.stdout + logs.stderr);
      }, 2 * MINUTE, 200);
    },
    node: (name, script, args) => settle(exec("podman", ["exec", `${name}-${process.pid}`, "/usr/bin/node", `/var/lib/edgeward/${script}`, ...args], { timeout: MINUTE })),
    close: async () => {
      cleanup();
      unregister();
      await settle(exec("podman", ["rmi", "-f", image]));
    },
  };
}

/** The layers unpacked into a directory, run with chroot as 65532 in new mount and PID namespaces, the root read-only. */
async function chrootSandbox(archive: string, state: string, work: string): Promise<Sandbox | string> {
  for (const tool of ["unshare", "chroot", "mount"]) {
    if (!(await works("sh", ["-c", `command -v ${tool}`]))) return `${tool} is missing`;
  }
  const rootfs = join(work, "rootfs");
  mkdirSync(rootfs);
  const layout = checkLayout(await readLayoutArchive(archive));
  const blobs = join(work, "layout");
  mkdirSync(blobs);
  await exec("tar", ["-xf", archive, "-C", blobs]);
  for (const layer of layout.manifest.layers) {
    await exec("tar", ["--same-owner", "-xzf", join(blobs, "blobs", "sha256", digestHex(layer.digest)!), "-C", rootfs]);
  }
  mkdirSync(join(rootfs, "proc"), { recursive: true });
  mkdirSync(join(rootfs, "dev"), { recursive: true });
  // The root first (read-only), then what is mounted on it: a bind mount of the root would hide earlier ones.
  const script = `set -e
mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"
mount --rbind /dev "$1/dev"
mount --bind "$2" "$1/var/lib/edgeward"
mount -t proc proc "$1/proc"
root="$1"; shift 2
exec chroot --userspec=${IMAGE_UID}:${IMAGE_UID} "$root" "$@"`;
  const env = { PATH: "/usr/bin:/usr/sbin:/bin:/sbin", HOME: "/var/lib/edgeward", NODE_ENV: "production" };
  const argv = (command: string[]) => ["--mount", "--pid", "--fork", "--kill-child", "--", "sh", "-c", script, "sh", rootfs, state, ...command];
  const started = new Map<string, ReturnType<typeof spawnChild>>();
  return {
    how: "chroot (unshare --mount --pid, read-only root, uid 65532)",
    run: (args) => settle(exec("unshare", argv(["/usr/bin/edgeward", ...args]), { env, timeout: 2 * MINUTE })),
    start: async (name, args, ready) => {
      const child = spawnChild("unshare", argv(["/usr/bin/edgeward", ...args]), { env, stdio: ["ignore", "pipe", "pipe"] });
      started.set(name, child);
      let output = "";
      child.stdout!.on("data", (d) => (output += d));
      child.stderr!.on("data", (d) => (output += d));
      await waitFor(`${name} to start`, () => {
        if (child.exitCode !== null) throw new Error(`${name} exited: ${output}`);
        return ready.test(output);
      }, 2 * MINUTE, 200);
    },
    node: (_name, script, args) => settle(exec("unshare", argv(["/usr/bin/node", `/var/lib/edgeward/${script}`, ...args]), { env, timeout: MINUTE })),
    close: async () => {
      for (const child of started.values()) child.kill("SIGKILL");
    },
  };
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** What a copy of the checkout leaves out: git, installed and built files, local state. */
const NOT_COPIED = new Set([".git", "node_modules", "dist", ".edgeward", ".scratch"]);

interface Built {
  image: string;
  sbom: string;
  provenance: string;
  manifestDigest: string;
  output: string;
  seconds: number;
}

/** `npm run image --out DIR` in `checkout`, as a process of its own; what it wrote and the digest it printed. */
async function build(checkout: string, outDir: string): Promise<Built> {
  const started = Date.now();
  const { stdout, stderr } = await exec(process.execPath, [join(checkout, "packaging", "image", "build.ts"), "--out", outDir], {
    cwd: checkout, env: { ...process.env, SOURCE_DATE_EPOCH: EPOCH }, maxBuffer: 64 * 1024 * 1024, timeout: 10 * MINUTE,
  });
  const digest = /digest\s+(sha256:[0-9a-f]{64})/.exec(stdout)?.[1];
  assert.ok(digest !== undefined, `no digest in the build's output:\n${stdout}\n${stderr}`);
  const pkg = JSON.parse(readFileSync(join(checkout, "package.json"), "utf8")) as { name: string; version: string };
  const paths = releasePaths(join(outDir, `${pkg.name}-${pkg.version}-${ociArchitecture(process.arch)}.oci.tar`))!;
  return { image: paths.image, sbom: paths.sbom, provenance: paths.provenance, manifestDigest: digest, output: stdout, seconds: (Date.now() - started) / 1000 };
}

const CLIENT = `import { request } from "node:https";
import { readFileSync } from "node:fs";
const [port, body] = process.argv.slice(2);
const dir = "/var/lib/edgeward/";
const req = request({ host: "127.0.0.1", port: Number(port), servername: "localhost", path: "/v1/chat/completions", method: "POST",
  ca: readFileSync(dir + "ca/ca.pem"), cert: readFileSync(dir + "client.pem"), key: readFileSync(dir + "client.key"),
  headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
  let text = "";
  res.on("data", (c) => (text += c));
  res.on("end", () => console.log(JSON.stringify({ status: res.statusCode, body: text })));
});
req.on("error", (e) => { console.error(e.message); process.exitCode = 1; });
req.end(body);
`;

describe("the container image", { skip, timeout: 30 * MINUTE }, () => {
  let work: string;
  let first: Built;
  let second: Built;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "edgeward-image-test-"));
    // The build runs `npm run build`, which rewrites dist/: on a copy of the checkout, so that the tests running beside
    // this one (which start bin/edgeward.js, and so dist/ when it exists) never see a half-written build.
    const checkout = join(work, "checkout");
    cpSync(ROOT, checkout, { recursive: true, filter: (src) => !NOT_COPIED.has(basename(src)) || src === ROOT });
    symlinkSync(join(ROOT, "node_modules"), join(checkout, "node_modules"));
    first = await build(checkout, join(work, "a"));
    second = await build(checkout, join(work, "b"));
  }, { timeout: 20 * MINUTE });

  after(() => {
    rmSync(work, { recursive: true, force: true });
  });

  test("two builds with the same SOURCE_DATE_EPOCH give the same image, byte for byte", () => {
    assert.equal(second.manifestDigest, first.manifestDigest);
    assert.deepEqual(readFileSync(second.image), readFileSync(first.image));
    assert.deepEqual(readFileSync(second.sbom), readFileSync(first.sbom));
    process.stderr.write(`# image ${first.manifestDigest}, ${/layers\s+(.*)/.exec(first.output)?.[1] ?? "?"}, built in ${first.seconds.toFixed(0)} s\n`);
  });

  test("the image runs as 65532 with a read-only root: --version, and a gateway answering an allowed mTLS request from its own runner", { timeout: 10 * MINUTE }, async (t) => {
    if (process.getuid?.() !== 0) return t.skip("running the image needs root (rootful podman, or chroot)");
    const state = join(work, "state");
    mkdirSync(state);
    const ca = join(state, "ca");
    await initDevCa({ dir: ca, trustDomain: "example.org" });
    await issueSvid({ dir: ca, spiffeId: "spiffe://example.org/ns/edge/sa/gateway", out: join(state, "gateway"), dns: ["localhost"], ip: ["127.0.0.1"] });
    await issueSvid({ dir: ca, spiffeId: "spiffe://example.org/ns/kiosk/sa/assistant", out: join(state, "client") });
    copyFileSync(new URL("../../examples/policy.yaml", import.meta.url), join(state, "policy.yaml"));
    writeFileSync(join(state, "client.mjs"), CLIENT);
    const port = 18443 + (process.pid % 1000);
    writeFileSync(join(state, "edgeward.yaml"), stringify({
      listen: `127.0.0.1:${port}`, admin: `127.0.0.1:${port + 1}`,
      tls: { cert: "gateway.pem", key: "gateway.key" },
      trustBundles: { "example.org": "ca/ca.pem" },
      policy: "policy.yaml",
      runners: [{ name: "embedded", url: "unix:/var/lib/edgeward/runner.sock", models: ["tiny"] }],
      decisionLog: "data/decisions.log",
      limits: { maxTokens: 16 },
    }));
    execFileSync("chown", ["-R", `${IMAGE_UID}:${IMAGE_UID}`, state]);

    // EDGEWARD_IMAGE_SANDBOX=chroot tries the fallback even where podman works.
    let sandbox = process.env.EDGEWARD_IMAGE_SANDBOX === "chroot" ? "podman not tried (EDGEWARD_IMAGE_SANDBOX=chroot)" : await podmanSandbox(first.image, state);
    if (typeof sandbox === "string") {
      const why = sandbox;
      sandbox = await chrootSandbox(first.image, state, work);
      if (typeof sandbox === "string") return t.skip(`cannot run the image: ${why}; ${sandbox}`);
    }
    try {
      process.stderr.write(`# running the image with ${sandbox.how}\n`);
      const version = await sandbox.run(["--version"]);
      assert.equal(version.code, 0, version.stderr);
      assert.match(version.stdout, /^edgeward 0\.1\.0\b/);
      const model = await sandbox.run(["model", "tiny", "--out", "/var/lib/edgeward/tiny.gguf"]);
      assert.equal(model.code, 0, model.stderr);
      await sandbox.start("runner", ["runner", "--model", "/var/lib/edgeward/tiny.gguf", "--socket", "/var/lib/edgeward/runner.sock", "--name", "tiny", "--threads", "1"], /listening on unix:/);
      await sandbox.start("gateway", ["serve", "--config", "/var/lib/edgeward/edgeward.yaml"], /gateway listening on https:/);
      const body = JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "hello" }], max_tokens: 4 });
      const answer = await sandbox.node("gateway", "client.mjs", [String(port), body]);
      assert.equal(answer.code, 0, answer.stderr);
      const { status, body: text } = JSON.parse(answer.stdout) as { status: number; body: string };
      assert.equal(status, 200, text);
      assert.equal(JSON.parse(text).object, "chat.completion");
      const log = readFileSync(join(state, "data", "decisions.log"), "utf8");
      assert.match(log, /"principal":"spiffe:\/\/example\.org\/ns\/kiosk\/sa\/assistant".*"decision":"ALLOW"/);
    } finally {
      await sandbox.close();
    }
  });

  test("release verify passes on the signed image, then names each tampering", { timeout: 10 * MINUTE }, async () => {
    const dir = join(work, "release");
    mkdirSync(dir);
    const paths = releasePaths(join(dir, first.image.split("/").pop()!))!;
    for (const [from, to] of [[first.image, paths.image], [first.sbom, paths.sbom], [first.provenance, paths.provenance]] as const) copyFileSync(from, to);
    for (const name of ["release", "other"]) assert.equal((await runCli(["bundle", "keygen", "--out", name], { cwd: dir })).code, 0);
    const signed = await runCli(["release", "sign", paths.image, "--key", "release.key", "--repository", "registry.example.org/edgeward"], { cwd: dir, timeoutMs: 5 * MINUTE });
    assert.equal(signed.code, 0, signed.stderr);
    const verify = (image = paths.image, pub = "release.pub") => runCli(["release", "verify", image, "--pub", pub], { cwd: dir, timeoutMs: 5 * MINUTE });
    const ok = await verify();
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`image +${first.manifestDigest}`));

    const failsWith = async (check: RegExp, image = paths.image, pub = "release.pub") => {
      const r = await verify(image, pub);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, check);
    };
    const copy = (name: string): string => {
      const target = releasePaths(join(dir, `${name}.oci.tar`))!;
      for (const key of ["image", "sbom", "provenance", "release", "sbomAttestation", "signature", "attestations"] as const) cpSync(paths[key], target[key]);
      return target.image;
    };

    // A layer's bytes: one byte flipped inside the largest blob.
    const layer = copy("layer");
    const bytes = readFileSync(layer);
    const biggest = checkLayout(await readLayoutArchive(paths.image)).manifest.layers.reduce((a, b) => (b.size > a.size ? b : a));
    const at = bytes.indexOf(Buffer.from(`blobs/sha256/${digestHex(biggest.digest)}`)) + 512 + Math.floor(biggest.size / 2);
    bytes[at]! ^= 0x01;
    writeFileSync(layer, bytes);
    await failsWith(/^release verify: blob-digest: layer \d sha256:[0-9a-f]{64} was altered/, layer);

    await failsWith(/^release verify: unknown-key: /, paths.image, "other.pub");

    const missing = copy("missing");
    rmSync(releasePaths(missing)!.release);
    await failsWith(/^release verify: signature-missing: the release statement is missing/, missing);

    const sbom = copy("sbom");
    const sbomPath = releasePaths(sbom)!.sbom;
    writeFileSync(sbomPath, readFileSync(sbomPath, "utf8").replace(/"version": "7\./, '"version": "6.'));
    await failsWith(/^release verify: sbom-mismatch: /, sbom);

    // The signatures of another image (signed with the same key), next to this one.
    const elsewhere = await makeRelease();
    const otherDir = join(dir, "elsewhere");
    mkdirSync(otherDir);
    const otherPaths = releasePaths(join(otherDir, "small.oci.tar"))!;
    writeFileSync(otherPaths.image, elsewhere.archive);
    writeFileSync(otherPaths.sbom, elsewhere.sbom);
    writeFileSync(otherPaths.provenance, elsewhere.provenance);
    const signedOther = await runCli(["release", "sign", otherPaths.image, "--key", join(dir, "release.key")], { cwd: dir });
    assert.equal(signedOther.code, 0, signedOther.stderr);
    const swapped = copy("swapped");
    const swappedPaths = releasePaths(swapped)!;
    for (const key of ["sbom", "provenance", "release", "sbomAttestation", "signature", "attestations"] as const) cpSync(otherPaths[key], swappedPaths[key]);
    await failsWith(new RegExp(`^release verify: digest-mismatch: the release statement is about ${elsewhere.digest}, not the image ${first.manifestDigest}`), swapped);
  });
});
