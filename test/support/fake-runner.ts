import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A stand-in OpenAI-compatible model server (outside the product) for proxy tests. Path prefixes pick a behaviour:
 * `/slow/…` never answers, `/broken/…` answers 500; otherwise chat/completions answer with a fixed text and usage,
 * and `stream: true` sends `max_tokens` chunks (`x_test_chunks` when set, ignoring max_tokens), `x_test_delay_ms` apart;
 * asked for usage, every chunk carries `"usage":null` and a last chunk the usage, as vLLM and llama.cpp send them.
 * `GET /v1/models` (the gateway's health probe) lists the models and is not recorded in `bodies`.
 */
export class FakeRunner {
  readonly server: Server;
  /** Request ids (x-request-id) whose connection closed before the answer was complete. */
  readonly aborted: string[] = [];
  /** Bodies received, in order. */
  readonly bodies: Record<string, unknown>[] = [];

  private constructor(server: Server) {
    this.server = server;
  }

  /** Probes of GET /v1/models answered. */
  probes = 0;

  static async start(port = 0): Promise<FakeRunner> {
    const server = createServer();
    const fake = new FakeRunner(server);
    server.on("request", (req, res) => void fake.#handle(req, res));
    server.listen(port, "127.0.0.1");
    await once(server, "listening");
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  async #handle(req: IncomingMessage, res: import("node:http").ServerResponse): Promise<void> {
    const id = String(req.headers["x-request-id"] ?? "");
    res.on("close", () => {
      if (!res.writableFinished) this.aborted.push(id);
    });
    if (req.method === "GET") {
      const path = req.url ?? "/";
      if (path.startsWith("/slow/")) return;
      if (path.startsWith("/broken/")) {
        res.writeHead(500, { "content-type": "application/json" }).end('{"error":{"message":"boom","type":"server_error","code":"boom"}}');
        return;
      }
      this.probes++;
      res.writeHead(200, { "content-type": "application/json" }).end('{"object":"list","data":[]}');
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString() || "{}") as Record<string, unknown>;
    this.bodies.push(body);
    const path = req.url ?? "/";
    if (path.startsWith("/slow/")) return; // never answers: the gateway must time out
    if (path.startsWith("/broken/")) {
      res.writeHead(500, { "content-type": "application/json" }).end('{"error":{"message":"boom","type":"server_error","code":"boom"}}');
      return;
    }
    const model = String(body.model);
    // x_test_chunks: a runner that ignores max_tokens.
    const n = Number(body.x_test_chunks ?? body.max_tokens ?? 16);
    if (path.endsWith("/v1/embeddings")) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [{ object: "embedding", index: 0, embedding: [0.1, 0.2] }], model, usage: { prompt_tokens: 3, total_tokens: 3 } }));
      return;
    }
    const chat = path.endsWith("/chat/completions");
    if (body.stream !== true) {
      const text = "hello from the fake runner";
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({
        id: "cmpl-1", object: chat ? "chat.completion" : "text_completion", created: 1, model,
        choices: [chat ? { index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" } : { index: 0, text, finish_reason: "stop" }],
        usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 },
      }));
      return;
    }
    const delay = Number(body.x_test_delay_ms ?? 0);
    const usage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage ? { usage: null } : {};
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (let i = 0; i < n; i++) {
      if (res.destroyed) return;
      const chunk = chat
        ? { id: "c", object: "chat.completion.chunk", created: 1, model, choices: [{ index: 0, delta: { content: `t${i} ` }, finish_reason: null }], ...usage }
        : { id: "c", object: "text_completion", created: 1, model, choices: [{ index: 0, text: `t${i} `, finish_reason: null }], ...usage };
      if (!res.write(`data: ${JSON.stringify(chunk)}\n\n`)) await once(res, "drain");
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    }
    if ((body.stream_options as { include_usage?: boolean } | undefined)?.include_usage) {
      res.write(`data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model, choices: [], usage: { prompt_tokens: 5, completion_tokens: n, total_tokens: 5 + n } })}\n\n`);
    }
    res.end("data: [DONE]\n\n");
  }
}
