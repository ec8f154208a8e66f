// The runner as the gateway runs it: a real child process serving the tiny model on a Unix socket.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { Agent, fetch as undiciFetch, request } from "undici";
import { writeTinyModel } from "../../src/runners/tiny-model.ts";
import { exited, killGroup, spawnChild } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "edgeward-runner-"));
const socketPath = join(dir, "runner.sock");
const modelPath = join(dir, "tiny.gguf");
let child: ChildProcess;
let agent: Agent;

function waitForListening(proc: ChildProcess, timeoutMs = 30_000): Promise<string> {
  return new Promise((done, fail) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => fail(new Error(`runner did not print its listening line within ${timeoutMs} ms: ${err}`)), timeoutMs);
    proc.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n").find((l) => l.startsWith("edgeward runner listening on "));
      if (line !== undefined) {
        clearTimeout(timer);
        done(line);
      }
    });
    proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
    proc.once("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`runner exited ${code}: ${err}`));
    });
  });
}

before(async () => {
  await writeTinyModel(modelPath);
  child = spawnChild(
    process.execPath,
    [fileURLToPath(new URL("./runner-process.ts", import.meta.url)), "--model", modelPath, "--socket", socketPath, "--name", "tiny", "--threads", "1", "--context-size", "512"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const line = await waitForListening(child);
  assert.equal(line, `edgeward runner listening on unix:${socketPath}`);
  agent = new Agent({ connect: { socketPath } });
});

after(async () => {
  await agent?.close();
  if (child !== undefined) killGroup(child);
  rmSync(dir, { recursive: true, force: true });
});

async function post(path: string, body: unknown, extra: { signal?: AbortSignal } = {}) {
  const res = await request(`http://runner${path}`, {
    dispatcher: agent,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...extra,
  });
  return res;
}

async function postJson(path: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await post(path, body);
  return { status: res.statusCode, json: await res.body.json() };
}

async function health(): Promise<any> {
  const res = await request("http://runner/health", { dispatcher: agent });
  return res.body.json();
}

/** Splits an SSE body into its data payloads, checking the framing as it goes. */
function sseData(text: string): string[] {
  assert.ok(text.endsWith("\n\n"), "stream ends with a blank line");
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((event) => {
      assert.match(event, /^data: /);
      return event.slice("data: ".length);
    });
}

const chat = (extra: Record<string, unknown> = {}) => ({
  model: "tiny",
  messages: [{ role: "user", content: "hello world" }],
  temperature: 0,
  max_tokens: 8,
  ...extra,
});

test("the socket is created with mode 0600", () => {
  const info = statSync(socketPath);
  assert.ok(info.isSocket());
  assert.equal(info.mode & 0o777, 0o600);
});

test("GET /health and /v1/models", async () => {
  const h = await health();
  assert.equal(h.status, "ok");
  assert.equal(h.model, "tiny");
  const res = await request("http://runner/v1/models", { dispatcher: agent });
  assert.equal(res.statusCode, 200);
  const models = (await res.body.json()) as any;
  assert.equal(models.object, "list");
  assert.deepEqual(
    models.data.map((m: any) => [m.id, m.object]),
    [["tiny", "model"]],
  );
});

test("chat completion with usage, deterministic at temperature 0", async () => {
  const a = await postJson("/v1/chat/completions", chat());
  assert.equal(a.status, 200);
  assert.equal(a.json.object, "chat.completion");
  assert.equal(a.json.model, "tiny");
  assert.match(a.json.id, /^chatcmpl-/);
  const choice = a.json.choices[0];
  assert.equal(choice.message.role, "assistant");
  assert.ok(choice.message.content.length > 0);
  assert.equal(choice.finish_reason, "length");
  assert.equal(a.json.usage.completion_tokens, 8);
  assert.ok(a.json.usage.prompt_tokens > 2);
  assert.equal(a.json.usage.total_tokens, a.json.usage.prompt_tokens + 8);
  const b = await postJson("/v1/chat/completions", chat());
  assert.equal(b.json.choices[0].message.content, choice.message.content);
  assert.deepEqual(b.json.usage, a.json.usage);
});

test("text completion counts prompt tokens with the model's tokenizer", async () => {
  const r = await postJson("/v1/completions", { model: "tiny", prompt: "hello world", max_tokens: 5, temperature: 0 });
  assert.equal(r.status, 200);
  assert.equal(r.json.object, "text_completion");
  assert.equal(r.json.choices[0].finish_reason, "length");
  assert.equal(typeof r.json.choices[0].text, "string");
  // <s> hello ▁world
  assert.deepEqual(r.json.usage, { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 });
});

test("max_tokens defaults to 16 and is capped by the context", async () => {
  const d = await postJson("/v1/completions", { model: "tiny", prompt: "hello", temperature: 0 });
  assert.equal(d.json.usage.completion_tokens, 16);
  const capped = await postJson("/v1/completions", { model: "tiny", prompt: "hello", temperature: 0, max_tokens: 100000 });
  assert.equal(capped.status, 200);
  assert.equal(capped.json.usage.total_tokens, 512);
  assert.equal(capped.json.choices[0].finish_reason, "length");
});

test("a prompt longer than the context is a 400", async () => {
  const r = await postJson("/v1/completions", { model: "tiny", prompt: "hello ".repeat(600) });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, "context_length_exceeded");
});

test("a stop sequence ends the text before it, with finish_reason stop", async () => {
  const full = await postJson("/v1/completions", { model: "tiny", prompt: "hello world", max_tokens: 12, temperature: 0 });
  const text: string = full.json.choices[0].text;
  const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
  assert.equal(stop.length, 2);
  const r = await postJson("/v1/completions", { model: "tiny", prompt: "hello world", max_tokens: 12, temperature: 0, stop: [stop] });
  assert.equal(r.json.choices[0].finish_reason, "stop");
  assert.equal(r.json.choices[0].text, text.slice(0, text.indexOf(stop)));
  assert.ok(r.json.usage.completion_tokens < 12);
});

test("the same seed samples the same text at temperature 1", async () => {
  const body = { model: "tiny", prompt: "edge", max_tokens: 10, temperature: 1, seed: 42 };
  const a = await postJson("/v1/completions", body);
  const b = await postJson("/v1/completions", body);
  assert.equal(a.json.choices[0].text, b.json.choices[0].text);
});

test("streamed chat: role first, content chunks in order, finish, [DONE]", async () => {
  const whole = await postJson("/v1/chat/completions", chat({ max_tokens: 6 }));
  const res = await post("/v1/chat/completions", chat({ max_tokens: 6, stream: true }));
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers["content-type"]), /^text\/event-stream/);
  const data = sseData(await res.body.text());
  assert.equal(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  assert.ok(chunks.length >= 3);
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id && c.model === "tiny"));
  assert.ok(chunks.every((c) => !("usage" in c)));
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  const last = chunks.at(-1);
  assert.deepEqual(last.choices[0].delta, {});
  assert.equal(last.choices[0].finish_reason, "length");
  const middle = chunks.slice(1, -1);
  assert.ok(middle.every((c) => c.choices[0].finish_reason === null && c.choices[0].delta.content.length > 0));
  assert.equal(middle.map((c) => c.choices[0].delta.content).join(""), whole.json.choices[0].message.content);
});

