import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { run } from "../../src/cli/ca.ts";
import { parsePemCertificates, trustBundleSet, verifyX509Svid } from "../../src/identity/index.ts";

function capture(cwd: string) {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s), cwd }, out, err };
}

describe("edgeward ca", () => {
  let cwd: string;
  before(() => {
    cwd = mkdtempSync(join(tmpdir(), "edgeward-cli-ca-"));
  });
  after(() => rmSync(cwd, { recursive: true, force: true }));

  const usageErrors: string[][] = [
    [],
    ["frobnicate"],
    ["init"],
    ["init", "--dir", "ca"],
    ["init", "--trust-domain", "x.example"],
    ["init", "--dir", "ca", "--trust-domain", "x.example", "--bogus"],
    ["init", "--dir", "ca", "--trust-domain", "x.example", "extra"],
    ["issue", "--dir", "ca", "--spiffe-id", "spiffe://x.example/a"],
    ["issue", "--dir", "ca", "--out", "svc"],
    ["issue", "--dir", "ca", "--spiffe-id", "spiffe://x.example/a", "--out", "svc", "--ttl", "soon"],
    ["issue", "--dir", "ca", "--spiffe-id", "spiffe://x.example/a", "--out", "svc", "--ttl"],
  ];
  for (const argv of usageErrors) {
    it(`exits 2 with usage for ${JSON.stringify(argv)}`, async () => {
      const { io, out, err } = capture(cwd);
      assert.equal(await run(argv, io), 2);
      assert.equal(out.join(""), "");
      assert.match(err.join(""), /usage:/);
    });
  }

  it("prints usage for --help and exits 0", async () => {
    const { io, out } = capture(cwd);
    assert.equal(await run(["--help"], io), 0);
    assert.match(out.join(""), /ca init/);
  });

  it("init and issue write usable files relative to cwd", async () => {
    const { io, out } = capture(cwd);
    assert.equal(await run(["init", "--dir", "ca", "--trust-domain", "x.example"], io), 0);
    assert.equal(out.join(""), `wrote ${join(cwd, "ca", "ca.pem")}\nwrote ${join(cwd, "ca", "ca.key")}\n`);

    const issued = capture(cwd);
    const argv = ["issue", "--dir", "ca", "--spiffe-id", "spiffe://x.example/ns/a/sa/b", "--out", "svc"];
    const extra = ["--ttl", "15m", "--dns", "a.local", "--dns", "b.local", "--ip", "127.0.0.1"];
    assert.equal(await run([...argv, ...extra], issued.io), 0);
    assert.equal(issued.out.join(""), `wrote ${join(cwd, "svc.pem")}\nwrote ${join(cwd, "svc.key")}\n`);
    assert.equal(statSync(join(cwd, "svc.key")).mode & 0o777, 0o600);

    const chain = parsePemCertificates(readFileSync(join(cwd, "svc.pem"), "utf8"));
    const bundles = trustBundleSet({ "x.example": parsePemCertificates(readFileSync(join(cwd, "ca", "ca.pem"), "utf8")) });
    const verified = verifyX509Svid(chain, bundles, new Date());
    assert.equal(verified.id.uri, "spiffe://x.example/ns/a/sa/b");
    assert.equal(chain[0]!.subjectAltName, "URI:spiffe://x.example/ns/a/sa/b, DNS:a.local, DNS:b.local, IP Address:127.0.0.1");
    const ttl = chain[0]!.validToDate.getTime() - Date.now();
    assert.ok(ttl > 14 * 60_000 && ttl <= 15 * 60_000, String(ttl));
  });

  it("issue --out into a folder that does not exist yet makes the folder (0700), as the docs' commands do", async () => {
    const issued = capture(cwd);
    assert.equal(await run(["issue", "--dir", "ca", "--spiffe-id", "spiffe://x.example/ns/edge/sa/gateway", "--out", "certs/gateway"], issued.io), 0, issued.err.join(""));
    assert.equal(issued.out.join(""), `wrote ${join(cwd, "certs", "gateway.pem")}\nwrote ${join(cwd, "certs", "gateway.key")}\n`);
    assert.equal(statSync(join(cwd, "certs")).mode & 0o777, 0o700);
  });

  it("fails with exit 1 and a one-line message", async () => {
    const again = capture(cwd);
    assert.equal(await run(["init", "--dir", "ca", "--trust-domain", "x.example"], again.io), 1);
    assert.match(again.err.join(""), /^ca: devca: a CA already exists in .*; pass --force to replace it\n$/);

    const foreign = capture(cwd);
    assert.equal(await run(["issue", "--dir", "ca", "--spiffe-id", "spiffe://y.example/a", "--out", "f"], foreign.io), 1);
    assert.match(foreign.err.join(""), /^ca: devca: SPIFFE ID spiffe:\/\/y\.example\/a is not in the CA's trust domain "x\.example"\n$/);

    const missing = capture(cwd);
    assert.equal(await run(["issue", "--dir", "nope", "--spiffe-id", "spiffe://x.example/a", "--out", "f"], missing.io), 1);
    assert.equal(missing.err.join("").split("\n").length, 2);

    const forced = capture(cwd);
    assert.equal(await run(["init", "--dir", "ca", "--trust-domain", "x.example", "--force"], forced.io), 0);
  });
});
