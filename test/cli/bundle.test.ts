import assert from "node:assert/strict";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { readBundleFiles, sha256Hex } from "../../src/bundle/index.ts";
import { run } from "../../src/cli/bundle.ts";
import { POLICY_YAML } from "../support/bundle-factory.ts";
import { runCli } from "../support/processes.ts";

/** 2026-11-23T00:00:00Z */
const EPOCH = "1795392000";
const KID = /^[A-Za-z0-9_-]{43}$/;

function capture(cwd: string) {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s), cwd }, out, err };
}

describe("edgeward bundle", () => {
  let cwd: string;
  let kid: string;
  let previousEpoch: string | undefined;
  before(async () => {
    cwd = mkdtempSync(join(tmpdir(), "edgeward-cli-bundle-"));
    // The spawned CLI inherits the environment: builds in this file are reproducible.
    previousEpoch = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = EPOCH;
    mkdirSync(join(cwd, "policies", "teams"), { recursive: true });
    writeFileSync(join(cwd, "policies", "policy.yaml"), POLICY_YAML);
    writeFileSync(join(cwd, "policies", "teams", "extra.yml"), "# nothing yet\n");
    writeFileSync(join(cwd, "policies", "revocations.json"), JSON.stringify({ spiffeIds: [{ id: "spiffe://example.org/ns/apps/sa/gone", revokedAt: "2026-11-22T00:00:00Z" }] }));
    const keygen = await runCli(["bundle", "keygen", "--out", "signer"], { cwd });
    assert.equal(keygen.code, 0, keygen.stderr);
    kid = keygen.stdout.trim();
  });
  after(() => {
    if (previousEpoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = previousEpoch;
    rmSync(cwd, { recursive: true, force: true });
  });

  const build = (out: string, extra: string[] = [], dir = "policies") =>
    runCli(["bundle", "build", dir, "--revision", "3", "--valid-for", "24h", "--grace", "6h", "--key", "signer.key", "--out", out, ...extra], { cwd });

  test("keygen writes PREFIX.key (0600) and PREFIX.pub, prints the kid, and never overwrites", async () => {
    assert.match(kid, KID);
    assert.equal(statSync(join(cwd, "signer.key")).mode & 0o777, 0o600);
    assert.equal(statSync(join(cwd, "signer.pub")).mode & 0o777, 0o644);
    const again = await runCli(["bundle", "keygen", "--out", "signer"], { cwd });
    assert.deepEqual(again, { code: 1, stdout: "", stderr: `bundle keygen: key-file: ${join(cwd, "signer.key")} already exists; keys are never overwritten\n` });
  });

  test("build is reproducible under SOURCE_DATE_EPOCH and says what it wrote", async () => {
    const first = await build("one.tar.gz");
    assert.equal(first.code, 0, first.stderr);
    const second = await build("two.tar.gz");
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(readFileSync(join(cwd, "two.tar.gz")), readFileSync(join(cwd, "one.tar.gz")));
    const manifest = (await readBundleFiles(join(cwd, "one.tar.gz"))).get("manifest.json")!;
    assert.equal(first.stdout, [
      `wrote ${join(cwd, "one.tar.gz")}`,
      "  name       policies",
      "  revision   3",
      `  digest     ${sha256Hex(manifest)}`,
      "  valid      2026-11-23T00:00:00Z .. 2026-11-24T00:00:00Z",
      "  files      policy.yaml, revocations.json, teams/extra.yml",
      `  signed by  ${kid}`,
      "",
    ].join("\n"));
    assert.equal(statSync(join(cwd, "one.tar.gz")).mode & 0o777, 0o644);
  });

  test("verify accepts a good bundle and prints its summary", async () => {
    await build("good.tar.gz", ["--name", "edge-policy"]);
    const verified = await runCli(["bundle", "verify", "good.tar.gz", "--pub", "signer.pub", "--at", "2026-11-24T01:00:00Z"], { cwd });
    const manifest = (await readBundleFiles(join(cwd, "good.tar.gz"))).get("manifest.json")!;
    assert.deepEqual(verified, {
      code: 0,
      stderr: "",
      stdout: [
        "ok: edge-policy revision 3",
        `  digest     ${sha256Hex(manifest)}`,
        "  created    2026-11-23T00:00:00Z",
        "  valid      2026-11-23T00:00:00Z .. 2026-11-24T00:00:00Z",
        "  ladder     grace 6h (to 2026-11-24T06:00:00Z), restricted 1d (to 2026-11-25T06:00:00Z), then locked",
        "  stage      grace at 2026-11-24T01:00:00Z",
        `  signed by  ${kid}`,
        "  policies   policy.yaml, teams/extra.yml",
        "  revoked    1 SPIFFE ID, 0 serials",
        "",
      ].join("\n"),
    });
  });

  test("verify exits 1 naming the failed check", async () => {
    await build("checked.tar.gz");
    const other = await runCli(["bundle", "keygen", "--out", "other"], { cwd });
    assert.equal(other.code, 0);
    const verify = (...args: string[]) => runCli(["bundle", "verify", "checked.tar.gz", ...args], { cwd });
    const otherKid = other.stdout.trim();

    const unknown = await verify("--pub", "other.pub");
    assert.deepEqual(unknown, { code: 1, stdout: "", stderr: `bundle verify: unknown-key: no signature is by a trusted key (signed by ${kid}; 1 key trusted)\n` });
    assert.equal((await verify("--pub", "other.pub", "--pub", "signer.pub", "--at", "2026-11-23T12:00:00Z")).code, 0, `trusting ${otherKid} as well`);

    const expired = await verify("--pub", "signer.pub", "--require-fresh", "--at", "2026-11-24T00:00:00Z");
    assert.deepEqual(expired, { code: 1, stdout: "", stderr: "bundle verify: expired: the bundle expired at 2026-11-24T00:00:00Z\n" });
    const early = await verify("--pub", "signer.pub", "--at", "2026-11-22T23:59:59Z");
    assert.equal(early.stderr, "bundle verify: not-yet-valid: the bundle is not valid before 2026-11-23T00:00:00Z\n");
    const rollback = await verify("--pub", "signer.pub", "--at", "2026-11-23T12:00:00Z", "--active-revision", "4");
    assert.equal(rollback.stderr, "bundle verify: rollback: revision 3 is older than the active revision 4\n");
    const reused = await verify("--pub", "signer.pub", "--at", "2026-11-23T12:00:00Z", "--active-revision", "3");
    assert.equal(reused.stderr, "bundle verify: revision-reused: revision 3 is the active revision but a different manifest; publish a higher revision\n");
    const digest = sha256Hex((await readBundleFiles(join(cwd, "checked.tar.gz"))).get("manifest.json")!);
    assert.equal((await verify("--pub", "signer.pub", "--at", "2026-11-23T12:00:00Z", "--active-revision", "3", "--active-digest", digest)).code, 0);
  });

  test("verify and inspect read a directory bundle, and tampering with it is caught", async () => {
    await build("dir.tar.gz");
    const files = await readBundleFiles(join(cwd, "dir.tar.gz"));
    for (const [path, data] of files) {
      mkdirSync(dirname(join(cwd, "unpacked", path)), { recursive: true });
      writeFileSync(join(cwd, "unpacked", path), data);
    }
    const args = ["--pub", "signer.pub", "--at", "2026-11-23T12:00:00Z"];
    assert.equal((await runCli(["bundle", "verify", "unpacked", ...args], { cwd })).code, 0);
    writeFileSync(join(cwd, "unpacked", "policy.yaml"), `${POLICY_YAML}# widened by hand\n`);
    assert.deepEqual(await runCli(["bundle", "verify", "unpacked", ...args], { cwd }), {
      code: 1, stdout: "", stderr: "bundle verify: file-changed: policy.yaml does not match its digest in the manifest\n",
    });
    const inspected = await runCli(["bundle", "inspect", "unpacked"], { cwd });
    assert.equal(inspected.code, 0, inspected.stderr);
    assert.match(inspected.stdout, /^policies revision 3 \(signature not verified\)\n/);
    assert.match(inspected.stdout, /\n {2}[0-9a-f]{64} {2}policy\.yaml \(\d+ bytes, policy\) {2}\(differs from the manifest\)\n/);
  });

  test("inspect shows the manifest, the files with digests, the signatures' kids and the revocation counts", async () => {
    await build("shown.tar.gz");
    const files = await readBundleFiles(join(cwd, "shown.tar.gz"));
    const digest = (p: string) => sha256Hex(files.get(p)!);
    const inspected = await runCli(["bundle", "inspect", "shown.tar.gz"], { cwd });
    assert.deepEqual(inspected, {
      code: 0,
      stderr: "",
      stdout: [
        "policies revision 3 (signature not verified)",
        `  digest     ${digest("manifest.json")}`,
        "  created    2026-11-23T00:00:00Z",
        "  valid      2026-11-23T00:00:00Z .. 2026-11-24T00:00:00Z",
        "  ladder     grace 6h (to 2026-11-24T06:00:00Z), restricted 1d (to 2026-11-25T06:00:00Z), then locked",
        "files:",
        `  ${digest("policy.yaml")}  policy.yaml (${POLICY_YAML.length} bytes, policy)`,
        `  ${digest("revocations.json")}  revocations.json (${files.get("revocations.json")!.length} bytes)`,
        `  ${digest("teams/extra.yml")}  teams/extra.yml (14 bytes, policy)`,
        "signatures:",
        `  kid ${kid} (EdDSA)`,
        "revocations: 1 SPIFFE ID, 0 serials",
        "",
      ].join("\n"),
    });
    writeFileSync(join(cwd, "junk.tar.gz"), "not a bundle");
    assert.deepEqual(await runCli(["bundle", "inspect", "junk.tar.gz"], { cwd }), {
      code: 1, stdout: "", stderr: "bundle inspect: malformed-archive: not a gzip-compressed tar archive\n",
    });
  });

  test("grace and restricted periods may be 0s: the ladder goes straight to locked", async () => {
    const built = capture(cwd);
    const argv = ["build", "policies", "--revision", "9", "--valid-for", "1h", "--grace", "0s", "--restricted-for", "0m", "--key", "signer.key", "--out", "zero.tar.gz"];
    assert.equal(await run(argv, built.io), 0, built.err.join(""));
    const verified = capture(cwd);
    assert.equal(await run(["verify", "zero.tar.gz", "--pub", "signer.pub", "--at", "2026-11-23T01:00:00Z"], verified.io), 0, verified.err.join(""));
    assert.match(verified.out.join(""), /\n {2}ladder {5}grace 0s \(to 2026-11-23T01:00:00Z\), restricted 0s \(to 2026-11-23T01:00:00Z\), then locked\n {2}stage {6}locked at 2026-11-23T01:00:00Z\n/);
  });

  test("build refuses a symbolic link, a built bundle as input, and a key others can read", async () => {
    mkdirSync(join(cwd, "linked"));
    copyFileSync(join(cwd, "policies", "policy.yaml"), join(cwd, "linked", "policy.yaml"));
    symlinkSync("/etc/hostname", join(cwd, "linked", "host.yaml"));
    assert.deepEqual(await build("x.tar.gz", [], "linked"), {
      code: 1, stdout: "", stderr: 'bundle build: malformed-archive: policy directory entry "host.yaml" is a symbolic link; only regular files are allowed\n',
    });
    assert.deepEqual(await build("x.tar.gz", [], "unpacked"), {
      code: 1, stdout: "", stderr: "bundle build: malformed-archive: the input already holds manifest.json; build from the policy sources, not from a built bundle\n",
    });
    copyFileSync(join(cwd, "signer.key"), join(cwd, "open.key"));
    chmodSync(join(cwd, "open.key"), 0o644);
    const open = await runCli(["bundle", "build", "policies", "--revision", "1", "--valid-for", "1h", "--key", "open.key", "--out", "x.tar.gz"], { cwd });
    assert.equal(open.code, 1);
    assert.equal(open.stderr, `bundle build: key-file: private key file ${join(cwd, "open.key")} is accessible by group or others (mode 0644); run chmod 600 on it\n`);
    assert.throws(() => statSync(join(cwd, "x.tar.gz")), /ENOENT/);
  });
});

describe("edgeward bundle usage errors (exit 2)", () => {
  const cwd = tmpdir();
  const usageErrors: string[][] = [
    [],
    ["frobnicate"],
    ["keygen"],
    ["keygen", "--out", "k", "extra"],
    ["build", "--revision", "1", "--valid-for", "1h", "--key", "k.key", "--out", "b.tar.gz"],
    ["build", "dir", "--valid-for", "1h", "--key", "k.key", "--out", "b.tar.gz"],
    ["build", "dir", "--revision", "0", "--valid-for", "1h", "--key", "k.key", "--out", "b.tar.gz"],
    ["build", "dir", "--revision", "1", "--valid-for", "0s", "--key", "k.key", "--out", "b.tar.gz"],
    ["build", "dir", "--revision", "1", "--valid-for", "1y", "--key", "k.key", "--out", "b.tar.gz"],
    ["build", "dir", "--revision", "1", "--valid-for", "1h", "--grace=-1h", "--key", "k.key", "--out", "b.tar.gz"],
    ["build", "dir", "--revision", "1", "--valid-for", "1h", "--out", "b.tar.gz"],
    ["build", "dir", "--revision", "1", "--valid-for", "1h", "--key", "k.key"],
    ["build", "dir", "other", "--revision", "1", "--valid-for", "1h", "--key", "k.key", "--out", "b.tar.gz"],
    ["verify", "b.tar.gz"],
    ["verify", "--pub", "k.pub"],
    ["verify", "b.tar.gz", "--pub", "k.pub", "--at", "yesterday"],
    ["verify", "b.tar.gz", "--pub", "k.pub", "--active-revision", "x"],
    ["verify", "b.tar.gz", "--pub", "k.pub", "--active-digest", "0".repeat(64)],
    ["verify", "b.tar.gz", "--pub", "k.pub", "--bogus"],
    ["inspect"],
  ];
  for (const argv of usageErrors) {
    test(JSON.stringify(argv), async () => {
      const { io, out, err } = capture(cwd);
      assert.equal(await run(argv, io), 2);
      assert.equal(out.join(""), "");
      assert.match(err.join(""), /^bundle( \w+)?: [^]+\nusage:\n/);
    });
  }

  test("a malformed SOURCE_DATE_EPOCH is a usage error", async () => {
    const previous = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = "tomorrow";
    try {
      const { io, err } = capture(cwd);
      assert.equal(await run(["build", "dir", "--revision", "1", "--valid-for", "1h", "--key", "k.key", "--out", "b.tar.gz"], io), 2);
      assert.match(err.join(""), /^bundle build: SOURCE_DATE_EPOCH must be whole seconds since 1970-01-01T00:00:00Z\n/);
    } finally {
      if (previous === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = previous;
    }
  });

  test("--help prints the usage and exits 0", async () => {
    const { io, out } = capture(cwd);
    assert.equal(await run(["--help"], io), 0);
    assert.match(out.join(""), /edgeward bundle build {3}DIR --revision N --valid-for 24h/);
  });
});
