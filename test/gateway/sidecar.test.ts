import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { stringify } from "yaml";
import { loadConfig } from "../../src/config/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { FakeRunner } from "../support/fake-runner.ts";
import { call, createPki, mtlsAgent } from "../support/gateway-fixture.ts";

const POLICY = fileURLToPath(new URL("./fixtures/policy.yaml", import.meta.url));
const ALICE = "spiffe://example.org/ns/apps/sa/alice";
/** What Istio's inbound sidecar appends for the connection it terminated. */
const xfcc = (...uris: string[]) => `By=spiffe://example.org/ns/edge/sa/gateway;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="";${uris.map((u) => `URI=${u}`).join(";")}`;
const body = JSON.stringify({ model: "mistral-7b-instruct", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });

describe("sidecar mode: identity from the local Envoy's x-forwarded-client-cert", () => {
  let dir: string;
  let fake: FakeRunner;
  const gateways: Gateway[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-sidecar-"));
    fake = await FakeRunner.start();
    await createPki(dir, ["alice"]);
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(patch: Record<string, unknown>): Promise<Gateway> {
    const file = join(dir, `edgeward-${gateways.length}.yaml`);
    writeFileSync(file, stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "gateway.pem", key: "gateway.key" },
      trustBundles: { "example.org": "ca/ca.pem" }, policy: POLICY,
      runners: [{ name: "fake", url: fake.url, models: ["mistral-7b-instruct"] }],
      decisionLog: `decisions-${gateways.length}.log`, ...patch,
    }));
    const gateway = await Gateway.start(await loadConfig(file), { logger: createLogger("silent") });
    gateways.push(gateway);
    return gateway;
  }

  async function post(url: string, headers: Record<string, string>, dispatcher?: Agent) {
    const res = await request(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body, ...(dispatcher ? { dispatcher } : {}) });
    const text = await res.body.text();
    return { status: res.statusCode, text, json: () => JSON.parse(text) };
  }

  it("listens on plain HTTP, takes the caller from the last XFCC element, and runs the same pipeline", async () => {
    const gw = await start({ identity: { source: "xfcc" } });
    assert.match(gw.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const ok = await post(gw.url, { "x-forwarded-client-cert": xfcc(ALICE) });
    assert.equal(ok.status, 200, ok.text);
    const records = readFileSync(join(dir, "decisions-0.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(records.at(-1).principal, ALICE);
    assert.equal(records.at(-1).decision, "ALLOW");
    // An earlier element is whatever the caller sent: only the sidecar's own (last) one counts.
    const spoofed = await post(gw.url, { "x-forwarded-client-cert": `URI=${ALICE},${xfcc("spiffe://example.org/ns/apps/sa/mallory")}` });
    assert.equal(spoofed.status, 403);
    // Policy, budgets and the rest apply as on the mTLS listener: the DENY on x-debug still denies.
    assert.equal((await post(gw.url, { "x-forwarded-client-cert": xfcc(ALICE), "x-debug": "true" })).status, 403);
  });

  it("refuses a missing header, several identities, a malformed header and a foreign trust domain, naming the check", async () => {
    const gw = await start({ identity: { source: "xfcc" } });
    const cases: [Record<string, string>, string][] = [
      [{}, "xfcc-missing"],
      [{ "x-forwarded-client-cert": xfcc(ALICE, "spiffe://example.org/ns/apps/sa/bob") }, "xfcc-several-identities"],
      [{ "x-forwarded-client-cert": 'By=x;URI="unterminated' }, "xfcc-"],
      [{ "x-forwarded-client-cert": xfcc("spiffe://other.org/ns/apps/sa/alice") }, "unknown-trust-domain"],
      [{ "x-forwarded-client-cert": "Hash=abc" }, "xfcc-no-identity"],
    ];
    for (const [headers, check] of cases) {
      const r = await post(gw.url, headers);
      assert.equal(r.status, 401, `${JSON.stringify(headers)} → ${r.text}`);
      assert.equal(r.json().error.code, "invalid_client_certificate");
    }
    const metrics = await (await request(`http://127.0.0.1:${gw.adminAddress.port}/metrics`)).body.text();
    for (const check of ["xfcc-missing", "xfcc-several-identities", "unknown-trust-domain", "xfcc-no-identity"]) {
      assert.match(metrics, new RegExp(`edgeward_tls_failures_total\\{check="${check}"\\} 1`));
    }
  });

  it("a connection from a peer that is not the trusted sidecar is refused, header or not", async () => {
    const gw = await start({ identity: { source: "xfcc", trustedPeers: ["10.0.0.9"] } });
    const r = await post(gw.url, { "x-forwarded-client-cert": xfcc(ALICE) });
    assert.equal(r.status, 401);
    assert.match(r.json().error.message, /not a trusted sidecar/);
    assert.equal((await request(`${gw.url}/v1/health`)).statusCode, 200, "probes still answer");
  });

  it("listens on a Unix socket (0660) that the sidecar reaches", async () => {
    const socket = join(dir, "gateway.sock");
    const gw = await start({ identity: { source: "xfcc" }, listen: `unix:${socket}` });
    assert.equal(gw.url, `unix:${socket}`);
    assert.equal(statSync(socket).mode & 0o777, 0o660);
    const agent = new Agent({ connect: { socketPath: socket } });
    try {
      const r = await post("http://localhost", { "x-forwarded-client-cert": xfcc(ALICE) }, agent);
      assert.equal(r.status, 200, r.text);
    } finally {
      await agent.close();
    }
  });

  it("on the mTLS listener a caller-written XFCC header is no identity and satisfies no policy condition", async () => {
    writeFileSync(join(dir, "xfcc-policy.yaml"), `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-header, namespace: test}
spec:
  action: ALLOW
  rules:
    - when:
        - key: request.headers[x-forwarded-client-cert]
          values: ["*"]
`);
    const gw = await start({ policy: join(dir, "xfcc-policy.yaml") });
    const alice = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "alice"));
    try {
      const r = await call(alice, `https://127.0.0.1:${gw.address.port}/v1/chat/completions`, { body: JSON.parse(body), headers: { "x-forwarded-client-cert": xfcc("spiffe://example.org/ns/apps/sa/admin") } });
      assert.equal(r.status, 403);
    } finally {
      await alice.close();
    }
  });

  it("config: a sidecar listener off loopback, a Unix socket for mTLS, and a bad trusted peer are refused", async () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ identity: { source: "xfcc" }, listen: "0.0.0.0:8080" }, /config: listen: in sidecar mode the plain-HTTP listener must be on loopback/],
      [{ listen: `unix:${join(dir, "x.sock")}` }, /config: listen: a Unix socket is only for sidecar mode/],
      [{ identity: { source: "xfcc", trustedPeers: ["not-an-ip"] } }, /config: identity\.trustedPeers: /],
    ];
    for (const [patch, message] of bad) await assert.rejects(start(patch), message);
  });
});
