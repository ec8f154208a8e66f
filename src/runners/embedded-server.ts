/**
 * The embedded runner: an OpenAI-compatible HTTP server in front of one GGUF
 * model, listening on a 0600 Unix socket (or loopback TCP). The gateway runs it
 * as a child process so a model crash never takes the gateway down.
 */
import { randomBytes } from "node:crypto";
import { lstat, mkdir, open, stat, unlink } from "node:fs/promises";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { connect } from "node:net";
import type { AddressInfo } from "node:net";
import { basename, dirname, resolve } from "node:path";
import { EmbeddedEngine } from "./embedded/engine.ts";
import type { GenerationResult } from "./embedded/engine.ts";
import { parseChatRequest, parseCompletionRequest, RunnerRequestError } from "./embedded/openai-request.ts";
import type { GpuChoice } from "./embedded/prebuilt.ts";
import type { ChatRequest, CompletionRequest } from "./embedded/openai-request.ts";

export { RunnerRequestError } from "./embedded/openai-request.ts";
export { DEFAULT_MAX_TOKENS } from "./embedded/engine.ts";

export const MAX_BODY_BYTES = 1024 * 1024;

export class EmbeddedRunnerError extends Error {
  readonly check: string;
  constructor(check: string, message: string) {
    super(`runner: ${message}`);
    this.name = "EmbeddedRunnerError";
    this.check = check;
  }
}

export interface EmbeddedRunnerOptions {
  modelPath: string;
  /** Listen on this Unix socket (mode 0600). Exactly one of socketPath and port. */
  socketPath?: string;
  /** Listen on this TCP port (0 picks a free one). */
  port?: number;
  /** TCP host; 127.0.0.1 unless given. */
  host?: string;
  /** The model id clients name; the file's base name without .gguf unless given. */
  modelName?: string;
  threads?: number;
  contextSize?: number;
  /** Which llama.cpp build to load: "off" (CPU, the default), "auto", "cuda", "vulkan" or "metal". */
  gpu?: GpuChoice;
}

export interface EmbeddedRunner {
  /** `unix:/abs/path.sock` or `http://host:port`. */
  address: string;
  close(): Promise<void>;
}

/** The model id a runner serves for a file when no name is given. */
export function modelNameFor(modelPath: string): string {
  return basename(modelPath).replace(/\.gguf$/i, "");
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

function usageOf(r: Pick<GenerationResult, "promptTokens" | "completionTokens">): Usage {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, type: string, code: string, message: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: { message, type, code } }, headers);
}

/** How much of an oversized body is read and dropped, after the 413, before the connection is cut. */
const MAX_DISCARD_BYTES = 16 * MAX_BODY_BYTES;

/**
 * Reads the body up to the limit; answers 413 itself (and resolves null) when it is larger.
 * The rest of an oversized body is drained rather than the socket closed under the
 * client, so the client gets to read the 413 instead of a reset.
 */
function readBody(req: IncomingMessage, res: ServerResponse): Promise<Buffer | null> {
  return new Promise((done, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const tooLarge = (): void => {
      req.off("data", onData);
      req.off("end", onEnd);
      chunks.length = 0;
      let discarded = 0;
      req.on("data", (chunk: Buffer) => {
        discarded += chunk.length;
        if (discarded > MAX_DISCARD_BYTES) req.socket.destroy();
      });
      req.resume();
      sendError(res, 413, "invalid_request_error", "request_too_large", `runner: request body exceeds ${MAX_BODY_BYTES} bytes`);
      done(null);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge();
      else chunks.push(chunk);
    };
    const onEnd = (): void => done(Buffer.concat(chunks));
    req.once("error", fail);
    if (Number(req.headers["content-length"] ?? "0") > MAX_BODY_BYTES) return tooLarge();
    req.on("data", onData);
    req.once("end", onEnd);
  });
}

class Handler {
  private readonly engine: EmbeddedEngine;
  private readonly modelName: string;
  private readonly created = Math.floor(Date.now() / 1000);
  /** Aborts every generation in flight or queued; used at shutdown. */
  readonly shutdown = new AbortController();

  constructor(engine: EmbeddedEngine, modelName: string) {
    this.engine = engine;
    this.modelName = modelName;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const route = `${req.method} ${path}`;
    switch (route) {
      case "GET /health":
        return sendJson(res, 200, { status: "ok", model: this.modelName, generations: this.engine.stats() });
      case "GET /v1/models":
        return sendJson(res, 200, {
          object: "list",
          data: [{ id: this.modelName, object: "model", created: this.created, owned_by: "edgeward" }],
        });
      case "POST /v1/chat/completions":
      case "POST /v1/completions":
        return this.generate(req, res, path === "/v1/completions" ? "completion" : "chat");
    }
    if (path === "/health" || path === "/v1/models" || path === "/v1/chat/completions" || path === "/v1/completions") {
      return sendError(res, 405, "invalid_request_error", "method_not_allowed", `${req.method} is not allowed on ${path}`);
    }
    return sendError(res, 404, "invalid_request_error", "not_found", `no route for ${req.method} ${path}`);
  }

