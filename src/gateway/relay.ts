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

function upstreamFailure(runner: string, status: number): GatewayError {
  return new GatewayError("upstream_error", `runner ${runner} answered with status ${status}`);
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
  if (up.statusCode >= 500) throw upstreamFailure(runner, up.statusCode);
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
    const body = await readAll(up.body);
    if (up.statusCode >= 500 || up.statusCode < 400) throw upstreamFailure(runner, up.statusCode);
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
        } else if (parsed?.choices?.some((c) => (typeof c.delta?.content === "string" && c.delta.content !== "") || (typeof c.text === "string" && c.text !== ""))) {
          counted += 1;
          if (counted > used.completion) used.completion = counted;
        }
      }
      if (counted > options.maxTokens) {
        res.end(out + streamErrorEvents("token_budget_exhausted", `token limit reached: the runner sent more than the ${options.maxTokens} tokens this request reserved; the stream was stopped by the gateway`));
        return outcome({ stoppedForBudget: true });
      }
      if (forward) out += event.raw;
    }
    if (out !== "" && !res.write(out) && !(await drained(res))) return outcome({ clientGone: true });
  }
  const rest = splitter.flush();
  res.end(rest?.raw);
  return outcome({});
}
