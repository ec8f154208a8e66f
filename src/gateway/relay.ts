import type { ServerResponse } from "node:http";
import type { Dispatcher } from "undici";
import { SseSplitter } from "./sse.ts";
import { GatewayError, streamErrorEvents } from "./errors.ts";
import type { BufferedAnswer } from "../runners/index.ts";
import type { Usage } from "./decision-core.ts";

/** How a relay ended, when it did not fail. */
export interface RelayOutcome {
  stoppedForBudget: boolean;
  clientGone: boolean;
}



const MAX_UPSTREAM_BODY = 64 * 1024 * 1024;

/** Waits until the response can take more data, or the client is gone (returns false). */
function drained(res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off("drain", onDrain);
      res.off("close", onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.on("drain", onDrain);
    res.on("close", onClose);
  });
}

/** The most of a runner's error answer read, and of its message passed on to the caller. */
const MAX_ERROR_BODY = 64 * 1024;
const MAX_ERROR_MESSAGE = 1000;

/** A runner's failure (5xx, or a status a proxy cannot pass on), with the runner's own message, bounded. */
function upstreamFailure(runner: string, status: number, body: Buffer): GatewayError {
  const message = runnerMessage(body);
  return new GatewayError("upstream_error", `runner ${runner} answered ${status}${message === null ? "" : `: ${message}`}`);
}

/**
 * The message of a runner's error answer: OpenAI's and llama.cpp's `error.message`, vLLM's `message`, Ollama's
 * `error`, FastAPI's `detail`, or the text itself; one line, at most MAX_ERROR_MESSAGE characters.
 */
export function runnerMessage(body: Buffer): string | null {
  const text = body.subarray(0, MAX_ERROR_BODY).toString("utf8");
  let message: unknown = text;
  try {
    const json = JSON.parse(text) as { error?: unknown; message?: unknown; detail?: unknown } | null;
    const error = json?.error;
    message = typeof error === "string" ? error
      : typeof (error as { message?: unknown } | undefined)?.message === "string" ? (error as { message: string }).message
      : typeof json?.message === "string" ? json.message
      : typeof json?.detail === "string" ? json.detail
      : text;
  } catch {
    // not JSON: the text is the message
  }
  // One line without control characters, so that it cannot forge log lines or SSE events.
  const line = (message as string).replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  if (line === "") return null;
  return line.length > MAX_ERROR_MESSAGE ? `${line.slice(0, MAX_ERROR_MESSAGE)}…` : line;
}

/** Reads at most `limit` bytes of an answer and drops the rest. */
async function readSome(body: Dispatcher.ResponseData["body"], limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= limit) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks, size);
}

async function readAll(body: Dispatcher.ResponseData["body"]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_UPSTREAM_BODY) throw new GatewayError("upstream_too_large", "runner response is too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** What a runner reports it used. */
interface RunnerUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
}

interface Answer {
  choices?: { message?: { content?: unknown }; text?: unknown }[];
  usage?: RunnerUsage | null;
}

/**
 * Relays a non-streaming answer; 4xx from the runner pass through as they are, 5xx become 502. Nothing is written
 * before `durable` (the decision record's fsync) resolves. A runner that reports no usage is charged for the
 * answer's text (about four characters a token).
 */
export async function relayJson(runner: string, up: BufferedAnswer, res: ServerResponse, durable: Promise<void>, used: Usage): Promise<RelayOutcome> {
  await durable;
  if (up.statusCode >= 500) throw upstreamFailure(runner, up.statusCode, up.body);
  if (up.statusCode < 300) {
    let answer: Answer;
    try {
      answer = JSON.parse(up.body.toString("utf8")) as Answer;
    } catch {
      throw new GatewayError("upstream_invalid", `runner ${runner} answered with invalid JSON`);
    }
    const usage = answer?.usage;
    used.prompt = count(usage?.prompt_tokens) ?? used.prompt;
    used.completion = count(usage?.completion_tokens) ?? textTokens(answer);
  }
  res.writeHead(up.statusCode, { "content-type": up.contentType ?? "application/json", "content-length": up.body.length });
  res.end(up.body);
  return { stoppedForBudget: false, clientGone: false };
}