  private async generate(req: IncomingMessage, res: ServerResponse, kind: "chat" | "completion"): Promise<void> {
    const raw = await readBody(req, res);
    if (raw === null) return;
    let parsed: ChatRequest | CompletionRequest;
    try {
      let body: unknown;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        throw new RunnerRequestError(400, "invalid_json", "request body is not valid JSON");
      }
      parsed = kind === "chat" ? parseChatRequest(body) : parseCompletionRequest(body);
      if (parsed.model !== this.modelName) {
        throw new RunnerRequestError(404, "model_not_found", `the model '${parsed.model}' does not exist`);
      }
    } catch (err) {
      return this.fail(res, err);
    }

    // The client going away (or shutdown) cancels the generation and frees the sequence.
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort();
    };
    res.on("close", onClose);
    const onShutdown = (): void => abort.abort();
    this.shutdown.signal.addEventListener("abort", onShutdown);
    try {
      if (parsed.stream) await this.stream(res, parsed, abort.signal);
      else {
        const result = await this.engine.generate(parsed, { signal: abort.signal });
        if (!result.aborted) sendJson(res, 200, this.body(parsed, result));
        else if (!res.destroyed) sendError(res, 503, "server_error", "shutting_down", "runner: the runner is shutting down");
      }
    } catch (err) {
      this.fail(res, err);
    } finally {
      res.off("close", onClose);
      this.shutdown.signal.removeEventListener("abort", onShutdown);
    }
  }

  private fail(res: ServerResponse, err: unknown): void {
    if (res.headersSent) {
      // Mid-stream: the status is gone; report in-band as OpenAI does, then end.
      if (!res.writableEnded) {
        const message = err instanceof RunnerRequestError ? err.message : "runner: generation failed";
        res.end(`data: ${JSON.stringify({ error: { message, type: "server_error", code: "generation_failed" } })}\n\n`);
      }
      return;
    }
    if (err instanceof RunnerRequestError) return sendError(res, err.status, err.type, err.check, err.message);
    sendError(res, 500, "server_error", "generation_failed", "runner: generation failed");
  }

  private ids(req: ChatRequest | CompletionRequest): { id: string; created: number; model: string } {
    const prefix = req.kind === "chat" ? "chatcmpl-" : "cmpl-";
    return { id: prefix + randomBytes(12).toString("hex"), created: Math.floor(Date.now() / 1000), model: this.modelName };
  }

  private body(req: ChatRequest | CompletionRequest, result: GenerationResult): unknown {
    const usage = usageOf(result);
    if (req.kind === "chat") {
      return {
        ...this.ids(req),
        object: "chat.completion",
        choices: [{ index: 0, message: { role: "assistant", content: result.text }, logprobs: null, finish_reason: result.finishReason }],
        usage,
      };
    }
    return {
      ...this.ids(req),
      object: "text_completion",
      choices: [{ index: 0, text: result.text, logprobs: null, finish_reason: result.finishReason }],
      usage,
    };
  }

  private async stream(res: ServerResponse, req: ChatRequest | CompletionRequest, signal: AbortSignal): Promise<void> {
    const base = { ...this.ids(req), object: req.kind === "chat" ? "chat.completion.chunk" : "text_completion" };
    const extra = req.includeUsage ? { usage: null } : {};
    const send = (payload: unknown): void => {
      if (!res.writableEnded && !res.destroyed) res.write(`data: ${JSON.stringify(payload)}\n\n`);
    };
    const choice = (text: string | null, finish: string | null): unknown =>
      req.kind === "chat"
        ? { index: 0, delta: text === null ? {} : { content: text }, logprobs: null, finish_reason: finish }
        : { index: 0, text: text ?? "", logprobs: null, finish_reason: finish };

    const result = await this.engine.generate(req, {
      signal,
      // Headers wait until the prompt fits, so a too-long prompt still gets a plain 400.
      onStart: () => {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
        res.flushHeaders();
        if (req.kind === "chat") {
          send({ ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }], ...extra });
        }
      },
      onText: (text) => {
        if (text !== "") send({ ...base, choices: [choice(text, null)], ...extra });
      },
    });
    if (result.aborted && (res.destroyed || signal.aborted)) {
      res.destroy();
      return;
    }
    send({ ...base, choices: [choice(null, result.finishReason)], ...extra });
    if (req.includeUsage) send({ ...base, choices: [], usage: usageOf(result) });
    res.end("data: [DONE]\n\n");
  }
}

