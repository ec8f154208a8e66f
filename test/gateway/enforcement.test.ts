import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { connect } from "node:tls";
import fc from "fast-check";
import type { Agent } from "undici";
import { stringify } from "yaml";
import { verifyLogFile, type DecisionRecord } from "../../src/decision-log/index.ts";
import { loadConfig } from "../../src/config/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { call, createPki, mtlsAgent, type Reply } from "../support/gateway-fixture.ts";
import { waitFor } from "../support/wait.ts";

/**
 * What a hostile caller with a valid certificate tries against the limits a policy sets: token ceilings read from
 * one field and served from another, budgets overshot by concurrency or by `n`, bodies that hold a connection or
 * decode differently downstream, and more connections than the gateway can hold.
 */

const CALLERS = ["capped", "cel", "budgeted", "chooser", "alice", "bob", "mallory", "stranger"] as const;
const id = (sa: string) => `spiffe://example.org/ns/apps/sa/${sa}`;
const POLICY = `apiVersion: edgeward.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: limits, namespace: test}
spec:
  action: ALLOW
  rules:
    - from: [{source: {principals: ["${id("capped")}"]}}]
      limits: {maxTokens: 16}
    - from: [{source: {principals: ["${id("cel")}"]}}]
      when: [{cel: "request.max_tokens <= 32"}]
    - from: [{source: {principals: ["${id("budgeted")}"]}}]
      limits: {tokensPerMinute: 1000, maxTokens: 64}
    - from: [{source: {principals: ["${id("chooser")}"]}}]
      limits: {maxTokens: 16, maxChoices: 4}
    - from: [{source: {principals: ["${id("alice")}", "${id("bob")}", "${id("mallory")}"]}}]
`;
const CHAT = { model: "m", messages: [{ role: "user", content: "hi" }] };
/** The gateway's clock in these tests stands still (budgets do not refill): a second after the SVIDs were issued. */
let T = 0;

/**
 * A stand-in runner that generates as many tokens as the most generous runner would read from the body it is sent
 * (llama.cpp: n_predict first; vLLM: max_completion_tokens first; Ollama: options.num_predict; TGI:
 * max_new_tokens), times max(n, best_of), and reports them as usage (unless x_test_no_usage). `hold` keeps answers
 * back until released.
 */
class ExactRunner {
  readonly server: Server;
  readonly bodies: Record<string, any>[] = [];
  #held: (() => void)[] = [];
  hold = false;

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(): Promise<ExactRunner> {
    const server = createServer();
    const runner = new ExactRunner(server);
    server.on("request", (req, res) => void runner.#handle(req, res));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return runner;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Tokens the most generous runner would generate for `body`. */
  static tokens(body: Record<string, any>): number {
    const reads = [body.max_tokens, body.max_completion_tokens, body.n_predict, body.max_new_tokens, body.options?.num_predict]
      .filter((v): v is number => typeof v === "number");
    // A runner with no bound in the body generates until its context is full.
    const perSequence = reads.length === 0 ? 100_000 : Math.max(...reads);
    return perSequence * Math.max(Number(body.n ?? 1), Number(body.best_of ?? 1));
  }

  /** Requests held now. */
  get waiting(): number {
    return this.#held.length;
  }

  release(): void {
    this.hold = false;
    for (const go of this.#held.splice(0)) go();
  }

  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === "GET") {
      // The gateway's health probe (GET /v1/models).
      res.writeHead(200, { "content-type": "application/json" }).end('{"object":"list","data":[]}');
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, any>;
    this.bodies.push(body);
    if (this.hold) await new Promise<void>((go) => this.#held.push(go));
    const tokens = ExactRunner.tokens(body);
    const usage = body.x_test_no_usage ? {} : { usage: { prompt_tokens: 1, completion_tokens: tokens, total_tokens: tokens + 1 } };
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({
      id: "x", object: "chat.completion", created: 1, model: body.model,
      choices: [{ index: 0, message: { role: "assistant", content: "abcd".repeat(Math.min(tokens, 100_000)) }, finish_reason: "length" }],
      ...usage,
    }));
  }
}

/** Log lines the gateway wrote, parsed. */
class LogCapture extends Writable {
  readonly lines: { level: number; msg: string }[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    for (const line of chunk.toString().split("\n")) if (line !== "") this.lines.push(JSON.parse(line));
    done();
  }
}

describe("enforcement under attack (in-process gateway, real mTLS)", () => {
  let dir: string;
  let caPem: string;
  let runner: ExactRunner;
  let n = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-enforce-"));
    ({ caPem } = await createPki(dir, CALLERS));
    T = Date.now() + 1000;
    writeFileSync(join(dir, "policy.yaml"), POLICY);
    runner = await ExactRunner.start();
  });

  after(async () => {
    await runner?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  interface Started {
    gateway: Gateway;
    url: string;
    as: (who: string) => Agent;
    logs: LogCapture;
    records: () => DecisionRecord[];
    close: () => Promise<void>;
  }

  /** A gateway in front of the stand-in; the clock stands still unless a test moves it. */
  async function start(options: { limits?: Record<string, unknown>; runner?: Record<string, unknown>; clock?: () => number } = {}): Promise<Started> {
    const file = join(dir, `gateway-${++n}.yaml`);
    writeFileSync(file, stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "gateway.pem", key: "gateway.key" },
      trustBundles: { "example.org": "ca/ca.pem" }, policy: "policy.yaml",
      runners: [{ name: "exact", url: runner.url, models: ["m"], ...options.runner }],
      decisionLog: `data-${n}/decisions.log`, limits: options.limits ?? {},
    }));
    const logs = new LogCapture();
    const gateway = await Gateway.start(await loadConfig(file), { logger: createLogger("info", logs), clock: options.clock ?? (() => T) });
    const agents = new Map<string, Agent>();
    const logPath = gateway.state.config.decisionLog;
    return {
      gateway, logs, url: gateway.url,
      as: (who) => {
        let a = agents.get(who);
        if (a === undefined) agents.set(who, (a = mtlsAgent(caPem, join(dir, who))));
        return a;
      },
      records: () => readFileSync(logPath, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as DecisionRecord),
      async close() {
        await Promise.all([...agents.values()].map((a) => a.close()));
        await gateway.close(0);
      },
    };
  }