test("stream_options.include_usage adds a final usage chunk with no choices", async () => {
  const res = await post("/v1/chat/completions", chat({ max_tokens: 4, stream: true, stream_options: { include_usage: true } }));
  const data = sseData(await res.body.text());
  assert.equal(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  const final = chunks.at(-1);
  assert.deepEqual(final.choices, []);
  assert.equal(final.usage.completion_tokens, 4);
  assert.equal(final.usage.total_tokens, final.usage.prompt_tokens + 4);
  assert.ok(chunks.slice(0, -1).every((c) => c.usage === null));
});

test("streamed completion", async () => {
  const res = await post("/v1/completions", { model: "tiny", prompt: "hello", max_tokens: 4, temperature: 0, stream: true });
  const data = sseData(await res.body.text());
  assert.equal(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  assert.ok(chunks.every((c) => c.object === "text_completion"));
  assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
  const whole = await postJson("/v1/completions", { model: "tiny", prompt: "hello", max_tokens: 4, temperature: 0 });
  assert.equal(chunks.map((c) => c.choices[0].text).join(""), whole.json.choices[0].text);
});

test("a streamed completion never shows text past a stop sequence", async () => {
  const body = { model: "tiny", prompt: "hello world", max_tokens: 12, temperature: 0 };
  const full = (await postJson("/v1/completions", body)).json.choices[0].text as string;
  const stop = full.slice(-3);
  const whole = await postJson("/v1/completions", { ...body, stop });
  const res = await post("/v1/completions", { ...body, stop, stream: true });
  const chunks = sseData(await res.body.text()).slice(0, -1).map((d) => JSON.parse(d));
  assert.equal(chunks.map((c) => c.choices[0].text).join(""), whole.json.choices[0].text);
  assert.equal(whole.json.choices[0].text, full.slice(0, full.indexOf(stop)));
  assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
});

test("the OpenAI SDK talks to it over the socket", async () => {
  const client = new OpenAI({
    apiKey: "unused",
    baseURL: "http://runner/v1",
    fetch: ((url: string, init: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher: agent })) as never,
  });
  const r = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 3 });
  assert.equal(r.usage?.completion_tokens, 3);
  let text = "";
  const stream = await client.completions.create({ model: "tiny", prompt: "hi", max_tokens: 3, stream: true });
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
  assert.ok(text.length > 0);
});

