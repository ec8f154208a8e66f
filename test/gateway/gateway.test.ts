import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { stringify } from "yaml";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { DEFECTS, writeDefectiveSvid } from "../support/svid-factory.ts";
import { FakeRunner } from "../support/fake-runner.ts";
import { TD, call, createPki, mtlsAgent } from "../support/gateway-fixture.ts";
import { runCli, startCli, type Started } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const exec = promisify(execFile);
const POLICY = fileURLToPath(new URL("./fixtures/policy.yaml", import.meta.url));
const CLIENTS = ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "mallory"] as const;
const CHAT = { model: "mistral-7b-instruct", messages: [{ role: "user", content: "hi" }] };

describe("edgeward serve (real process, real mTLS)", () => {
  let dir: string;
  let caPem: string;
  let fake: FakeRunner;
  let gw: Started;
  let base: string;
  let admin: string;
  const agents = new Map<string, Agent>();
  const as = (who: string) => agents.get(who)!;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-gw-"));
    ({ caPem } = await createPki(dir, CLIENTS));
    // A federated trust domain (configured) and a foreign one (not configured).
    await initDevCa({ dir: join(dir, "partner-ca"), trustDomain: "partner.org" });
    await issueSvid({ dir: join(dir, "partner-ca"), spiffeId: "spiffe://partner.org/ns/apps/sa/p", out: join(dir, "partner") });
    await initDevCa({ dir: join(dir, "other-ca"), trustDomain: "other.org" });
    await issueSvid({ dir: join(dir, "other-ca"), spiffeId: "spiffe://other.org/ns/apps/sa/alice", out: join(dir, "foreign") });
    for (const defect of DEFECTS) await writeDefectiveSvid(join(dir, "ca"), defect, join(dir, `bad-${defect}`));
    fake = await FakeRunner.start();
    copyFileSync(POLICY, join(dir, "policy.yaml"));
    writeFileSync(join(dir, "edgeward.yaml"), stringify({
      listen: "127.0.0.1:0",
      admin: "127.0.0.1:0",
      tls: { cert: "gateway.pem", key: "gateway.key" },
      trustBundles: { [TD]: "ca/ca.pem", "partner.org": "partner-ca/ca.pem" },
      policy: "policy.yaml",
      runners: [
        { name: "fake", url: fake.url, models: ["mistral-7b-instruct", "gpt-stream"] },
        { name: "slow", url: `${fake.url}/slow`, models: ["slow-model"], timeout: "300ms" },
        { name: "broken", url: `${fake.url}/broken`, models: ["broken-model"] },
        { name: "down", url: `unix:${join(dir, "nothing-here.sock")}`, models: ["down-model"] },
      ],
      decisionLog: "data/decisions.log",
      limits: { maxBodyBytes: 65536, maxTokens: 512 },
      logLevel: "warn",
    }));
    gw = await startCli(["serve", "--config", join(dir, "edgeward.yaml")], /listening on https:\/\/127\.0\.0\.1:(\d+) \(admin http:\/\/127\.0\.0\.1:(\d+)\)/);
    base = `https://127.0.0.1:${gw.match[1]}`;
    admin = `http://127.0.0.1:${gw.match[2]}`;
    for (const c of CLIENTS) agents.set(c, mtlsAgent(caPem, join(dir, c)));
  });

  after(async () => {
    await Promise.all([...agents.values()].map((a) => a.close()));
    await gw?.stop();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("an allowed principal gets a completion, relayed as the runner sent it", async () => {
    const r = await call(as("alice"), `${base}/v1/chat/completions`, { body: CHAT });
    assert.equal(r.status, 200);
    assert.equal(r.json().choices[0].message.content, "hello from the fake runner");
    assert.deepEqual(r.json().usage, { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 });
    assert.match(String(r.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
    // A request without max_tokens is given the configured ceiling before it is forwarded.
    assert.equal(fake.bodies.at(-1)!.max_tokens, 512);
  });

  test("completions and embeddings routes work", async () => {
    const c = await call(as("alice"), `${base}/v1/completions`, { body: { model: "mistral-7b-instruct", prompt: "hi" } });
    assert.equal(c.status, 200);
    assert.equal(c.json().choices[0].text, "hello from the fake runner");
    const e = await call(as("alice"), `${base}/v1/embeddings`, { body: { model: "mistral-7b-instruct", input: "hi" } });
    assert.equal(e.status, 200);
    assert.deepEqual(e.json().data[0].embedding, [0.1, 0.2]);
  });

  test("a principal no ALLOW rule matches is denied (default deny)", async () => {
    const r = await call(as("mallory"), `${base}/v1/chat/completions`, { body: CHAT });
    assert.equal(r.status, 403);
    assert.equal(r.json().error.code, "policy_denied");
    assert.equal(r.json().error.type, "permission_denied");
    assert.match(r.json().error.message, /no ALLOW policy matched/);
  });

  test("DENY overrides ALLOW (header condition)", async () => {
    const r = await call(as("alice"), `${base}/v1/chat/completions`, { body: CHAT, headers: { "x-debug": "true" } });
    assert.equal(r.status, 403);
    assert.match(r.json().error.message, /test\/no-debug/);
  });

  test("model conditions: bob may use gpt-stream but not mistral", async () => {
    assert.equal((await call(as("bob"), `${base}/v1/chat/completions`, { body: { ...CHAT, model: "gpt-stream" } })).status, 200);
    assert.equal((await call(as("bob"), `${base}/v1/chat/completions`, { body: CHAT })).status, 403);
  });

  test("path and method conditions: erin may only POST embeddings", async () => {
    assert.equal((await call(as("erin"), `${base}/v1/embeddings`, { body: { model: "mistral-7b-instruct", input: "x" } })).status, 200);
    assert.equal((await call(as("erin"), `${base}/v1/chat/completions`, { body: CHAT })).status, 403);
    assert.equal((await call(as("erin"), `${base}/v1/models`)).status, 403);
  });

  test("header conditions: frank needs x-tenant kiosk-*", async () => {
    assert.equal((await call(as("frank"), `${base}/v1/chat/completions`, { body: CHAT, headers: { "x-tenant": "kiosk-7" } })).status, 200);
    assert.equal((await call(as("frank"), `${base}/v1/chat/completions`, { body: CHAT, headers: { "x-tenant": "office-1" } })).status, 403);
    assert.equal((await call(as("frank"), `${base}/v1/chat/completions`, { body: CHAT })).status, 403);
  });

  test("CEL conditions: gina may not stream nor ask for more than 64 tokens", async () => {
    assert.equal((await call(as("gina"), `${base}/v1/chat/completions`, { body: { ...CHAT, max_tokens: 64 } })).status, 200);
    assert.equal((await call(as("gina"), `${base}/v1/chat/completions`, { body: { ...CHAT, max_tokens: 65 } })).status, 403);
    assert.equal((await call(as("gina"), `${base}/v1/chat/completions`, { body: { ...CHAT, max_tokens: 8, stream: true } })).status, 403);
  });

  test("/v1/models lists only the models the caller may use", async () => {
    const all = await call(as("alice"), `${base}/v1/models`);
    assert.equal(all.status, 200);
    assert.deepEqual(all.json().data.map((m: { id: string }) => m.id).sort(), ["broken-model", "down-model", "gpt-stream", "mistral-7b-instruct", "slow-model"]);
    const bob = await call(as("bob"), `${base}/v1/models`);
    assert.deepEqual(bob.json().data.map((m: { id: string }) => m.id), ["gpt-stream"]);
    assert.equal((await call(as("mallory"), `${base}/v1/models`)).status, 403);
  });

  test("a federated trust domain is accepted; a foreign one is refused at the handshake", async () => {
    const partner = mtlsAgent(caPem, join(dir, "partner"));
    const foreign = mtlsAgent(caPem, join(dir, "foreign"));
    try {
      assert.equal((await call(partner, `${base}/v1/chat/completions`, { body: CHAT })).status, 200);
      const r = await call(foreign, `${base}/v1/chat/completions`, { body: CHAT });
      assert.equal(r.status, 401);
      assert.equal(r.json().error.code, "invalid_client_certificate");
      assert.match(r.json().error.message, /trust domain/);
    } finally {
      await partner.close();
      await foreign.close();
    }
  });

  test("no client certificate: 401, but the health probe answers", async () => {
    const anon = mtlsAgent(caPem);
    try {
      const r = await call(anon, `${base}/v1/chat/completions`, { body: CHAT });
      assert.equal(r.status, 401);
      assert.match(r.json().error.message, /no client certificate/);
      assert.equal((await call(anon, `${base}/v1/health`)).status, 200);
    } finally {
      await anon.close();
    }
  });

  for (const defect of DEFECTS) {
    test(`an SVID with defect "${defect}" never reaches the pipeline`, async () => {
      const agent = mtlsAgent(caPem, join(dir, `bad-${defect}`));
      try {
        const before = fake.bodies.length;
        const r = await call(agent, `${base}/v1/chat/completions`, { body: CHAT });
        assert.equal(r.status, 401, r.text);
        assert.equal(r.json().error.code, "invalid_client_certificate");
        assert.equal(fake.bodies.length, before);
      } finally {
        await agent.close();
      }
    });
  }

  test("streaming is relayed intact and in order, with usage only when asked", async () => {
    const res = await request(`${base}/v1/chat/completions`, {
      dispatcher: as("alice"), method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...CHAT, model: "gpt-stream", stream: true, max_tokens: 40 }),
    });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers["content-type"]), /^text\/event-stream/);
    const text = await res.body.text();
    const events = text.split("\n\n").filter(Boolean);
    assert.equal(events.at(-1), "data: [DONE]");
    const contents = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)).choices[0].delta.content);
    assert.deepEqual(contents, Array.from({ length: 40 }, (_, i) => `t${i} `));
    // The gateway asked the runner for usage; the client did not, so neither the usage chunk nor the `"usage":null`
    // the runner put in every chunk is forwarded.
    assert.deepEqual(fake.bodies.at(-1)!.stream_options, { include_usage: true });
    assert.doesNotMatch(text, /usage/);
    assert.deepEqual(Object.keys(JSON.parse(events[0]!.slice(6))), ["id", "object", "created", "model", "choices"]);
    const withUsage = await call(as("alice"), `${base}/v1/chat/completions`, { body: { ...CHAT, model: "gpt-stream", stream: true, max_tokens: 3, stream_options: { include_usage: true } } });
    assert.match(withUsage.text, /"usage":\{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8\}/);
    assert.equal(withUsage.text.match(/"usage":null/g)?.length, 3, "a client that asked for usage gets the chunks as the runner sent them");
  });

  test("a client that disconnects mid-stream cancels the upstream generation", async () => {
    const ac = new AbortController();
    const res = await request(`${base}/v1/chat/completions`, {
      dispatcher: as("alice"), method: "POST", headers: { "content-type": "application/json" }, signal: ac.signal,
      body: JSON.stringify({ ...CHAT, model: "gpt-stream", stream: true, max_tokens: 500, x_test_delay_ms: 20 }),
    });
    const id = String(res.headers["x-request-id"]);
    const reader = res.body[Symbol.asyncIterator]();
    await reader.next();
    ac.abort();
    await reader.return?.().catch(() => undefined);
    await waitFor("the runner's request to be cancelled", () => fake.aborted.includes(id));
  });

  test("a request reserves prompt + max_tokens from the token budget: one that can never fit is a 400, one that sets no bound is given what fits", async () => {
    // 10 tokens per minute, maxTokens 100: 7 (the prompt "hi" is 1 token, + 3 framing the message, + 3 priming the
    // answer) + 100 can never be admitted.
    const never = await call(as("dave"), `${base}/v1/chat/completions`, { body: { ...CHAT, model: "gpt-stream", stream: true, max_tokens: 100 } });
    assert.equal(never.status, 400);
    assert.equal(never.json().error.code, "reservation_exceeds_budget");
    // Without a bound the request is given the largest answer the budget can hold: 10 - 7 = 3 tokens.
    const res = await request(`${base}/v1/chat/completions`, {
      dispatcher: as("dave"), method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...CHAT, model: "gpt-stream", stream: true }),
    });
    const events = (await res.body.text()).split("\n\n").filter(Boolean);
    assert.equal(fake.bodies.at(-1)!.max_tokens, 3);
    assert.equal(events.at(-1), "data: [DONE]");
    assert.equal(events.length - 1, 3);
    // The runner reported 5 prompt tokens + 3, so the budget holds 10 - 8: the next request (7 + 1) waits.
    const next = await call(as("dave"), `${base}/v1/chat/completions`, { body: { ...CHAT, max_tokens: 1 } });
    assert.equal(next.status, 429);
    assert.ok(Number(next.headers["retry-after"]) >= 1);
  });

  test("a runner that sends more than the request reserved is stopped there: the stream ends cleanly and the runner is cancelled", async () => {
    const res = await request(`${base}/v1/chat/completions`, {
      dispatcher: as("alice"), method: "POST", headers: { "content-type": "application/json" },
      // The stand-in ignores max_tokens and sends x_test_chunks chunks.
      body: JSON.stringify({ ...CHAT, model: "gpt-stream", stream: true, max_tokens: 7, x_test_chunks: 100, x_test_delay_ms: 5 }),
    });
    const id = String(res.headers["x-request-id"]);
    const events = (await res.body.text()).split("\n\n").filter(Boolean);
    assert.equal(events.at(-1), "data: [DONE]");
    const last = JSON.parse(events.at(-2)!.slice(6));
    assert.equal(last.error.code, "token_budget_exhausted");
    assert.equal(events.length - 2, 7);
    await waitFor("the runner's request to be cancelled", () => fake.aborted.includes(id));
  });

  test("requestsPerMinute: the third request in a minute gets 429 with Retry-After", async () => {
    assert.equal((await call(as("carol"), `${base}/v1/chat/completions`, { body: CHAT })).status, 200);
    assert.equal((await call(as("carol"), `${base}/v1/chat/completions`, { body: CHAT })).status, 200);
    const r = await call(as("carol"), `${base}/v1/chat/completions`, { body: CHAT });
    assert.equal(r.status, 429);
    assert.equal(r.json().error.type, "rate_limit_error");
    // 2 per minute: one request back every 30 s (29 when the three requests took over a second).
    assert.match(String(r.headers["retry-after"]), /^(29|30)$/);
  });

  test("max_tokens above the caller's cap is a 400", async () => {
    const r = await call(as("dave"), `${base}/v1/chat/completions`, { body: { ...CHAT, max_tokens: 101 } });
    assert.equal(r.status, 400);
    assert.equal(r.json().error.code, "max_tokens_exceeded");
  });

  test("bad input: malformed JSON, wrong shape, unknown route, wrong method", async () => {
    const bad = await call(as("alice"), `${base}/v1/chat/completions`, { body: "{not json" });
    assert.equal(bad.status, 400);
    assert.deepEqual(Object.keys(bad.json().error).sort(), ["code", "message", "type"]);
    assert.equal(bad.json().error.code, "invalid_json");
    const shape = await call(as("alice"), `${base}/v1/chat/completions`, { body: { model: "mistral-7b-instruct", messages: "hi" } });
    assert.equal(shape.status, 400);
    assert.match(shape.json().error.message, /^messages: /);
    assert.equal((await call(as("alice"), `${base}/v1/chat/completions`, { body: [1, 2] })).status, 400);
    assert.equal((await call(as("alice"), `${base}/v2/whatever`)).status, 404);
    assert.equal((await call(as("alice"), `${base}/v1/chat/completions`)).status, 405);
  });

  test("unknown model → 404; runner down → 502; runner error → 502; runner too slow → 504", async () => {
    const unknown = await call(as("alice"), `${base}/v1/chat/completions`, { body: { ...CHAT, model: "nope" } });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json().error.code, "model_not_found");
    const down = await call(as("alice"), `${base}/v1/chat/completions`, { body: { ...CHAT, model: "down-model" } });
    assert.equal(down.status, 502);
    assert.doesNotMatch(down.text, /nothing-here|\/tmp\//, "no paths in errors");
    assert.deepEqual(down.json().error, { message: "runner down is unavailable", type: "upstream_error", code: "upstream_unavailable" });
    // A runner that answers 5xx: its own message comes back, as upstream_error, streamed or not.
    for (const stream of [false, true]) {
      const broken = await call(as("alice"), `${base}/v1/chat/completions`, { body: { ...CHAT, model: "broken-model", stream } });
      assert.equal(broken.status, 502);
      assert.deepEqual(broken.json().error, { message: "runner broken answered 500: boom", type: "upstream_error", code: "upstream_error" });
    }
    const slow = await call(as("alice"), `${base}/v1/chat/completions`, { body: { ...CHAT, model: "slow-model" } });
    assert.equal(slow.status, 504);
    assert.equal(slow.json().error.code, "upstream_timeout");
  });

  test("an oversized body gets a 413 response, not a reset", async () => {
    const big = JSON.stringify({ ...CHAT, messages: [{ role: "user", content: "x".repeat(200_000) }] });
    const r = await call(as("alice"), `${base}/v1/chat/completions`, { body: big });
    assert.equal(r.status, 413);
    assert.equal(r.json().error.code, "request_too_large");
  });

  test("curl uploading 5 MB sees the 413 (with and without Content-Length) and, without a certificate, the 401", async () => {
    const big = join(dir, "big.json");
    writeFileSync(big, JSON.stringify({ ...CHAT, messages: [{ role: "user", content: "x".repeat(5_000_000) }] }));
    for (const extra of [[], ["-H", "transfer-encoding: chunked"]]) {
      const { stdout } = await exec("curl", [
        "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cert", join(dir, "alice.pem"), "--key", join(dir, "alice.key"), "--cacert", caPem,
        "-H", "content-type: application/json", ...extra, "--data-binary", `@${big}`, `https://localhost:${new URL(base).port}/v1/chat/completions`,
      ], { timeout: 30_000 });
      assert.equal(stdout, "413");
    }
    // Refused for identity before the body is read: the 401 still arrives intact.
    const { stdout } = await exec("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", caPem, "-H", "content-type: application/json",
      "--data-binary", `@${big}`, `https://localhost:${new URL(base).port}/v1/chat/completions`], { timeout: 30_000 });
    assert.equal(stdout, "401");
  });

  test("/metrics on the admin listener counts requests, denials and TLS failures", async () => {
    const res = await request(`${admin}/metrics`);
    const text = await res.body.text();
    assert.equal(res.statusCode, 200);
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? "NaN");
    assert.ok(value(/^edgeward_requests_total\{route="\/v1\/chat\/completions",code="200"\} (\d+)/m) >= 5);
    assert.ok(value(/^edgeward_denials_total\{reason="policy"\} (\d+)/m) >= 5);
    assert.ok(value(/^edgeward_denials_total\{reason="budget"\} (\d+)/m) >= 1);
    assert.ok(value(/^edgeward_tls_failures_total\{check="no-certificate"\} (\d+)/m) >= 1);
    assert.ok(value(/^edgeward_tls_failures_total\{check="leaf-ca"\} (\d+)/m) >= 1);
    // The main listener does not serve metrics.
    assert.equal((await call(as("alice"), `${base}/metrics`)).status, 404);
    assert.equal((await request(`${admin}/healthz`)).statusCode, 200);
  });

  test("/readyz and edgeward_runner_up say which runners are down; one runner up is enough to be ready", async () => {
    const res = await request(`${admin}/readyz`);
    const body = await res.body.json() as { status: string; runners: Record<string, { up: boolean; reason?: string }> };
    assert.equal(res.statusCode, 200);
    assert.equal(body.status, "ready");
    assert.deepEqual(Object.fromEntries(Object.entries(body.runners).map(([name, r]) => [name, r.up])), { fake: true, slow: false, broken: false, down: false });
    assert.match(body.runners.down!.reason!, /^unreachable \(ENOENT\)$/);
    assert.equal(body.runners.broken!.reason, "GET /v1/models answered 500");
    assert.equal(body.runners.slow!.reason, "GET /v1/models did not answer within 2000 ms");
    const metrics = await (await request(`${admin}/metrics`)).body.text();
    assert.match(metrics, /^edgeward_runner_up\{runner="fake"\} 1$/m);
    assert.match(metrics, /^edgeward_runner_up\{runner="down"\} 0$/m);
  });

  test("every decision is in the log, the chain verifies, and tampering is caught", async () => {
    const logPath = join(dir, "data", "decisions.log");
    const lines = readFileSync(logPath, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.length >= 20);
    assert.ok(lines.some((r) => r.decision === "DENY" && r.principal === "spiffe://example.org/ns/apps/sa/mallory" && r.status === 403));
    assert.ok(lines.some((r) => r.decision === "ALLOW" && r.policy === "test/alice" && r.rule === 0));
    assert.ok(!readFileSync(logPath, "utf8").includes("hello there"), "prompt text is never logged");
    const ok = await runCli(["log", "verify", logPath]);
    assert.equal(ok.code, 0, ok.stderr);
    const copy = join(dir, "tampered.log");
    const raw = readFileSync(logPath, "utf8").split("\n");
    raw[2] = raw[2]!.replace(/"reason":"[^"]*"/, '"reason":"edited"');
    writeFileSync(copy, raw.join("\n"));
    const bad = await runCli(["log", "verify", copy]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout + bad.stderr, /seq 3\b/);
  });
});
