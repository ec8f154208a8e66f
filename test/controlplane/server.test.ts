import assert from "node:assert/strict";
import { randomBytes, X509Certificate } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { request, type Agent } from "undici";
import { entry } from "../decision-log/fixtures.ts";
import { MANIFEST_FILE, packArchive, SIGNATURE_FILE, unpackArchive, verifyBundle } from "../../src/bundle/index.ts";
import { ConfigError } from "../../src/config/index.ts";
import { ControlPlane, OPENAPI_DOCUMENT, parseControlPlaneConfig, type ControlPlaneConfigInput } from "../../src/controlplane/index.ts";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { makeBundle, makeKey, trust, type TestKey } from "../support/bundle-factory.ts";
import { call, mtlsAgent } from "../support/gateway-fixture.ts";
import { waitFor } from "../support/wait.ts";
import { gzBatch, makeChain } from "./records.ts";

const TD = "example.org";
const NODE = (name: string) => `spiffe://${TD}/edge/node/${name}`;
const MALLORY = `spiffe://${TD}/ns/apps/sa/mallory`;
const TOKEN = "0123456789abcdef0123456789abcdef";
const NDJSON = { "content-type": "application/x-ndjson", "content-encoding": "gzip" };
const GZIP = { "content-type": "application/gzip" };
const BEARER = { authorization: `Bearer ${TOKEN}` };