  const chat = (g: Started, who: string, body: unknown, path = "/v1/chat/completions"): Promise<Reply> => call(g.as(who), `${g.url}${path}`, { body });

  test("the token ceiling holds whichever field a runner reads: bounds must agree, and the runner is sent the cap in all of them", async () => {
    const g = await start();
    try {
      const refused = async (who: string, body: object, code: string) => {
        const before = runner.bodies.length;
        const r = await chat(g, who, { ...CHAT, ...body });
        assert.equal(r.status, code === "policy_denied" ? 403 : 400, `${JSON.stringify(body)}: ${r.text}`);
        assert.equal(r.json().error.code, code);
        assert.equal(runner.bodies.length, before, "a refused request never reaches the runner");
      };
      // The attacks as measured: 500 tokens served under a 16-token rule, 300 under a CEL `<= 32` rule.
      await refused("capped", { max_completion_tokens: 1, max_tokens: 500 }, "contradictory_token_limits");
      await refused("cel", { max_tokens: 1, max_completion_tokens: 300 }, "contradictory_token_limits");
      // Each runner-specific bound counts against the cap.
      for (const body of [{ max_tokens: 17 }, { max_completion_tokens: 17 }, { n_predict: 500 }, { max_new_tokens: 17 }, { options: { num_predict: 500 } }]) {
        await refused("capped", body, "max_tokens_exceeded");
      }
      // llama.cpp reads n_predict -1 as "no limit", Ollama num_predict -2 as "fill the context".
      await refused("capped", { n_predict: -1 }, "invalid_request");
      await refused("capped", { options: { num_predict: -2 } }, "invalid_request");
      // CEL sees the one normalized value; a request that sets no bound is seen with the cap it would be given.
      await refused("cel", { max_completion_tokens: 300 }, "policy_denied");
      await refused("cel", {}, "policy_denied");
      assert.equal((await chat(g, "cel", { ...CHAT, n_predict: 32 })).status, 200);
      assert.deepEqual([runner.bodies.at(-1)!.max_tokens, runner.bodies.at(-1)!.n_predict], [32, 32]);

      // What is forwarded is what was decided on.
      assert.equal((await chat(g, "capped", CHAT)).status, 200);
      assert.equal(runner.bodies.at(-1)!.max_tokens, 16);
      assert.equal((await chat(g, "capped", { ...CHAT, max_completion_tokens: 8, options: { num_predict: 8, temperature: 0 } })).status, 200);
      assert.deepEqual(runner.bodies.at(-1), { ...CHAT, max_tokens: 8, max_completion_tokens: 8, options: { num_predict: 8, temperature: 0 } });
      // The embedded runner's completions route reads max_tokens only: it is always set.
      assert.equal((await chat(g, "capped", { model: "m", prompt: "hi", max_completion_tokens: 8 }, "/v1/completions")).status, 200);
      assert.deepEqual([runner.bodies.at(-1)!.max_tokens, runner.bodies.at(-1)!.max_completion_tokens], [8, 8]);
    } finally {
      await g.close();
    }
  });