/**
 * Rejects files that are plainly not GGUF before llama.cpp sees them: its metadata
 * reader trusts the counts in the header, and garbage there can exhaust memory.
 * A crafted file can still get further; that is one reason the runner is its own process.
 */
async function checkGgufHeader(path: string): Promise<void> {
  const file = await open(path, "r");
  try {
    const header = Buffer.alloc(24);
    const { bytesRead } = await file.read(header, 0, 24, 0);
    const size = (await file.stat()).size;
    const ok =
      bytesRead === 24 &&
      header.toString("latin1", 0, 4) === "GGUF" &&
      [2, 3].includes(header.readUInt32LE(4)) &&
      // Each tensor info and each key-value pair takes at least 8 bytes of the file.
      header.readBigUInt64LE(8) <= BigInt(size) / 8n &&
      header.readBigUInt64LE(16) <= BigInt(size) / 8n;
    if (!ok) throw new EmbeddedRunnerError("model", `${path} is not a GGUF v2/v3 model file`);
  } finally {
    await file.close();
  }
}

async function isLiveSocket(path: string): Promise<boolean> {
  return new Promise((done) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      done(true);
    });
    s.once("error", () => done(false));
  });
}

/** Removes a leftover socket file from a previous run; refuses anything else at that path. */
async function clearStaleSocket(path: string): Promise<void> {
  let info;
  try {
    info = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  if (!info.isSocket()) throw new EmbeddedRunnerError("socket-path", `${path} exists and is not a socket; refusing to replace it`);
  if (await isLiveSocket(path)) throw new EmbeddedRunnerError("socket-in-use", `another server is listening on ${path}`);
  await unlink(path);
}

function listen(server: Server, target: { path: string } | { port: number; host: string }): Promise<void> {
  return new Promise((done, fail) => {
    server.once("error", fail);
    server.listen(target, () => {
      server.off("error", fail);
      done();
    });
  });
}

/** Loads the model and starts serving; resolves once the server accepts connections. */
export async function startEmbeddedRunner(opts: EmbeddedRunnerOptions): Promise<EmbeddedRunner> {
  if ((opts.socketPath === undefined) === (opts.port === undefined)) {
    throw new EmbeddedRunnerError("listen", "give exactly one of a socket path and a port");
  }
  if (opts.port !== undefined && (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535)) {
    throw new EmbeddedRunnerError("listen", "port must be an integer between 0 and 65535");
  }
  const modelPath = resolve(opts.modelPath);
  const info = await stat(modelPath).catch(() => null);
  if (info === null || !info.isFile()) throw new EmbeddedRunnerError("model", `model file ${opts.modelPath} not found`);
  await checkGgufHeader(modelPath);
  const modelName = opts.modelName ?? modelNameFor(modelPath);
  const socketPath = opts.socketPath === undefined ? undefined : resolve(opts.socketPath);
  if (socketPath !== undefined) {
    // A folder that does not exist yet is made, open to this user only, as the config's other paths are.
    await mkdir(dirname(socketPath), { recursive: true, mode: 0o700 });
    await clearStaleSocket(socketPath);
  }

  const engine = await EmbeddedEngine.load({
    modelPath,
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    ...(opts.contextSize !== undefined ? { contextSize: opts.contextSize } : {}),
    ...(opts.gpu !== undefined ? { gpu: opts.gpu } : {}),
  });
  const handler = new Handler(engine, modelName);
  const server = createServer((req, res) => {
    handler.handle(req, res).catch(() => {
      if (!res.headersSent) sendError(res, 500, "server_error", "internal_error", "runner: internal error");
      else res.destroy();
    });
  });

  let address: string;
  try {
    if (socketPath !== undefined) {
      // The socket must never exist with wider permissions, even for an instant: umask while it is created.
      const previous = process.umask(0o177);
      try {
        await listen(server, { path: socketPath });
      } finally {
        process.umask(previous);
      }
      const mode = (await stat(socketPath)).mode & 0o777;
      if (mode !== 0o600) throw new EmbeddedRunnerError("socket-mode", `socket ${socketPath} has mode ${mode.toString(8)}, expected 600`);
      address = `unix:${socketPath}`;
    } else {
      await listen(server, { port: opts.port ?? 0, host: opts.host ?? "127.0.0.1" });
      const a = server.address() as AddressInfo;
      const host = a.family === "IPv6" ? `[${a.address}]` : a.address;
      address = `http://${host}:${a.port}`;
    }
  } catch (err) {
    server.close();
    await engine.close();
    throw err;
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const stopped = new Promise<void>((done) => server.close(() => done()));
      handler.shutdown.abort();
      server.closeIdleConnections();
      await engine.close();
      server.closeAllConnections();
      await stopped;
      if (socketPath !== undefined) await unlink(socketPath).catch(() => undefined);
    })();
    return closing;
  };
  return { address, close };
}