test("concurrent requests are queued and all served", async () => {
  const results = await Promise.all(
    [1, 2, 3].map((n) => postJson("/v1/completions", { model: "tiny", prompt: "hello", max_tokens: n, temperature: 0 })),
  );
  assert.deepEqual(
    results.map((r) => [r.status, r.json.usage.completion_tokens]),
    [
      [200, 1],
      [200, 2],
      [200, 3],
    ],
  );
});

test("bad input gets OpenAI-shaped errors", async () => {
  const cases: Array<[string, unknown, number, string]> = [
    ["/v1/chat/completions", "{not json", 400, "invalid_json"],
    ["/v1/chat/completions", "[]", 400, "body"],
    ["/v1/chat/completions", { model: "tiny" }, 400, "messages"],
    ["/v1/chat/completions", { model: "tiny", messages: [] }, 400, "messages"],
    ["/v1/chat/completions", { model: "tiny", messages: [{ role: "wizard", content: "x" }] }, 400, "messages"],
    ["/v1/chat/completions", { model: "tiny", messages: [{ role: "user", content: [{ type: "image_url" }] }] }, 400, "messages"],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "x" }] }, 400, "model"],
    ["/v1/chat/completions", chat({ max_tokens: 0 }), 400, "max_tokens"],
    ["/v1/chat/completions", chat({ max_tokens: 1.5 }), 400, "max_tokens"],
    ["/v1/chat/completions", chat({ temperature: 3 }), 400, "temperature"],
    ["/v1/chat/completions", chat({ n: 2 }), 400, "n"],
    ["/v1/chat/completions", chat({ stop: ["a", "b", "c", "d", "e"] }), 400, "stop"],
    ["/v1/chat/completions", chat({ stream: "yes" }), 400, "stream"],
    ["/v1/completions", { model: "tiny", prompt: ["a", "b"] }, 400, "prompt"],
    ["/v1/completions", { model: "tiny", prompt: [1, 2] }, 400, "prompt"],
    ["/v1/chat/completions", chat({ model: "gpt-4" }), 404, "model_not_found"],
    ["/v1/completions", { model: "other", prompt: "x" }, 404, "model_not_found"],
  ];
  for (const [path, body, status, code] of cases) {
    const r = await postJson(path, body);
    assert.equal(r.status, status, JSON.stringify(body));
    assert.equal(r.json.error.code, code, JSON.stringify(body));
    assert.equal(typeof r.json.error.message, "string");
    assert.equal(typeof r.json.error.type, "string");
  }
});