  test("property: for any body, the tokens any runner is asked for never exceed the policy's cap × allowed choices", async () => {
    const g = await start();
    try {
      const value = fc.oneof(fc.integer({ min: -3, max: 40 }), fc.constant(null), fc.constant(1e9), fc.double(), fc.string({ maxLength: 3 }), fc.boolean());
      const field = (name: string) => fc.option(value.map((v) => [name, v] as const), { nil: undefined });
      const body = fc.tuple(
        fc.constantFrom("capped", "chooser"),
        fc.constantFrom("/v1/chat/completions", "/v1/completions"),
        ...["max_tokens", "max_completion_tokens", "n_predict", "max_new_tokens", "n", "best_of"].map(field),
        fc.option(value, { nil: undefined }),
      );
      await fc.assert(fc.asyncProperty(body, async ([who, path, ...rest]) => {
        const numPredict = rest.pop() as unknown;
        const fields = Object.fromEntries((rest as (readonly [string, unknown] | undefined)[]).filter((f) => f !== undefined));
        const sent = { ...(path === "/v1/completions" ? { model: "m", prompt: "hi" } : CHAT), ...fields, ...(numPredict === undefined ? {} : { options: { num_predict: numPredict } }) };
        const before = runner.bodies.length;
        const r = await chat(g, who, sent, path);
        assert.ok(r.status === 200 || r.status === 400, `${JSON.stringify(sent)} → ${r.status} ${r.text}`);
        if (r.status === 400) {
          assert.equal(runner.bodies.length, before);
          return;
        }
        const cap = 16 * (who === "chooser" ? 4 : 1);
        const asked = ExactRunner.tokens(runner.bodies.at(-1)!);
        assert.ok(asked <= cap, `${JSON.stringify(sent)} was forwarded as ${JSON.stringify(runner.bodies.at(-1))}: ${asked} tokens > ${cap}`);
      }), { numRuns: 150 });
    } finally {
      await g.close();
    }
  });

  test("budgets hold under concurrency, n, missing usage and huge prompts (overshoot 1.0×)", async () => {
    let g = await start({ limits: { maxInflightPerPrincipal: 256, maxConnectionsPerPrincipal: 256 } });
    try {
      // 200 concurrent requests of 64 tokens against 1,000 tokens a minute: each reserves 7 (the prompt "hi" with
      // chat's framing) + 64 = 71, so while all are in flight exactly floor(1000 / 71) = 14 get through.
      const before = runner.bodies.length;
      runner.hold = true;
      let refused = 0;
      const pending = Array.from({ length: 200 }, () => chat(g, "budgeted", { ...CHAT, max_tokens: 64 }).then((r) => {
        if (r.status !== 200) refused++;
        return r;
      }));
      await waitFor("every request admitted or refused", () => runner.waiting + refused === 200);
      assert.equal(runner.waiting, 14);
      runner.release();
      const replies = await Promise.all(pending);
      const served = runner.bodies.slice(before).reduce((sum, b) => sum + ExactRunner.tokens(b) + 1, 0);
      assert.equal(replies.filter((r) => r.status === 200).length, 14);
      assert.ok(replies.filter((r) => r.status !== 200).every((r) => r.status === 429 && r.json().error.code === "rate_limit_exceeded"));
      assert.ok(served <= 1000, `served ${served} tokens against a budget of 1000`);
      // One request with n: 1000 would be 64,000 tokens: n is bounded by maxChoices (default 1).
      const many = await chat(g, "budgeted", { ...CHAT, max_tokens: 64, n: 100 });
      assert.equal(many.status, 400);
      assert.equal(many.json().error.code, "too_many_choices");
      // Beyond OpenAI's own ceiling of 128 the body is malformed.
      assert.equal((await chat(g, "budgeted", { ...CHAT, max_tokens: 64, n: 1000 })).json().error.code, "invalid_request");
      assert.equal((await chat(g, "budgeted", { ...CHAT, max_tokens: 64, best_of: 5 })).json().error.code, "too_many_choices");
    } finally {
      await g.close();
    }

    g = await start();
    try {
      const budget = () => g.gateway.state.budgets.remainingTokens(id("budgeted"), { tokensPerMinute: 1000 }, T);
      // A runner that reports no usage is charged for the text it sent (and the reservation held it meanwhile).
      assert.equal((await chat(g, "budgeted", { ...CHAT, max_tokens: 50, x_test_no_usage: true })).status, 200);
      // 7 for the prompt (the gateway's estimate, as the runner reported none) + 50 for the answer.
      assert.equal(budget(), 1000 - 7 - 50);
      // A prompt larger than the whole budget is refused up front and charges nothing (before: a 1 MB prompt locked
      // its caller out for hours).
      const huge = await chat(g, "budgeted", { ...CHAT, messages: [{ role: "user", content: "x".repeat(900_000) }] });
      assert.equal(huge.status, 400);
      assert.equal(huge.json().error.code, "prompt_exceeds_budget");
      assert.equal(budget(), 943);
      // A request that sets no bound is given what the budget can hold (64, the rule's cap), and what it did not use
      // goes back.
      assert.equal((await chat(g, "budgeted", { ...CHAT, max_tokens: 10 })).status, 200);
      assert.equal(budget(), 943 - 11, "charged what the runner reported: 1 prompt token + 10");
    } finally {
      await g.close();
    }
  });

