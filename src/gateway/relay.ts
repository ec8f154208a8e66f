import type { ServerResponse } from "node:http";
import type { Dispatcher } from "undici";
import { SseSplitter } from "./sse.ts";
import { GatewayError, errorBody } from "./errors.ts";
import type { BufferedAnswer } from "../runners/index.ts";

/** Token accounting hooks for one relayed response; `charge` returns false once the caller's budget is spent. */
export interface TokenMeter {
  charge(tokens: number): boolean;
  /** Exact usage reported by the runner; `counted` is what `charge` already saw for this response. */
  settle(usage: { prompt_tokens?: number; completion_tokens?: number }, counted: number): void;
}

export interface RelayOutcome {
  completionTokens: number;
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
  return new GatewayError(502, "upstream", "upstream_error", "upstream_error", `runner ${runner} answered with status ${status}`);
}

async function readAll(body: Dispatcher.ResponseData["body"]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_UPSTREAM_BODY) throw new GatewayError(502, "upstream", "upstream_error", "upstream_too_large", "runner response is too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/**
 * Relays a non-streaming answer; 4xx from the runner pass through as they are, 5xx become 502. Nothing is written
 * before `durable` (the decision record's fsync) resolves.
 */
export async function relayJson(runner: string, up: BufferedAnswer, res: ServerResponse, meter: TokenMeter, durable: Promise<void>): Promise<RelayOutcome> {
  await durable;
  if (up.statusCode >= 500) throw upstreamFailure(runner, up.statusCode);
  let completionTokens = 0;
  if (up.statusCode < 300) {
    try {
      const usage = (JSON.parse(up.body.toString("utf8")) as { usage?: { prompt_tokens?: number; completion_tokens?: number } }).usage;
      if (usage) {
        meter.settle(usage, 0);
        completionTokens = usage.completion_tokens ?? 0;
      }
    } catch {
      throw new GatewayError(502, "upstream", "upstream_error", "upstream_invalid", `runner ${runner} answered with invalid JSON`);
    }
  }
  res.writeHead(up.statusCode, { "content-type": up.contentType ?? "application/json", "content-length": up.body.length });
  res.end(up.body);
  return { completionTokens, stoppedForBudget: false, clientGone: false };
}

interface StreamChunk {
  choices?: { delta?: { content?: unknown }; text?: unknown }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
}

/**
 * Relays a Server-Sent Events answer event by event with backpressure, counting tokens as they pass (one per
 * content-bearing chunk until the runner's final usage settles the exact figure). Nothing is written before
 * `durable` (the decision record's fsync) resolves. When the budget runs out the
 * stream ends cleanly — an error event, then `data: [DONE]` — and the caller aborts the runner's generation.
 */
export async function relayStream(
  runner: string,
  up: Dispatcher.ResponseData,
  res: ServerResponse,
  meter: TokenMeter,
  durable: Promise<void>,
  options: { forwardUsage: boolean },
): Promise<RelayOutcome> {
  await durable;
  if (up.statusCode !== 200) {
    const body = await readAll(up.body);
    if (up.statusCode >= 500 || up.statusCode < 400) throw upstreamFailure(runner, up.statusCode);
    res.writeHead(up.statusCode, { "content-type": String(up.headers["content-type"] ?? "application/json") });
    res.end(body);
    return { completionTokens: 0, stoppedForBudget: false, clientGone: false };
  }
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" });
  const splitter = new SseSplitter();
  let counted = 0;
  let settled = false;
  const clientGone = (): RelayOutcome => ({ completionTokens: counted, stoppedForBudget: false, clientGone: true });

  for await (const chunk of up.body as AsyncIterable<Buffer>) {
    // The events one runner chunk completes go out in one write: one TLS record, and no await while the socket keeps up.
    let out = "";
    for (const event of splitter.push(chunk)) {
      let forward = true;
      let exhausted = false;
      if (event.data !== null && event.data !== "[DONE]") {
        let parsed: StreamChunk | null = null;
        try {
          parsed = JSON.parse(event.data) as StreamChunk;
        } catch {
          parsed = null;
        }
        if (parsed?.usage) {
          meter.settle(parsed.usage, counted);
          settled = true;
          counted = parsed.usage.completion_tokens ?? counted;
          if (!options.forwardUsage && (parsed.choices?.length ?? 0) === 0) forward = false;
        } else if (parsed?.choices?.some((c) => (typeof c.delta?.content === "string" && c.delta.content !== "") || (typeof c.text === "string" && c.text !== ""))) {
          counted += 1;
          exhausted = !meter.charge(1);
        }
      }
      if (forward) out += event.raw;
      if (exhausted) {
        out += `data: ${errorBody("token budget exhausted: the stream was stopped by the gateway", "rate_limit_error", "token_budget_exhausted")}\n\ndata: [DONE]\n\n`;
        res.end(out);
        return { completionTokens: counted, stoppedForBudget: true, clientGone: false };
      }
    }
    if (out !== "" && !res.write(out) && !(await drained(res))) return clientGone();
  }
  const rest = splitter.flush();
  res.end(rest?.raw);
  if (!settled) meter.settle({ completion_tokens: counted }, counted);
  return { completionTokens: counted, stoppedForBudget: false, clientGone: false };
}
