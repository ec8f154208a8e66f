import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { stringify } from "yaml";
import { GENESIS_HASH, sealRecord, serializeRecord } from "../../src/decision-log/index.ts";
import { encodeBatch } from "../../src/node/log-upload.ts";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { entry } from "../decision-log/fixtures.ts";
import { makeBundle, makeKey, type TestKey } from "../support/bundle-factory.ts";
import { call, mtlsAgent } from "../support/gateway-fixture.ts";
import { runCli, startCli, type Started } from "../support/processes.ts";

const TD = "example.org";
const TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed";
const KIOSK = `spiffe://${TD}/edge/node/kiosk-1`;
const CHAT = `spiffe://${TD}/ns/apps/sa/chat`;

describe("operator commands against a running control plane", () => {
  let dir: string;
  let cp: Started;
  let server: string;
  let release: TestKey;
  let auth: string[];

  const cli = (args: string[]) => runCli(args, { cwd: dir });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-operator-"));
    await initDevCa({ dir: join(dir, "ca"), trustDomain: TD });
    await issueSvid({ dir: join(dir, "ca"), spiffeId: `spiffe://${TD}/controlplane`, out: join(dir, "cp"), dns: ["localhost"], ip: ["127.0.0.1"] });
    await issueSvid({ dir: join(dir, "ca"), spiffeId: `spiffe://${TD}/ops/admin`, out: join(dir, "admin") });
    await issueSvid({ dir: join(dir, "ca"), spiffeId: KIOSK, out: join(dir, "kiosk-1") });
    release = await makeKey();
    writeFileSync(join(dir, "release.pub"), release.publicPem);
    writeFileSync(join(dir, "release.key"), release.privatePem, { mode: 0o600 });
    writeFileSync(join(dir, "operator.token"), `${TOKEN}\n`, { mode: 0o600 });
    writeFileSync(join(dir, "wrong.token"), "not-the-operator-token-at-all\n", { mode: 0o600 });
    writeFileSync(join(dir, "controlplane.yaml"), stringify({
      listen: "127.0.0.1:0",
      tls: { cert: "cp.pem", key: "cp.key" },
      trustBundles: { [TD]: "ca/ca.pem" },
      storage: { sqlite: "data/cp.db" },
      operators: { principals: [`spiffe://${TD}/ops/admin`], tokenFile: "operator.token" },
      groups: [{ name: "kiosks", principals: [`spiffe://${TD}/edge/node/*`] }],
      bundles: { keys: ["release.pub"], releaseKey: "release.key" },
      logLevel: "warn",
    }));
    cp = await startCli(["controlplane", "--config", "controlplane.yaml"], /edgeward controlplane listening on (https:\/\/\S+)/, { cwd: dir });
    server = cp.match[1]!;
    auth = ["--server", server, "--token-file", "operator.token", "--ca", "ca/ca.pem"];
  });

  after(async () => {
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("bundle push publishes a signed bundle for a group; a reused revision, an unknown group or key is refused with its code", async () => {
    writeFileSync(join(dir, "r1.tar.gz"), (await makeBundle({ revision: 1, keys: [release], nowMs: Date.now() - 60_000 })).archive);
    const pushed = await cli(["bundle", "push", "r1.tar.gz", "--group", "kiosks", ...auth]);
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.match(pushed.stdout, /^pushed revision 1 to group kiosks\n {2}digest {2}[0-9a-f]{64}\n {2}etag {4}[0-9a-f]{64}\n$/);
    assert.equal(pushed.stderr, "");

    const again = await cli(["bundle", "push", "r1.tar.gz", "--group", "kiosks", ...auth]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^bundle push: revision-reused: .+\n$/);

    const unknownGroup = await cli(["bundle", "push", "r1.tar.gz", "--group", "labs", ...auth]);
    assert.equal(unknownGroup.code, 1);
    assert.match(unknownGroup.stderr, /^bundle push: unknown_group: no configured group "labs"/);

    writeFileSync(join(dir, "rogue.tar.gz"), (await makeBundle({ revision: 5, nowMs: Date.now() - 60_000 })).archive);
    const rogue = await cli(["bundle", "push", "rogue.tar.gz", "--group", "kiosks", ...auth]);
    assert.equal(rogue.code, 1);
    assert.match(rogue.stderr, /^bundle push: unknown-key: /);

    // The operator's own SVID works as well as the token.
    writeFileSync(join(dir, "r2.tar.gz"), (await makeBundle({ revision: 2, keys: [release], nowMs: Date.now() - 60_000 })).archive);
    const bySvid = await cli(["bundle", "push", "r2.tar.gz", "--group", "kiosks", "--server", server, "--cert", "admin.pem", "--key", "admin.key", "--ca", "ca/ca.pem"]);
    assert.equal(bySvid.code, 0, bySvid.stderr);
    assert.match(bySvid.stdout, /^pushed revision 2 to group kiosks\n/);

    const missing = await cli(["bundle", "push", "nowhere.tar.gz", "--group", "kiosks", ...auth]);
    assert.deepEqual([missing.code, missing.stderr], [1, "bundle push: file: cannot read nowhere.tar.gz (ENOENT)\n"]);
  });

  test("revoke records the revocation and the control plane re-signs the group's bundle with it", async () => {
    const revoked = await cli(["revoke", "--spiffe-id", CHAT, "--reason", "laptop stolen", ...auth]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, new RegExp(`^revoked spiffe-id ${CHAT} at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\n  group kiosks: bundle revision 3 carries it\\n$`));
    const bySerial = await cli(["revoke", "--serial", "1a2b3c", "--reason", "key compromise", ...auth]);
    assert.equal(bySerial.code, 0, bySerial.stderr);
    assert.match(bySerial.stdout, /^revoked serial 1a2b3c at .+\n {2}group kiosks: bundle revision 4 carries it\n$/);
  });

  test("findings list and nodes list show what the retroactive analysis found in an upload", async () => {
    // The node uploads decisions made after the revocation, in the grace stage: ALLOWs of a revoked caller.
    const lines: string[] = [];
    let prev = GENESIS_HASH;
    const t0 = Date.now() + 1000;
    for (let i = 1; i <= 4; i++) {
      const record = sealRecord(entry(i, { time: new Date(t0 + i).toISOString(), stage: "grace" }), i, prev);
      lines.push(serializeRecord(record));
      prev = record.hash;
    }
    const agent = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "kiosk-1"));
    try {
      const uploaded = await call(agent, `${server}/v1/logs`, {
        method: "POST", body: await encodeBatch(lines),
        headers: { "content-type": "application/x-ndjson", "content-encoding": "gzip", "x-edgeward-stage": "grace", "x-edgeward-bundle-revision": "4", "x-edgeward-log-seq": "4" },
      });
      assert.equal(uploaded.status, 200, uploaded.text);
    } finally {
      await agent.close();
    }

    const table = await cli(["findings", "list", ...auth]);
    assert.equal(table.code, 0, table.stderr);
    const [header, ...rows] = table.stdout.trimEnd().split("\n");
    assert.match(header!, /^ID +SEVERITY +KIND +NODE +SEQ +CREATED +EXPLANATION$/);
    assert.ok(rows.some((r) => new RegExp(`^\\d+ +high +revoked-caller-allowed +${KIOSK} +\\S+ +\\S+Z +\\S`).test(r)), table.stdout);
    assert.ok(rows.some((r) => new RegExp(`^\\d+ +low +degraded-stage +${KIOSK} +1\\.\\.4 `).test(r)), table.stdout);

    const json = await cli(["findings", "list", "--severity", "high", "--node", KIOSK, "--output", "json", ...auth]);
    assert.equal(json.code, 0, json.stderr);
    const high = JSON.parse(json.stdout) as { kind: string; severity: string; node: string }[];
    assert.ok(high.length >= 1);
    assert.ok(high.every((f) => f.severity === "high" && f.node === KIOSK));
    assert.ok(high.some((f) => f.kind === "revoked-caller-allowed"));

    const byKind = await cli(["findings", "list", "--kind", "degraded-stage", "--output", "json", ...auth]);
    assert.deepEqual((JSON.parse(byKind.stdout) as { kind: string }[]).map((f) => f.kind), ["degraded-stage"]);
    const none = await cli(["findings", "list", "--node", "spiffe://example.org/edge/node/nobody", ...auth]);
    assert.deepEqual([none.code, none.stdout], [0, "no findings\n"]);

    const nodes = await cli(["nodes", "list", ...auth]);
    assert.equal(nodes.code, 0, nodes.stderr);
    const [nodeHeader, nodeRow, ...more] = nodes.stdout.trimEnd().split("\n");
    assert.match(nodeHeader!, /^NODE +GROUP +LAST CONTACT +CLAIMED REVISION +CLAIMED STAGE +CLAIMED LOG SEQ +ACKED +FINDINGS$/);
    assert.match(nodeRow!, new RegExp(`^${KIOSK} +kiosks +\\S+Z +4 +grace +4 +4 +[1-9]\\d*$`));
    assert.deepEqual(more, []);
    const nodesJson = JSON.parse((await cli(["nodes", "list", "--output", "json", ...auth])).stdout) as { id: string; ackSeq: number; claimed: { stage: string } }[];
    assert.deepEqual(nodesJson.map((n) => [n.id, n.ackSeq, n.claimed.stage]), [[KIOSK, 4, "grace"]]);
  });

  test("a wrong token, a node's certificate, an unreachable server: exit 1 with the code", async () => {
    const wrong = await cli(["nodes", "list", "--server", server, "--token-file", "wrong.token", "--ca", "ca/ca.pem"]);
    assert.deepEqual([wrong.code, wrong.stdout], [1, ""]);
    assert.equal(wrong.stderr, "nodes list: unauthenticated: the bearer token is not valid\n");

    const asNode = await cli(["findings", "list", "--server", server, "--cert", "kiosk-1.pem", "--key", "kiosk-1.key", "--ca", "ca/ca.pem"]);
    assert.equal(asNode.code, 1);
    assert.equal(asNode.stderr, `findings list: forbidden: ${KIOSK} is not an operator\n`);

    const revokeWrong = await cli(["revoke", "--serial", "ff", "--reason", "x", "--server", server, "--token-file", "wrong.token", "--ca", "ca/ca.pem"]);
    assert.deepEqual([revokeWrong.code, revokeWrong.stderr], [1, "revoke: unauthenticated: the bearer token is not valid\n"]);

    const untrusted = await cli(["nodes", "list", "--server", server, "--token-file", "operator.token"]);
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /^nodes list: tls: https:\/\/127\.0\.0\.1:\d+'s certificate is not trusted \(\S+\); name its CA with --ca\n$/);

    const down = await cli(["nodes", "list", "--server", "https://127.0.0.1:9", "--token-file", "operator.token"]);
    assert.deepEqual([down.code, down.stderr], [1, "nodes list: unreachable: cannot reach https://127.0.0.1:9: ECONNREFUSED\n"]);

    writeFileSync(join(dir, "open.token"), `${TOKEN}\n`);
    chmodSync(join(dir, "open.token"), 0o644);
    const open = await cli(["nodes", "list", "--server", server, "--token-file", "open.token", "--ca", "ca/ca.pem"]);
    assert.equal(open.code, 1);
    assert.match(open.stderr, /^nodes list: token-file: \S+open\.token is accessible by group or others \(mode 0644\); run chmod 600 on it\n$/);
  });

  const usageErrors: [string[], RegExp][] = [
    [["revoke", "--spiffe-id", CHAT, "--server", "https://x"], /^revoke: missing --reason\nusage: edgeward revoke/],
    [["revoke", "--spiffe-id", CHAT, "--serial", "ab", "--reason", "r"], /^revoke: give exactly one of --spiffe-id and --serial\n/],
    [["revoke", "--reason", "r"], /^revoke: give exactly one of --spiffe-id and --serial\n/],
    [["revoke", "--serial", "ab", "--reason", "r"], /^revoke: missing --server\n/],
    [["revoke", "--serial", "ab", "--reason", "r", "--server", "http://127.0.0.1:1", "--token-file", "t"], /^revoke: --server must be an https:\/\/ URL/],
    [["revoke", "--serial", "ab", "--reason", "r", "--server", "https://h", "--token-file", "t", "--cert", "c", "--key", "k"], /^revoke: give either --token-file F, or --cert F and --key F\n/],
    [["revoke", "--serial", "ab", "--reason", "r", "--server", "https://h", "--cert", "c"], /^revoke: --cert and --key go together\n/],
    [["revoke", "--bogus"], /^revoke: Unknown option '--bogus'/],
    [["findings"], /^findings: missing subcommand\nusage: edgeward findings list/],
    [["findings", "show"], /^findings: unknown subcommand "show"\n/],
    [["findings", "list", "--severity", "urgent", "--server", "https://h", "--token-file", "t"], /^findings list: --severity must be low, medium, high or critical\n/],
    [["findings", "list", "--limit", "0", "--server", "https://h", "--token-file", "t"], /^findings list: --limit must be a positive whole number\n/],
    [["findings", "list", "--output", "yaml"], /^findings list: --output must be table or json, got "yaml"\n/],
    [["nodes"], /^nodes: missing subcommand\n/],
    [["nodes", "list", "extra", "--server", "https://h", "--token-file", "t"], /^nodes list: Unexpected argument 'extra'|^nodes list: unexpected argument "extra"/],
    [["bundle", "push", "--group", "kiosks"], /^bundle push: missing FILE\.tar\.gz argument\nusage:\n/],
    [["bundle", "push", "r1.tar.gz", "--server", "https://h", "--token-file", "t"], /^bundle push: missing --group\n/],
  ];
  for (const [argv, expected] of usageErrors) {
    test(`usage error: edgeward ${argv.join(" ")} → exit 2`, async () => {
      const r = await cli(argv);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, expected);
    });
  }

  test("help: the commands are listed, and each prints its usage", async () => {
    const help = await cli(["--help"]);
    assert.match(help.stdout, /\n {2}revoke +revoke \(--spiffe-id ID \| --serial S\)/);
    assert.match(help.stdout, /\n {2}findings +findings list/);
    assert.match(help.stdout, /\n {2}nodes +nodes list/);
    for (const command of [["revoke", "--help"], ["findings", "--help"], ["nodes", "--help"]]) {
      const r = await cli(command);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^usage: edgeward /);
      assert.match(r.stdout, /--token-file F/);
    }
  });
});