  test("a body that could decode differently downstream is refused before the decision: no ALLOW is recorded for it", async () => {
    const g = await start();
    try {
      const before = runner.bodies.length;
      const deep = `{"model":"m","messages":[{"role":"user","content":"hi"}],"x":${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
      const r = await chat(g, "alice", deep);
      assert.equal(r.status, 400);
      assert.equal(r.json().error.code, "too_deeply_nested");
      for (const dup of ['{"model":"Y","model":"m","messages":[{"role":"user","content":"hi"}]}', '{"model":"m","mod\\u0065l":"Y","messages":[]}']) {
        const d = await chat(g, "alice", dup);
        assert.equal(d.status, 400, dup);
        assert.equal(d.json().error.code, "duplicate_key");
      }
      assert.equal(runner.bodies.length, before);
      const records = g.records();
      assert.deepEqual(records.map((x) => [x.decision, x.status]), [["DENY", 400], ["DENY", 400], ["DENY", 400]]);
      assert.equal((await verifyLogFile(g.gateway.state.config.decisionLog)).ok, true);
    } finally {
      await g.close();
    }
  });

  test("a drip-fed body is cut at limits.bodyTimeout with a 408, recorded, and the connection closed", async () => {
    const g = await start({ limits: { bodyTimeout: "300ms" } });
    try {
      const { status, closed } = await rawRequest(g, "alice", 'POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"model"');
      assert.equal(status, 408);
      assert.equal(closed, true);
      assert.deepEqual(g.records().map((x) => [x.decision, x.status, x.principal]), [["DENY", 408, id("alice")]]);
    } finally {
      await g.close();
    }
  });

  test("a caller no rule allows is refused before its body is read: a drip-fed body holds nothing", async () => {
    const g = await start();
    try {
      // The default bodyTimeout is 30 s: an answer now means the body was not waited for.
      const { status, text } = await rawRequest(g, "stranger", 'POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"model"');
      assert.equal(status, 403);
      assert.match(text, /no ALLOW policy matched \(default deny\); no ALLOW rule can match POST \/v1\/chat\/completions for this caller whatever the body \(decided before reading it\)/);
      assert.deepEqual(g.records().map((x) => [x.decision, x.status, x.principal]), [["DENY", 403, id("stranger")]]);
      // A caller a rule may allow is read as usual.
      assert.equal((await chat(g, "alice", CHAT)).status, 200);
    } finally {
      await g.close();
    }
  });

  test("requests in flight are capped per caller (429) and in all (503); others keep being served", async () => {
    const g = await start({ limits: { maxInflight: 3, maxInflightPerPrincipal: 2 } });
    runner.hold = true;
    try {
      const held = [chat(g, "alice", CHAT), chat(g, "alice", CHAT)];
      await waitFor("two requests held at the runner", () => runner.waiting === 2);
      const third = await chat(g, "alice", CHAT);
      assert.equal(third.status, 429);
      assert.equal(third.json().error.code, "too_many_requests_in_flight");
      held.push(chat(g, "bob", CHAT));
      await waitFor("three requests held at the runner", () => runner.waiting === 3);
      const busy = await chat(g, "bob", CHAT);
      assert.equal(busy.status, 503);
      assert.equal(busy.json().error.code, "gateway_busy");
      assert.equal(busy.headers["retry-after"], "1");
      runner.release();
      assert.deepEqual((await Promise.all(held)).map((r) => r.status), [200, 200, 200]);
      assert.equal((await chat(g, "alice", { ...CHAT, max_tokens: 1 })).status, 200);
    } finally {
      runner.hold = false;
      await g.close();
    }
  });

  test("a runner's queue is bounded: beyond its connections and maxQueued, 503 runner_busy with Retry-After", async () => {
    const g = await start({ runner: { maxConnections: 1, maxQueued: 1 } });
    runner.hold = true;
    try {
      const held = [chat(g, "alice", CHAT), chat(g, "bob", CHAT)];
      await waitFor("one request held at the runner, two active", () => runner.waiting === 1 && g.gateway.state.runners.upstreams[0]!.active === 2);
      const r = await chat(g, "mallory", CHAT);
      assert.equal(r.status, 503);
      assert.equal(r.json().error.code, "runner_busy");
      assert.equal(r.headers["retry-after"], "1");
      assert.deepEqual(g.records().at(-1)!.status, 503);
      runner.release();
      assert.deepEqual((await Promise.all(held)).map((x) => x.status), [200, 200]);
      assert.equal(g.gateway.state.runners.upstreams[0]!.active, 0);
    } finally {
      runner.hold = false;
      await g.close();
    }
  });

  test("connections are capped per caller: the connection over the cap gets 429 and is closed; the caller's others and other callers work", async () => {
    const g = await start({ limits: { maxConnectionsPerPrincipal: 2 } });
    try {
      const sockets = await Promise.all([0, 1, 2].map(() => tlsConnect(g, "mallory")));
      const replies = await Promise.all(sockets.map((s) => exchange(s, "GET /v1/models HTTP/1.1\r\nhost: localhost\r\n\r\n")));
      assert.deepEqual(replies.map((r) => r.status).sort(), [200, 200, 429]);
      const refused = replies.find((r) => r.status === 429)!;
      assert.match(refused.text, /too_many_connections/);
      assert.equal(refused.closed, true);
      assert.equal((await chat(g, "alice", CHAT)).status, 200);
      for (const s of sockets) s.destroy();
      assert.match(await (await fetch(`http://127.0.0.1:${g.gateway.adminAddress.port}/metrics`)).text(), /edgeward_connections_refused_total\{limit="principal"\} 1/);
    } finally {
      await g.close();
    }
  });

