import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { run as bundle } from "../../src/cli/bundle.ts";
import { run } from "../../src/cli/release.ts";
import { digestHex } from "../../src/release/index.ts";
import { runCli } from "../support/processes.ts";
import { makeRelease, type SyntheticRelease } from "../support/release-factory.ts";

function capture(cwd: string) {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s), cwd }, out, err };
}

const IMAGE = "edgeward-0.1.0-amd64.oci.tar";

describe("edgeward release", () => {
  let cwd: string;
  let r: SyntheticRelease;

  before(async () => {
    cwd = mkdtempSync(join(tmpdir(), "edgeward-cli-release-"));
    r = await makeRelease();
    writeFileSync(join(cwd, IMAGE), r.archive);
    writeFileSync(join(cwd, "edgeward-0.1.0-amd64.cdx.json"), r.sbom);
    writeFileSync(join(cwd, "edgeward-0.1.0-amd64.provenance.dsse.json"), r.provenance);
    for (const name of ["release", "other"]) assert.equal(await bundle(["keygen", "--out", name], capture(cwd).io), 0);
  });
  after(() => rmSync(cwd, { recursive: true, force: true }));

  async function cli(...args: string[]) {
    const c = capture(cwd);
    const code = await run(args, c.io);
    return { code, stdout: c.out.join(""), stderr: c.err.join("") };
  }

  test("sign writes the envelopes and cosign's images beside the image, and prints how to push them", async () => {
    const signed = await cli("sign", IMAGE, "--key", "release.key", "--repository", "registry.example.org/edge/edgeward");
    assert.equal(signed.code, 0, signed.stderr);
    const hex = digestHex(r.digest)!;
    assert.match(signed.stdout, new RegExp(`^signed ${r.digest}\\n`));
    assert.match(signed.stdout, new RegExp(`skopeo copy oci-archive:\\S+\\.sig\\.oci\\.tar docker://registry\\.example\\.org/edge/edgeward:sha256-${hex}\\.sig`));
    for (const suffix of ["release.dsse.json", "cdx.dsse.json", "sig.oci.tar", "att.oci.tar"]) assert.ok(existsSync(join(cwd, `edgeward-0.1.0-amd64.${suffix}`)), suffix);
  });

  test("verify passes, through the installed command too, and names what it checked", async () => {
    const ok = await runCli(["release", "verify", IMAGE, "--pub", "release.pub"], { cwd });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ok: edgeward 0\.1\.0 \(linux\/amd64\)\n/);
    assert.match(ok.stdout, new RegExp(`image +${r.digest} \\(tag edgeward:0\\.1\\.0\\)`));
    assert.match(ok.stdout, /cosign +signature for registry\.example\.org\/edge\/edgeward; attestations https:\/\/cyclonedx\.org\/bom, https:\/\/slsa\.dev\/provenance\/v1/);
  });

  test("a failed check exits 1 as `release verify: CHECK: message`", async () => {
    const wrongKey = await cli("verify", IMAGE, "--pub", "other.pub");
    assert.equal(wrongKey.code, 1);
    assert.match(wrongKey.stderr, /^release verify: unknown-key: the release statement: no signature is by a trusted key/);

    const tampered = Buffer.from(r.archive);
    const layerHex = digestHex(r.layers[1]!.descriptor.digest)!;
    const at = tampered.indexOf(Buffer.from(`blobs/sha256/${layerHex}`)) + 512 + 30;
    tampered[at]! ^= 0x55;
    writeFileSync(join(cwd, "tampered.oci.tar"), tampered);
    for (const suffix of ["cdx.json", "provenance.dsse.json", "release.dsse.json", "cdx.dsse.json", "sig.oci.tar", "att.oci.tar"]) {
      writeFileSync(join(cwd, `tampered.${suffix}`), readFileSync(join(cwd, `edgeward-0.1.0-amd64.${suffix}`)));
    }
    const layer = await cli("verify", "tampered.oci.tar", "--pub", "release.pub");
    assert.equal(layer.code, 1);
    assert.match(layer.stderr, /^release verify: blob-digest: layer 1 sha256:[0-9a-f]{64} was altered/);

    unlinkSync(join(cwd, "tampered.oci.tar"));
    writeFileSync(join(cwd, "tampered.oci.tar"), r.archive);
    unlinkSync(join(cwd, "tampered.sig.oci.tar"));
    const missing = await cli("verify", "tampered.oci.tar", "--pub", "release.pub");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^release verify: signature-missing: the cosign signature image is missing/);

    symlinkSync(join(cwd, "edgeward-0.1.0-amd64.sig.oci.tar"), join(cwd, "tampered.sig.oci.tar"));
    const link = await cli("verify", "tampered.oci.tar", "--pub", "release.pub");
    assert.equal(link.code, 1);
    assert.match(link.stderr, /^release verify: malformed-archive: cannot read .*tampered\.sig\.oci\.tar \(a symbolic link\)/);
  });

  test("a truncated image archive is a malformed archive", async () => {
    writeFileSync(join(cwd, "short.oci.tar"), r.archive.subarray(0, 1536));
    const short = await cli("verify", "short.oci.tar", "--pub", "release.pub");
    assert.equal(short.code, 1);
    assert.match(short.stderr, /^release verify: malformed-archive: /);
  });

  test("usage errors exit 2", async () => {
    assert.equal((await cli("verify", IMAGE)).code, 2);
    assert.equal((await cli("sign", IMAGE)).code, 2);
    assert.equal((await cli("verify", "image.tar.gz", "--pub", "release.pub")).code, 2);
    assert.equal((await cli("sign", IMAGE, "--key", "release.key", "--repository", "Not A Repo")).code, 2);
    assert.equal((await cli("frobnicate")).code, 2);
    const help = await cli("--help");
    assert.equal(help.code, 0);
    assert.match(help.stdout, /edgeward release verify IMAGE\.oci\.tar --pub PREFIX\.pub/);
  });

  test("a key file others can read is refused, as for bundles", async () => {
    writeFileSync(join(cwd, "open.key"), readFileSync(join(cwd, "release.key")), { mode: 0o644 });
    const open = await cli("sign", IMAGE, "--key", "open.key");
    assert.equal(open.code, 1);
    assert.match(open.stderr, /^release sign: key-file: .*accessible by group or others/);
  });
});