function count(n: unknown): number | undefined {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

function textTokens(answer: Answer): number {
  let chars = 0;
  if (Array.isArray(answer?.choices)) {
    for (const c of answer.choices) {
      const text = c?.message?.content ?? c?.text;
      if (typeof text === "string") chars += text.length;
    }
  }
  return Math.ceil(chars / 4);
}

/** `"usage": null` as a key of the chunk: every `"` inside a JSON string is escaped, so this matches keys only. */
const NULL_USAGE = /,\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*/;

/** The event without its `"usage": null`; cut from the text as it came, or, when laid out otherwise, re-serialized. */
function withoutNullUsage(raw: string, parsed: StreamChunk): string {
  const cut = raw.replace(NULL_USAGE, "");
  if (cut !== raw) return cut;
  const { usage: _, ...rest } = parsed;
  return `data: ${JSON.stringify(rest)}\n\n`;
}

interface StreamChunk {
  choices?: { delta?: { content?: unknown }; text?: unknown }[];
  usage?: RunnerUsage | null;
}

/**
 * Relays a Server-Sent Events answer event by event with backpressure, counting tokens as they pass (one per
 * content-bearing chunk, until the runner's final usage gives the exact figure). Nothing is written before
 * `durable` (the decision record's fsync) resolves. The request reserved `maxTokens` for the answer and the runner
 * was asked for no more; a runner that sends more anyway is stopped there: the stream ends cleanly — an error
 * event, then `data: [DONE]` — and the caller aborts the runner's generation.
 */
export async function relayStream(
  runner: string,
  up: Dispatcher.ResponseData,
  res: ServerResponse,
  durable: Promise<void>,
  options: { forwardUsage: boolean; maxTokens: number },
  used: Usage,
): Promise<RelayOutcome> {
  await durable;
  if (up.statusCode !== 200) {
    if (up.statusCode >= 500 || up.statusCode < 400) throw upstreamFailure(runner, up.statusCode, await readSome(up.body, MAX_ERROR_BODY));
    const body = await readAll(up.body);
    res.writeHead(up.statusCode, { "content-type": String(up.headers["content-type"] ?? "application/json") });
    res.end(body);
    return { stoppedForBudget: false, clientGone: false };
  }
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" });
  const splitter = new SseSplitter();
  let counted = 0;
  const outcome = (extra: Partial<RelayOutcome>): RelayOutcome => ({ stoppedForBudget: false, clientGone: false, ...extra });

  for await (const chunk of up.body as AsyncIterable<Buffer>) {
    // The events one runner chunk completes go out in one write: one TLS record, and no await while the socket keeps up.
    let out = "";
    for (const event of splitter.push(chunk)) {
      let forward = true;
      let raw = event.raw;
      if (event.data !== null && event.data !== "[DONE]") {
        let parsed: StreamChunk | null = null;
        try {
          parsed = JSON.parse(event.data) as StreamChunk;
        } catch {
          parsed = null;
        }
        if (parsed?.usage) {
          // The runner's own figures settle the count, but never below what passed through the gateway.
          used.prompt = count(parsed.usage.prompt_tokens) ?? used.prompt;
          used.completion = Math.max(counted, count(parsed.usage.completion_tokens) ?? 0);
          if (!options.forwardUsage && (parsed.choices?.length ?? 0) === 0) forward = false;
        } else {
          // The gateway asked for usage, not the client: every chunk then says `"usage": null`, which the client did
          // not ask for (OpenAI sends the field only to clients that did).
          if (parsed?.usage === null && !options.forwardUsage) raw = withoutNullUsage(raw, parsed);
          if (parsed?.choices?.some((c) => (typeof c.delta?.content === "string" && c.delta.content !== "") || (typeof c.text === "string" && c.text !== ""))) {
            counted += 1;
            if (counted > used.completion) used.completion = counted;
          }
        }
      }
      if (counted > options.maxTokens) {
        res.end(out + streamErrorEvents("token_budget_exhausted", `token limit reached: the runner sent more than the ${options.maxTokens} tokens this request reserved; the stream was stopped by the gateway`));
        return outcome({ stoppedForBudget: true });
      }
      if (forward) out += raw;
    }
    if (out !== "" && !res.write(out) && !(await drained(res))) return outcome({ clientGone: true });
  }
  const rest = splitter.flush();
  res.end(rest?.raw);
  return outcome({});
}