  test("a client that leaves mid-body is an abort, not an error: no error-level log line", async () => {
    const g = await start();
    try {
      for (let i = 0; i < 20; i++) {
        const s = await tlsConnect(g, "alice");
        s.write('POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"model":');
        await new Promise((r) => setTimeout(r, 5));
        s.destroy();
      }
      const metrics = () => fetch(`http://127.0.0.1:${g.gateway.adminAddress.port}/metrics`).then((r) => r.text());
      await waitFor("20 client aborts counted", async () => /edgeward_client_aborts_total 20/.test(await metrics()));
      assert.deepEqual(g.logs.lines.filter((l) => l.level >= 50), []);
    } finally {
      await g.close();
    }
  });


  function tlsConnect(g: Started, who: string): Promise<import("node:tls").TLSSocket> {
    return new Promise((resolve, reject) => {
      const s = connect({
        host: "127.0.0.1", port: g.gateway.address.port, servername: "localhost", ca: readFileSync(caPem),
        cert: readFileSync(join(dir, `${who}.pem`)), key: readFileSync(join(dir, `${who}.key`)),
      }, () => resolve(s));
      s.once("error", reject);
    });
  }

  /** Writes `text` and reads until the server closes or sends a whole response head (with its body for small ones). */
  function exchange(s: import("node:tls").TLSSocket, text: string): Promise<{ status: number; text: string; closed: boolean }> {
    return new Promise((resolve) => {
      let got = "";
      const timer = setTimeout(() => done(false), 3000);
      const done = (closed: boolean) => {
        clearTimeout(timer);
        s.removeAllListeners("data");
        resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0), text: got, closed });
      };
      s.on("data", (d: Buffer) => {
        got += d.toString();
        const length = /content-length: (\d+)/i.exec(got);
        const head = got.indexOf("\r\n\r\n");
        if (length && head !== -1 && got.length >= head + 4 + Number(length[1]) && !/connection: close/i.test(got)) done(false);
      });
      s.once("close", () => done(true));
      s.once("error", () => undefined);
      s.write(text);
    });
  }

  async function rawRequest(g: Started, who: string, text: string) {
    return exchange(await tlsConnect(g, who), text);
  }
});
