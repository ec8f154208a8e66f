/**
 * Stand-in OpenAI-compatible model server for load tests, in its own process so that what it costs is never
 * charged to a target. Answers POST /v1/chat/completions and /v1/completions with a fixed small completion
 * (with `usage`); `stream: true` sends `max_tokens` chunks (default 20), `bench_chunk_delay_ms` apart (or as many
 * ms as a model named `…-slow-<ms>ms` says),
 * then the usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`.
 * Run: node bench/model-server.ts [--port 0] [--host 127.0.0.1]
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { port: { type: "string", default: "0" }, host: { type: "string", default: "127.0.0.1" } } });

const MODEL = "bench-small";
const CREATED = 1_700_000_000;
const DEFAULT_CHUNKS = 20;
const MAX_CHUNKS = 4096;
const MAX_BODY = 1024 * 1024;
const PROMPT_TOKENS = 12;
const COMPLETION_TOKENS = 9;

const usage = { prompt_tokens: PROMPT_TOKENS, completion_tokens: COMPLETION_TOKENS, total_tokens: PROMPT_TOKENS + COMPLETION_TOKENS };
const chatBody = Buffer.from(JSON.stringify({
  id: "chatcmpl-bench", object: "chat.completion", created: CREATED, model: MODEL,
  choices: [{ index: 0, message: { role: "assistant", content: "The shop opens at nine in the morning." }, finish_reason: "stop" }],
  usage,
}));
const textBody = Buffer.from(JSON.stringify({
  id: "cmpl-bench", object: "text_completion", created: CREATED, model: MODEL,
  choices: [{ index: 0, text: " there was a small model.", finish_reason: "stop" }],
  usage,
}));

interface StreamFrames {
  token: Buffer;
  last: Buffer;
  usage(chunks: number): Buffer;
}

function frame(value: unknown): Buffer {
  return Buffer.from(`data: ${JSON.stringify(value)}\n\n`);
}

function frames(chat: boolean): StreamFrames {
  const base = chat
    ? { id: "chatcmpl-bench", object: "chat.completion.chunk", created: CREATED, model: MODEL }
    : { id: "cmpl-bench", object: "text_completion", created: CREATED, model: MODEL };
  const choice = (finish: string | null) =>
    chat ? { index: 0, delta: finish ? {} : { content: " tok" }, finish_reason: finish } : { index: 0, text: finish ? "" : " tok", finish_reason: finish };
  return {
    token: frame({ ...base, choices: [choice(null)] }),
    last: frame({ ...base, choices: [choice("length")] }),
    usage: (chunks) => frame({ ...base, choices: [], usage: { prompt_tokens: PROMPT_TOKENS, completion_tokens: chunks, total_tokens: PROMPT_TOKENS + chunks } }),
  };
}

const CHAT_FRAMES = frames(true);
const TEXT_FRAMES = frames(false);
const DONE = Buffer.from("data: [DONE]\n\n");

function fail(res: ServerResponse, status: number, message: string): void {
  const body = JSON.stringify({ error: { message, type: "invalid_request_error", code: null } });
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

interface Completion {
  model?: unknown;
  stream?: unknown;
  max_tokens?: unknown;
  stream_options?: { include_usage?: unknown } | null;
  bench_chunk_delay_ms?: unknown;
}

function stream(res: ServerResponse, f: StreamFrames, request: Completion): void {
  const chunks = typeof request.max_tokens === "number" && Number.isInteger(request.max_tokens) && request.max_tokens > 0
    ? Math.min(request.max_tokens, MAX_CHUNKS) : DEFAULT_CHUNKS;
  const named = typeof request.model === "string" ? /-slow-(\d{1,5})ms$/.exec(request.model) : null;
  const delay = typeof request.bench_chunk_delay_ms === "number" && request.bench_chunk_delay_ms > 0
    ? request.bench_chunk_delay_ms : named ? Number(named[1]) : 0;
  const withUsage = request.stream_options?.include_usage === true;
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const finish = () => {
    res.write(f.last);
    if (withUsage) res.write(f.usage(chunks));
    res.end(DONE);
  };
  if (delay === 0) {
    for (let i = 1; i < chunks; i++) res.write(f.token);
    finish();
    return;
  }
  let sent = 0;
  const timer = setInterval(() => {
    if (++sent < chunks) {
      res.write(f.token);
      return;
    }
    clearInterval(timer);
    finish();
  }, delay);
  res.once("close", () => clearInterval(timer));
  // The first token goes out at once, as a model's first token would after prefill.
  res.write(f.token);
  sent = 1;
  if (chunks === 1) {
    clearInterval(timer);
    finish();
  }
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const path = req.url ?? "/";
  if (req.method === "GET" && (path === "/health" || path === "/v1/models")) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(path === "/health" ? '{"status":"ok"}' : JSON.stringify({ object: "list", data: [{ id: MODEL, object: "model" }] }));
    return;
  }
  const chat = path === "/v1/chat/completions";
  if (req.method !== "POST" || (!chat && path !== "/v1/completions")) return fail(res, 404, `no route ${req.method} ${path}`);
  const parts: Buffer[] = [];
  let size = 0;
  req.on("data", (d: Buffer) => {
    size += d.length;
    if (size <= MAX_BODY) parts.push(d);
  });
  req.on("end", () => {
    if (size > MAX_BODY) return fail(res, 413, "body too large");
    let request: Completion;
    try {
      request = JSON.parse(Buffer.concat(parts).toString("utf8")) as Completion;
    } catch {
      return fail(res, 400, "invalid JSON");
    }
    if (request === null || typeof request !== "object") return fail(res, 400, "body must be an object");
    if (request.stream === true) return stream(res, chat ? CHAT_FRAMES : TEXT_FRAMES, request);
    const body = chat ? chatBody : textBody;
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
    res.end(body);
  });
}

const server = createServer({ keepAliveTimeout: 120_000, requestTimeout: 0, headersTimeout: 60_000 }, handle);
server.listen({ port: Number(values.port), host: values.host, backlog: 4096 }, () => {
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("model-server: no TCP address");
  process.stdout.write(`model server listening on http://${values.host}:${address.port}\n`);
});
const shutdown = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);