test("unknown routes are 404 and wrong methods 405", async () => {
  const a = await request("http://runner/v2/nothing", { dispatcher: agent });
  assert.equal(a.statusCode, 404);
  assert.equal(((await a.body.json()) as any).error.code, "not_found");
  const b = await request("http://runner/v1/chat/completions", { dispatcher: agent });
  assert.equal(b.statusCode, 405);
  await b.body.dump();
});

test("a body over 1 MiB is answered 413, declared or streamed", async () => {
  const big = JSON.stringify({ model: "tiny", prompt: "x".repeat(1024 * 1024) });
  const a = await post("/v1/completions", big);
  assert.equal(a.statusCode, 413);
  assert.equal(((await a.body.json()) as any).error.code, "request_too_large");
  // Chunked, so the limit is found while reading rather than from Content-Length.
  const chunks = Readable.from((function* () {
    for (let i = 0; i < 20; i++) yield Buffer.alloc(100 * 1024, 0x20);
  })());
  const b = await request("http://runner/v1/completions", { dispatcher: agent, method: "POST", body: chunks });
  assert.equal(b.statusCode, 413);
  assert.equal(((await b.body.json()) as any).error.code, "request_too_large");
  assert.equal((await health()).status, "ok");
});

/** Polls the runner's health until it counts more aborted generations than `before`. */
async function generationsOnceAborted(before: { aborted: number }) {
  return waitFor("the runner to count an aborted generation", async () => {
    const now = (await health()).generations;
    return now.aborted === before.aborted ? null : now;
  });
}

test("a client that disconnects mid-stream stops the generation; the next request is served", async () => {
  const before = (await health()).generations;
  const controller = new AbortController();
  const res = await post("/v1/completions", { model: "tiny", prompt: "hello", max_tokens: 480, stream: true }, { signal: controller.signal });
  assert.equal(res.statusCode, 200);
  for await (const chunk of res.body) {
    assert.match(String(chunk), /^data: /);
    controller.abort();
    break;
  }
  const now = await generationsOnceAborted(before);
  assert.equal(now.aborted, before.aborted + 1);
  assert.equal(now.completed, before.completed);
  const next = await postJson("/v1/completions", { model: "tiny", prompt: "hello", max_tokens: 2 });
  assert.equal(next.status, 200);
  assert.equal(next.json.usage.completion_tokens, 2);
});

test("a client that disconnects while waiting for a whole completion stops it too", async () => {
  const before = (await health()).generations;
  const controller = new AbortController();
  const pending = post("/v1/completions", { model: "tiny", prompt: "hello", max_tokens: 480 }, { signal: controller.signal });
  setTimeout(() => controller.abort(), 30);
  await assert.rejects(pending);
  const now = await generationsOnceAborted(before);
  assert.equal(now.aborted, before.aborted + 1);
  assert.equal(now.completed, before.completed);
});

test("SIGTERM mid-stream ends the stream, exits 0 and removes the socket", async () => {
  const res = await post("/v1/completions", { model: "tiny", prompt: "hello", max_tokens: 480, stream: true });
  const body = res.body[Symbol.asyncIterator]();
  assert.match(String((await body.next()).value), /^data: /);
  const exit = exited(child, "the runner after SIGTERM");
  child.kill("SIGTERM");
  // The stream is cut (no [DONE]) rather than left hanging.
  let rest = "";
  try {
    for (let r = await body.next(); !r.done; r = await body.next()) rest += String(r.value);
  } catch {
    // a reset connection is an acceptable way for the stream to end
  }
  assert.ok(!rest.includes("[DONE]"));
  assert.equal(await exit, 0);
  assert.equal(existsSync(socketPath), false);
});
