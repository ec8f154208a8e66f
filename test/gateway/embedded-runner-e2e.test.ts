import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { fetch as undiciFetch, type Agent } from "undici";
import { stringify } from "yaml";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { writeTinyModel } from "../../src/runners/tiny-model.ts";
import { call, mtlsAgent } from "../support/gateway-fixture.ts";
import { startCli, type Started } from "../support/processes.ts";

const EXAMPLE_POLICY = fileURLToPath(new URL("../../examples/policy.yaml", import.meta.url));

describe("gateway → edgeward runner (tiny model, real llama.cpp) with the example policy", () => {
  let dir: string;
  let runner: Started;
  let gw: Started;
  let base: string;
  let assistant: Agent;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-e2e-"));
    const ca = join(dir, "ca");
    await initDevCa({ dir: ca, trustDomain: "example.org" });
    await issueSvid({ dir: ca, spiffeId: "spiffe://example.org/ns/edge/sa/gateway", out: join(dir, "gateway"), dns: ["localhost"] });
    await issueSvid({ dir: ca, spiffeId: "spiffe://example.org/ns/kiosk/sa/assistant", out: join(dir, "assistant") });
    await writeTinyModel(join(dir, "tiny.gguf"), 7);
    runner = await startCli(["runner", "--model", join(dir, "tiny.gguf"), "--socket", join(dir, "runner.sock"), "--name", "tiny", "--threads", "1"],
      /^edgeward runner listening on (unix:\S+)$/, { timeoutMs: 60_000 });
    writeFileSync(join(dir, "edgeward.yaml"), stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0",
      tls: { cert: "gateway.pem", key: "gateway.key" },
      trustBundles: { "example.org": "ca/ca.pem" },
      policy: EXAMPLE_POLICY,
      runners: [{ name: "embedded", url: runner.match[1], models: ["tiny"] }],
      decisionLog: "decisions.log",
      limits: { maxTokens: 32 },
      logLevel: "warn",
    }));
    gw = await startCli(["serve", "--config", join(dir, "edgeward.yaml")], /listening on https:\/\/127\.0\.0\.1:(\d+)/);
    base = `https://localhost:${gw.match[1]}`;
    assistant = mtlsAgent(join(ca, "ca.pem"), join(dir, "assistant"));
  });

  after(async () => {
    await assistant?.close();
    await gw?.stop();
    await runner?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a real completion, with real token counts", async () => {
    const r = await call(assistant, `${base}/v1/chat/completions`, { body: { model: "tiny", messages: [{ role: "user", content: "hello world" }], max_tokens: 8, temperature: 0 } });
    assert.equal(r.status, 200, r.text);
    const body = r.json();
    assert.equal(body.object, "chat.completion");
    assert.equal(typeof body.choices[0].message.content, "string");
    assert.equal(body.usage.completion_tokens, 8);
    assert.ok(body.usage.prompt_tokens > 0);
    assert.equal(body.usage.total_tokens, body.usage.prompt_tokens + 8);
  });

  test("a real streamed completion arrives as ordered SSE chunks ending in [DONE]", async () => {
    const r = await call(assistant, `${base}/v1/chat/completions`, { body: { model: "tiny", messages: [{ role: "user", content: "hello" }], max_tokens: 6, stream: true } });
    assert.equal(r.status, 200, r.text);
    const events = r.text.split("\n\n").filter(Boolean);
    assert.equal(events.at(-1), "data: [DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, "")));
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
    assert.ok(chunks.every((c) => c.choices.length === 1), "the usage chunk the gateway asked for is not forwarded");
    assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
  });

  test("the official openai client completes a chat call and a streamed chat call over mTLS", async () => {
    const client = new OpenAI({
      baseURL: `${base}/v1`,
      apiKey: "not-used-identity-is-the-client-certificate",
      fetch: ((url: string, init: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher: assistant })) as unknown as typeof fetch,
      maxRetries: 0,
    });
    const completion = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 5 });
    assert.equal(completion.choices.length, 1);
    assert.equal(completion.usage?.completion_tokens, 5);
    const stream = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 5, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    assert.ok(text.length > 0);
    assert.equal(usage?.completion_tokens, 5);
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ["tiny"]);
    await assert.rejects(client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 100 }), (err: InstanceType<typeof OpenAI.APIError>) => err.status === 400);
    await assert.rejects(client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 500 }), (err: InstanceType<typeof OpenAI.APIError>) => err.status === 403);
  });
});