describe("control plane over HTTPS with mTLS", () => {
  let dir: string;
  let cp: ControlPlane;
  let base: string;
  let release: TestKey;
  let rogue: TestKey;
  const agents: Record<string, Agent> = {};
  let input: ControlPlaneConfigInput;

  const config = (patch: Partial<ControlPlaneConfigInput> = {}) => parseControlPlaneConfig({ ...input, ...patch }, join(dir, "controlplane.yaml"));
  const url = (path: string) => `${base}${path}`;
  const bundle = (revision: number, extra: { keys?: TestKey[]; policy?: string } = {}) =>
    makeBundle({ revision, nowMs: Date.now() - 60_000, keys: extra.keys ?? [release], ...(extra.policy === undefined ? {} : { policy: extra.policy }) });
  const push = async (archive: Buffer, group = "kiosks", who: Agent = agents.none!, headers: Record<string, string> = BEARER) =>
    call(who, url(`/v1/bundles?group=${group}`), { method: "POST", body: archive, headers: { ...GZIP, ...headers } });
  const upload = (who: string, body: Buffer, headers: Record<string, string> = NDJSON) => call(agents[who]!, url("/v1/logs"), { method: "POST", body, headers });
  const operator = (path: string, init: Parameters<typeof call>[2] = {}) => call(agents.none!, url(path), { ...init, headers: { ...BEARER, ...init.headers } });
  const findings = async (node: string, kind?: string) => (await operator(`/v1/findings?node=${encodeURIComponent(node)}${kind ? `&kind=${kind}` : ""}`)).json() as { kind: string; seqFrom: number; seqTo: number; severity: string; explanation: string }[];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-cp-"));
    await initDevCa({ dir: join(dir, "ca"), trustDomain: TD });
    await initDevCa({ dir: join(dir, "evil-ca"), trustDomain: TD });
    await issueSvid({ dir: join(dir, "ca"), spiffeId: `spiffe://${TD}/controlplane`, out: join(dir, "cp"), dns: ["localhost"], ip: ["127.0.0.1"] });
    for (const name of ["kiosk-1", "kiosk-2", "kiosk-3", "kiosk-4", "lab-1"]) await issueSvid({ dir: join(dir, "ca"), spiffeId: NODE(name), out: join(dir, name) });
    await issueSvid({ dir: join(dir, "ca"), spiffeId: `spiffe://${TD}/ns/apps/sa/stranger`, out: join(dir, "stranger") });
    await issueSvid({ dir: join(dir, "ca"), spiffeId: `spiffe://${TD}/ops/admin`, out: join(dir, "admin") });
    await issueSvid({ dir: join(dir, "evil-ca"), spiffeId: NODE("kiosk-1"), out: join(dir, "forged") });
    release = await makeKey();
    rogue = await makeKey();
    writeFileSync(join(dir, "release.pub"), release.publicPem);
    writeFileSync(join(dir, "release.key"), release.privatePem, { mode: 0o600 });
    writeFileSync(join(dir, "rogue.key"), rogue.privatePem, { mode: 0o600 });
    writeFileSync(join(dir, "operator.token"), `${TOKEN}\n`, { mode: 0o600 });
    input = {
      listen: "127.0.0.1:0",
      tls: { cert: "cp.pem", key: "cp.key" },
      trustBundles: { [TD]: "ca/ca.pem" },
      storage: { sqlite: "data/controlplane.db" },
      operators: { principals: [`spiffe://${TD}/ops/admin`], tokenFile: "operator.token" },
      groups: [
        { name: "kiosks", principals: [`spiffe://${TD}/edge/node/kiosk-*`] },
        { name: "labs", principals: [`spiffe://${TD}/edge/node/lab-*`] },
      ],
      bundles: { keys: ["release.pub"], releaseKey: "release.key" },
      analysis: { clockSkew: "5m" },
      logLevel: "silent",
    };
    cp = await ControlPlane.start(config(), { logger: createLogger("silent") });
    base = `https://127.0.0.1:${cp.address.port}`;
    const caPem = join(dir, "ca", "ca.pem");
    agents.none = mtlsAgent(caPem);
    for (const name of ["kiosk-1", "kiosk-2", "kiosk-3", "kiosk-4", "lab-1", "stranger", "admin", "forged"]) agents[name] = mtlsAgent(caPem, join(dir, name));
  });

  after(async () => {
    await Promise.all(Object.values(agents).map((a) => a.close()));
    await cp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe("authentication", () => {
    test("health is the only route an unauthenticated caller reaches", async () => {
      assert.deepEqual((await call(agents.none!, url("/healthz"))).json(), { status: "ok" });
      for (const path of ["/v1/bundle", "/v1/logs/head", "/v1/nodes", "/v1/findings", "/v1/openapi.json", "/v1/nothing-here"]) {
        const r = await call(agents.none!, url(path));
        assert.equal(r.status, 401, path);
        assert.equal(r.json().error.code, "unauthenticated");
      }
    });

    test("a certificate from a CA outside the trust bundle is refused, whatever SPIFFE ID it claims", async () => {
      const r = await call(agents.forged!, url("/v1/bundle"));
      assert.equal(r.status, 401);
      assert.match(r.json().error.message, /client certificate refused/);
      // Even with the right token, a presented certificate must verify.
      assert.equal((await call(agents.forged!, url("/v1/nodes"), { headers: BEARER })).status, 401);
    });

    test("a node outside every group is refused node routes (403); a node is refused operator routes", async () => {
      const r = await call(agents.stranger!, url("/v1/bundle"));
      assert.equal(r.status, 403);
      assert.match(r.json().error.message, /not in any node group/);
      assert.equal((await call(agents["kiosk-1"]!, url("/v1/nodes"))).status, 403);
      assert.equal((await call(agents.stranger!, url("/v1/nodes"))).status, 403);
    });

    test("operators: the listed SVID or the exact token; a wrong token or scheme is 401", async () => {
      assert.equal((await call(agents.admin!, url("/v1/nodes"))).status, 200);
      assert.equal((await operator("/v1/nodes")).status, 200);
      for (const authorization of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Basic ${TOKEN}`, "Bearer", ""]) {
        const r = await call(agents.none!, url("/v1/nodes"), { headers: { authorization } });
        assert.equal(r.status, 401, authorization);
        assert.equal(r.headers["www-authenticate"], 'Bearer realm="edgeward"');
      }
      // A wrong token is refused even beside a valid operator certificate.
      assert.equal((await call(agents.admin!, url("/v1/nodes"), { headers: { authorization: "Bearer nope-nope-nope-nope" } })).status, 401);
      const missing = await operator("/v1/nothing-here");
      assert.deepEqual([missing.status, missing.json().error.code], [404, "not_found"]);
      // The token makes an operator, never a node.
      assert.equal((await call(agents.none!, url("/v1/bundle"), { headers: BEARER })).status, 401);
    });

    test("start-up refuses a token file others can read, a short token and a release key the fleet does not trust", async () => {
      writeFileSync(join(dir, "loose.token"), TOKEN, { mode: 0o600 });
      chmodSync(join(dir, "loose.token"), 0o644);
      await assert.rejects(ControlPlane.start(config({ operators: { tokenFile: "loose.token" } }), { logger: createLogger("silent") }), (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.equal(e.key, "operators.tokenFile");
        assert.match(e.message, /loose\.token is accessible by group or others \(mode 0644\)/);
        assert.doesNotMatch(e.message, new RegExp(TOKEN));
        return true;
      });
      writeFileSync(join(dir, "short.token"), "tiny", { mode: 0o600 });
      await assert.rejects(ControlPlane.start(config({ operators: { tokenFile: "short.token" } }), { logger: createLogger("silent") }), /operators\.tokenFile: the token must be at least 16 characters/);
      await assert.rejects(ControlPlane.start(config({ bundles: { keys: ["release.pub"], releaseKey: "rogue.key" } }), { logger: createLogger("silent") }), /bundles\.releaseKey: key .* is not one of bundles\.keys/);
    });
  });

  describe("bundles", () => {
    let first: Awaited<ReturnType<typeof bundle>>;

    test("a group has no bundle until one is pushed", async () => {
      const r = await call(agents["kiosk-1"]!, url("/v1/bundle"));
      assert.equal(r.status, 404);
      assert.equal(r.json().error.code, "no_bundle");
    });

    test("push refusals: group missing or unknown, not gzip, wrong type, untrusted key, bad signature, a non-operator", async () => {
      first = await bundle(1);
      assert.deepEqual([(await call(agents.none!, url("/v1/bundles"), { method: "POST", body: first.archive, headers: { ...GZIP, ...BEARER } })).json().error.code], ["bad_request"]);
      const unknown = await push(first.archive, "nowhere");
      assert.deepEqual([unknown.status, unknown.json().error.code], [400, "unknown_group"]);
      const notGzip = await push(Buffer.from("hello"));
      assert.deepEqual([notGzip.status, notGzip.json().error.code], [400, "malformed-archive"]);
      const wrongType = await call(agents.none!, url("/v1/bundles?group=kiosks"), { method: "POST", body: first.archive, headers: { "content-type": "application/octet-stream", ...BEARER } });
      assert.deepEqual([wrongType.status, wrongType.json().error.code], [415, "unsupported_media_type"]);
      const byRogue = await push((await bundle(1, { keys: [rogue] })).archive);
      assert.deepEqual([byRogue.status, byRogue.json().error.code], [400, "unknown-key"]);
      // Revision 2's manifest under revision 1's signature.
      const second = await bundle(2);
      const spliced = new Map(second.files);
      spliced.set(SIGNATURE_FILE, first.files.get(SIGNATURE_FILE)!);
      const badSig = await push(packArchive(spliced, 0));
      assert.deepEqual([badSig.status, badSig.json().error.code], [400, "bad-signature"]);
      const broken = await push((await bundle(1, { policy: "apiVersion: edgeward.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec: {action: SOMETIMES}\n" })).archive);
      assert.deepEqual([broken.status, broken.json().error.code], [400, "policy"]);
      assert.equal((await push(first.archive, "kiosks", agents["kiosk-1"]!, {})).status, 403);
      assert.equal((await operator("/v1/bundles?group=kiosks")).json().length, 0, "nothing was published");
    });

    test("publish, then refuse rollback and a reused revision", async () => {
      const r = await push(first.archive);
      assert.equal(r.status, 201);
      const digest = (await verifyBundle(first.files, { keys: trust(release), nowMs: Date.now() })).digest;
      assert.deepEqual(r.json(), { group: "kiosks", revision: 1, digest, etag: r.json().etag });
      assert.match(r.json().etag, /^[0-9a-f]{64}$/);
      const same = await push(first.archive);
      assert.deepEqual([same.status, same.json().error.code], [409, "revision-reused"]);
      const three = await bundle(3);
      assert.equal((await push(three.archive)).status, 201);
      const back = await push((await bundle(2)).archive);
      assert.deepEqual([back.status, back.json().error.code], [409, "rollback"]);
      const history = (await operator("/v1/bundles?group=kiosks")).json();
      assert.deepEqual(history.map((h: { revision: number }) => h.revision), [3, 1]);
      assert.deepEqual(Object.keys(history[0]).sort(), ["createdAt", "digest", "name", "notAfter", "publishedAt", "revision"]);
      assert.equal(history[0].name, "edge-policy");
    });

    test("GET /v1/bundle: the archive as pushed with its ETag; If-None-Match gives 304", async () => {
      const latest = (await operator("/v1/bundles?group=kiosks&limit=1")).json()[0];
      const r = await request(url("/v1/bundle"), { dispatcher: agents["kiosk-1"]! });
      const body = Buffer.from(await r.body.arrayBuffer());
      assert.equal(r.statusCode, 200);
      assert.equal(r.headers["content-type"], "application/gzip");
      const etag = r.headers.etag as string;
      assert.match(etag, /^"[0-9a-f]{64}"$/);
      const files = unpackArchive(body);
      assert.equal((await verifyBundle(files, { keys: trust(release), nowMs: Date.now() })).digest, latest.digest);
      const again = await call(agents["kiosk-1"]!, url("/v1/bundle"), { headers: { "if-none-match": etag } });
      assert.equal(again.status, 304);
      assert.equal(again.headers.etag, etag);
      assert.equal((await call(agents["kiosk-1"]!, url("/v1/bundle"), { headers: { "if-none-match": `W/${etag}, "other"` } })).status, 304);
      assert.equal((await call(agents["kiosk-1"]!, url("/v1/bundle"), { headers: { "if-none-match": '"stale"' } })).status, 200);
    });

    test("long-poll: held until the group publishes, then answered with the new bundle and Preference-Applied", async () => {
      const current = (await call(agents["kiosk-2"]!, url("/v1/bundle"))).headers.etag as string;
      // Longer than 300 s is clamped to 300 s.
      const held = call(agents["kiosk-2"]!, url("/v1/bundle"), { headers: { "if-none-match": current, prefer: "respond-async, wait=99999" } });
      await waitFor("the request held as a long-poll", () => cp.longPoll.waiting === 1);
      assert.equal((await push((await bundle(4)).archive)).status, 201);
      const r = await held;
      assert.equal(r.status, 200);
      assert.equal(r.headers["preference-applied"], "wait=300");
      // Answered by the publish, not by the wait running out (which is a 304 with the old ETag).
      assert.notEqual(r.headers.etag, current);
      assert.equal(cp.longPoll.waiting, 0);
    });

    test("long-poll: the wait runs out with 304; a publish to another group does not wake it", async () => {
      const current = (await call(agents["kiosk-2"]!, url("/v1/bundle"))).headers.etag as string;
      const held = call(agents["kiosk-2"]!, url("/v1/bundle"), { headers: { "if-none-match": current, prefer: "wait=1" } });
      await waitFor("the request held as a long-poll", () => cp.longPoll.waiting === 1);
      assert.equal((await push((await bundle(1)).archive, "labs")).status, 201);
      const r = await held;
      assert.equal(r.status, 304);
      assert.equal(r.headers["preference-applied"], "wait=1");
      // Without a matching If-None-Match there is nothing to wait for.
      const fresh = await call(agents["kiosk-2"]!, url("/v1/bundle"), { headers: { prefer: "wait=30" } });
      assert.equal(fresh.status, 200);
      assert.equal(fresh.headers["preference-applied"], undefined);
    });

    test("long-poll: a client that goes away is forgotten at once", async () => {
      const current = (await call(agents["kiosk-2"]!, url("/v1/bundle"))).headers.etag as string;
      const abort = new AbortController();
      const held = request(url("/v1/bundle"), { dispatcher: agents["kiosk-2"]!, headers: { "if-none-match": current, prefer: "wait=300" }, signal: abort.signal });
      await waitFor("the request held as a long-poll", () => cp.longPoll.waiting === 1);
      abort.abort();
      await assert.rejects(held);
      await waitFor("the long-poll forgotten", () => cp.longPoll.waiting === 0);
    });
  });

  describe("decision-log upload", () => {
    const chain = makeChain(30);

    test("happy path: the head moves, the node's head endpoint agrees", async () => {
      assert.deepEqual((await call(agents["kiosk-1"]!, url("/v1/logs/head"))).json(), { ackSeq: 0, ackHash: "0".repeat(64) });
      const r = await upload("kiosk-1", gzBatch(chain, 1, 10));
      assert.equal(r.status, 200);
      assert.deepEqual(r.json(), { ackSeq: 10, ackHash: chain.records[9]!.hash, accepted: 10, duplicates: 0 });
      assert.deepEqual((await call(agents["kiosk-1"]!, url("/v1/logs/head"))).json(), { ackSeq: 10, ackHash: chain.records[9]!.hash });
      assert.equal(await cp.storage.countRecords(NODE("kiosk-1")), 10);
      assert.deepEqual((await cp.storage.getRecords(NODE("kiosk-1"), 1, 10)).map((x) => x.line), chain.lines.slice(0, 10));
    });

    test("a node uploading another node's records is refused: 409 foreign-chain, a critical finding, nothing stored", async () => {
      // kiosk-1's records, as the control plane holds them, sent by lab-1, whose log there is empty: they chain
      // from the genesis and verify, but they are kiosk-1's decisions.
      const copied = await upload("lab-1", gzBatch(chain, 1, 10));
      assert.equal(copied.status, 409, copied.text);
      assert.deepEqual([copied.json().error.code, copied.json().error.seq, copied.json().ackSeq], ["foreign-chain", 1, 0]);
      assert.match(copied.json().error.message, new RegExp(`record seq 1 .* is stored under ${NODE("kiosk-1")} as its seq 1`));
      assert.equal(await cp.storage.countRecords(NODE("lab-1")), 0);
      assert.deepEqual((await call(agents["lab-1"]!, url("/v1/logs/head"))).json(), { ackSeq: 0, ackHash: "0".repeat(64) });
      const found = await findings(NODE("lab-1"), "upload-foreign-chain");
      assert.deepEqual(found.map((f) => [f.severity, f.seqFrom, f.seqTo]), [["critical", 1, 1]]);
      assert.ok(found[0]!.explanation.includes(NODE("kiosk-1")), found[0]!.explanation);
      // Sent again, it is refused again but reported once; the holder goes on.
      assert.equal((await upload("lab-1", gzBatch(chain, 1, 10))).json().error.code, "foreign-chain");
      assert.equal((await findings(NODE("lab-1"), "upload-foreign-chain")).length, 1);
      assert.equal((await findings(NODE("kiosk-1"), "upload-foreign-chain")).length, 0);
    });

    test("a duplicate batch stores nothing; an overlapping one only what is new", async () => {
      assert.deepEqual((await upload("kiosk-1", gzBatch(chain, 1, 10))).json(), { ackSeq: 10, ackHash: chain.records[9]!.hash, accepted: 0, duplicates: 10 });
      assert.deepEqual((await upload("kiosk-1", gzBatch(chain, 6, 15))).json(), { ackSeq: 15, ackHash: chain.records[14]!.hash, accepted: 5, duplicates: 5 });
      assert.equal(await cp.storage.countRecords(NODE("kiosk-1")), 15);
    });

    test("an out-of-order batch is a gap: 409, nothing stored, a critical finding, raised once per refused batch", async () => {
      const body = gzBatch(chain, 21, 25);
      const r = await upload("kiosk-1", body);
      assert.equal(r.status, 409);
      assert.deepEqual(r.json(), {
        error: { code: "gap", message: "expected seq 16 after the acknowledged head, found 21: records 16..20 are missing", seq: 16 },
        ackSeq: 15, ackHash: chain.records[14]!.hash,
      });
      assert.equal((await upload("kiosk-1", body)).status, 409);
      const gaps = await findings(NODE("kiosk-1"), "upload-gap");
      assert.deepEqual(gaps.map((f) => [f.kind, f.severity, f.seqFrom, f.seqTo]), [["upload-gap", "critical", 16, 16]]);
      assert.equal(await cp.storage.countRecords(NODE("kiosk-1")), 15);
      // Then the missing batch, then the one that came early: all in.
      assert.equal((await upload("kiosk-1", gzBatch(chain, 16, 20))).json().ackSeq, 20);
      assert.equal((await upload("kiosk-1", body)).json().ackSeq, 25);
    });

    test("a fork and a tampered line are refused and reported", async () => {
      const other = makeChain([...Array.from({ length: 19 }, (_, i) => entry(i + 1)), entry(999)]);
      const fork = await upload("kiosk-1", gzBatch(other, 18, 20));
      assert.deepEqual([fork.status, fork.json().error.code, fork.json().error.seq], [409, "fork", 20]);
      const lines = chain.lines.slice(25, 28).map((l) => `${l}\n`);
      lines[1] = lines[1]!.replace('"method":"POST"', '"method":"PUT"');
      const tampered = await upload("kiosk-1", gzipSync(lines.join("")));
      assert.deepEqual([tampered.status, tampered.json().error.code, tampered.json().error.seq], [409, "tampered", 27]);
      const broken = makeChain([...Array.from({ length: 25 }, (_, i) => entry(i + 1)), entry(26, { requestId: "elsewhere" })]);
      const chainBreak = await upload("kiosk-1", gzipSync(`${broken.lines[25]!.replace(/"prev":"[0-9a-f]{64}"/, `"prev":"${"c".repeat(64)}"`)}\n`));
      assert.equal(chainBreak.json().error.code, "tampered", "an edited prev fails the record's own hash first");
      const kinds = (await findings(NODE("kiosk-1"))).map((f) => f.kind);
      assert.ok(kinds.includes("upload-fork") && kinds.includes("upload-tampered"), kinds.join());
      assert.equal(await cp.storage.countRecords(NODE("kiosk-1")), 25);
    });

    test("a record that names the wrong prev is a chain break", async () => {
      const other = makeChain(Array.from({ length: 26 }, (_, i) => entry(i === 0 ? 500 : i + 1)));
      const r = await upload("kiosk-1", gzBatch(other, 26, 26));
      assert.deepEqual([r.status, r.json().error.code, r.json().error.seq], [409, "chain", 26]);
      assert.equal((await findings(NODE("kiosk-1"), "upload-chain")).length, 1);
    });

    test("body refusals: not gzip, not NDJSON, not encoded, too large, a gzip bomb, too many lines", async () => {
      const notGzip = await upload("kiosk-1", Buffer.from(`${chain.lines[25]}\n`));
      assert.deepEqual([notGzip.status, notGzip.json().error.code], [400, "bad_gzip"]);
      const plain = await upload("kiosk-1", Buffer.from(`${chain.lines[25]}\n`), { "content-type": "application/x-ndjson" });
      assert.deepEqual([plain.status, plain.json().error.code], [415, "unsupported_media_type"]);
      const json = await upload("kiosk-1", gzBatch(chain, 26, 26), { "content-type": "application/json", "content-encoding": "gzip" });
      assert.equal(json.status, 415);
      const big = await upload("kiosk-1", randomBytes(8 * 1024 * 1024 + 1));
      assert.deepEqual([big.status, big.json().error.code], [413, "too_large"]);
      const bomb = await upload("kiosk-1", gzipSync(Buffer.alloc(33 * 1024 * 1024, 0x20)));
      assert.deepEqual([bomb.status, bomb.json().error.code], [413, "too_large"]);
      assert.match(bomb.json().error.message, /inflates to more than 32 MiB/);
      const many = await upload("kiosk-1", gzipSync("x\n".repeat(10_001)));
      assert.deepEqual([many.status, many.json().error.code], [413, "too_many_lines"]);
      assert.equal(await cp.storage.countRecords(NODE("kiosk-1")), 25);
      assert.equal((await upload("kiosk-1", gzBatch(chain, 26, 30))).json().ackSeq, 30);
    });

    test("uploads of one node run one at a time: concurrent resends never duplicate", async () => {
      const fresh = makeChain(Array.from({ length: 40 }, (_, i) => entry(i + 1, { requestId: `kiosk-4-${i + 1}` })));
      const results = await Promise.all([1, 2, 3, 4].map(() => upload("kiosk-4", gzBatch(fresh, 1, 40))));
      assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200]);
      assert.equal(results.reduce((n, r) => n + r.json().accepted, 0), 40);
      assert.equal(await cp.storage.countRecords(NODE("kiosk-4")), 40);
    });
  });

  describe("revocation and retroactive findings", () => {
    test("a revocation is recorded and publishes a new signed revision per group, verifiable with the bundle key", async () => {
      const before = (await operator("/v1/bundles?group=kiosks&limit=1")).json()[0];
      const bad = await operator("/v1/revocations", { body: { spiffeId: MALLORY } });
      assert.deepEqual([bad.status, bad.json().error.code], [400, "bad_request"]);
      assert.equal((await operator("/v1/revocations", { body: { spiffeId: "not-an-id", reason: "x" } })).status, 400);
      assert.equal((await operator("/v1/revocations", { body: { spiffeId: MALLORY, serial: "0a", reason: "x" } })).status, 400);
      assert.equal((await operator("/v1/revocations", { body: { spiffeId: MALLORY, reason: "x".repeat(1025) } })).status, 400);
      assert.equal((await call(agents["kiosk-1"]!, url("/v1/revocations"), { body: { spiffeId: MALLORY, reason: "x" } })).status, 403);

      const sent = Date.now();
      const r = await operator("/v1/revocations", { body: { spiffeId: MALLORY, reason: "laptop stolen" } });
      const answered = Date.now();
      assert.equal(r.status, 201);
      const { revocation, bundles } = r.json();
      assert.deepEqual({ ...revocation, id: 0, revokedAt: "" }, { id: 0, kind: "spiffe-id", value: MALLORY, reason: "laptop stolen", revokedAt: "" });
      // Stamped while the request was handled (to the second, in case the stamp is truncated).
      const revokedAt = Date.parse(revocation.revokedAt);
      assert.ok(revokedAt >= sent - 1000 && revokedAt <= answered, `${revocation.revokedAt} not between the request and its answer`);
      assert.deepEqual(bundles, [{ group: "kiosks", revision: before.revision + 1 }, { group: "labs", revision: 2 }]);

      const fetched = await request(url("/v1/bundle"), { dispatcher: agents["kiosk-3"]! });
      const files = unpackArchive(Buffer.from(await fetched.body.arrayBuffer()));
      const verified = await verifyBundle(files, { keys: trust(release), nowMs: Date.now(), active: { revision: before.revision, digest: before.digest } });
      assert.equal(verified.manifest.revision, before.revision + 1);
      assert.equal(verified.manifest.name, "edge-policy");
      assert.ok(verified.revocations.isRevoked({ spiffeId: MALLORY }));
      assert.deepEqual(verified.policyFiles.map((f) => f.path), ["policy.yaml"]);
      assert.ok(files.has(MANIFEST_FILE));

      const serial = await operator("/v1/revocations", { body: { serial: "0A:1B", reason: "rotated" } });
      assert.equal(serial.json().revocation.value, "a1b");
      const listed = (await operator("/v1/revocations")).json();
      assert.deepEqual(listed.map((x: { kind: string; value: string }) => [x.kind, x.value]), [["spiffe-id", MALLORY], ["serial", "a1b"]]);
    });

    test("a revoked caller allowed later by an offline node is a finding", async () => {
      const later = (s: number) => new Date(Date.now() + s * 1000).toISOString();
      const offline = makeChain([
        entry(1, { principal: MALLORY, decision: "ALLOW", status: undefined, time: later(1) }),
        entry(2, { principal: MALLORY, decision: "ALLOW", status: undefined, time: later(2) }),
        entry(3, { principal: "spiffe://example.org/ns/apps/sa/chat", decision: "ALLOW", status: undefined, time: later(3) }),
      ]);
      assert.equal((await upload("kiosk-2", gzBatch(offline, 1, 3))).status, 200);
      const found = await findings(NODE("kiosk-2"), "revoked-caller-allowed");
      assert.deepEqual(found.map((f) => [f.severity, f.seqFrom, f.seqTo]), [["high", 1, 2]]);
      assert.match(found[0]!.explanation, /laptop stolen/);
      const high = (await operator("/v1/findings?severity=high&limit=5")).json();
      assert.ok(high.every((f: { severity: string }) => f.severity === "high") && high.length >= 1);
      assert.equal((await operator("/v1/findings?severity=urgent")).status, 400);
      assert.equal((await operator("/v1/findings?limit=0")).status, 400);
    });

    test("a revoked node is refused at once, on an open connection too", async () => {
      assert.equal((await call(agents["kiosk-3"]!, url("/v1/logs/head"))).status, 200);
      assert.equal((await operator("/v1/revocations", { body: { spiffeId: NODE("kiosk-3"), reason: "decommissioned" } })).status, 201);
      const r = await call(agents["kiosk-3"]!, url("/v1/logs/head"));
      assert.deepEqual([r.status, r.json().error.code], [403, "revoked"]);
      // By certificate serial, in openssl's spelling.
      const serial = new X509Certificate(readFileSync(join(dir, "lab-1.pem"))).serialNumber.match(/../g)!.join(":");
      assert.equal((await call(agents["lab-1"]!, url("/v1/logs/head"))).status, 200);
      assert.equal((await operator("/v1/revocations", { body: { serial, reason: "key on a lost disk" } })).status, 201);
      assert.equal((await call(agents["lab-1"]!, url("/v1/logs/head"))).json().error.code, "revoked");
    });
  });

  describe("fleet view", () => {
    const view = async (name: string) => (await operator(`/v1/nodes/${encodeURIComponent(NODE(name))}`)).json();
    const newest = async (group: string) => (await operator(`/v1/bundles?group=${group}&limit=1`)).json()[0].revision as number;

    test("what the x-edgeward-* headers of a node's calls say is shown as its claims", async () => {
      const revision = await newest("kiosks");
      const headers = { "x-edgeward-bundle-revision": String(revision), "x-edgeward-stage": "grace", "x-edgeward-log-seq": "31" };
      assert.equal((await call(agents["kiosk-1"]!, url("/v1/logs/head"), { headers })).status, 200);
      const r = await operator(`/v1/nodes/${encodeURIComponent(NODE("kiosk-1"))}`);
      assert.equal(r.status, 200);
      const shown = r.json();
      assert.deepEqual({ ...shown, firstSeen: "", lastContact: "", findings: 0 }, {
        id: NODE("kiosk-1"), group: "kiosks", firstSeen: "", lastContact: "",
        claimed: { bundleRevision: revision, stage: "grace", logSeq: 31 }, ackSeq: 30, findings: 0,
      });
      assert.ok(shown.findings >= 4, "the refused uploads");
      assert.ok(Date.parse(shown.lastContact) >= Date.parse(shown.firstSeen));
      // A later call without the headers keeps what the node last reported.
      await call(agents["kiosk-1"]!, url("/v1/logs/head"));
      assert.equal((await view("kiosk-1")).claimed.stage, "grace");
      // Claims that agree with what the centre knows raise nothing.
      assert.deepEqual((await findings(NODE("kiosk-1"))).filter((f) => f.kind.startsWith("claim-")), []);
      for (const bad of [{ "x-edgeward-stage": "sideways" }, { "x-edgeward-log-seq": "-1" }, { "x-edgeward-bundle-revision": "7a" }] as Record<string, string>[]) {
        assert.equal((await call(agents["kiosk-1"]!, url("/v1/logs/head"), { headers: bad })).status, 400, JSON.stringify(bad));
      }
      const nodes = (await operator("/v1/nodes")).json();
      assert.deepEqual(nodes.map((n: { id: string }) => n.id), [NODE("kiosk-1"), NODE("kiosk-2"), NODE("kiosk-3"), NODE("kiosk-4"), NODE("lab-1")]);
      assert.equal((await operator(`/v1/nodes/${encodeURIComponent(NODE("nobody"))}`)).status, 404);
    });

    test("a claimed revision never published to the node's group is kept as a claim and raised as a finding, once", async () => {
      const headers = { "x-edgeward-bundle-revision": "999999", "x-edgeward-stage": "fresh", "x-edgeward-log-seq": "40" };
      for (let i = 0; i < 2; i++) assert.equal((await call(agents["kiosk-4"]!, url("/v1/logs/head"), { headers })).status, 200);
      assert.deepEqual((await view("kiosk-4")).claimed, { bundleRevision: 999999, stage: "fresh", logSeq: 40 });
      const found = await findings(NODE("kiosk-4"), "claim-unpublished-revision");
      assert.deepEqual(found.map((f) => [f.severity, f.seqFrom, f.seqTo]), [["high", null, null]]);
      assert.match(found[0]!.explanation, new RegExp(`claims to enforce bundle revision 999999, newer than any published to group kiosks \\(the newest is ${await newest("kiosks")}\\)`));
      // The table and the JSON of the CLI read the same view.
      const listed = (await operator("/v1/nodes")).json().find((n: { id: string }) => n.id === NODE("kiosk-4"));
      assert.equal(listed.claimed.bundleRevision, 999999);
      assert.equal("bundleRevision" in listed, false, "a claim is never shown as a fact");
    });

    test("a claimed log seq behind the acknowledged head is raised as a finding over the records the node says it lacks", async () => {
      assert.equal((await call(agents["kiosk-4"]!, url("/v1/logs/head"), { headers: { "x-edgeward-log-seq": "12" } })).status, 200);
      const found = await findings(NODE("kiosk-4"), "claim-log-behind");
      assert.deepEqual(found.map((f) => [f.severity, f.seqFrom, f.seqTo]), [["high", 13, 40]]);
      assert.match(found[0]!.explanation, /claims its decision log ends at seq 12, but the control plane holds its records up to seq 40/);
    });

    test("the OpenAPI document describes every route, and nothing else", async () => {
      const doc = (await call(agents["kiosk-1"]!, url("/v1/openapi.json"))).json() as typeof OPENAPI_DOCUMENT;
      assert.equal(doc.openapi, "3.1.0");
      const described = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
      const served = cp.routes.map((r) => r.replace(/:(\w+)/g, "{$1}")).sort();
      assert.deepEqual(described, served);
      const node = doc.components.schemas.Node as { required: readonly string[]; properties: Record<string, { description?: string }> };
      assert.ok(node.required.includes("claimed"));
      assert.match(node.properties.claimed!.description!, /claims/);
      for (const kind of ["upload-foreign-chain", "claim-unpublished-revision", "claim-log-behind"]) {
        assert.ok((doc.components.schemas.Finding.properties.kind.enum as readonly string[]).includes(kind), kind);
      }
    });
  });
});


