import { z } from "zod";
import { PromptCounter } from "./tokens.ts";

/**
 * One view of an OpenAI-style request that the policy, the limits, the budgets and the body forwarded to the runner
 * all share. Runners read the length of an answer from different fields, in different orders (llama.cpp's server
 * takes `n_predict` before `max_tokens`, Ollama `options.num_predict`, TGI `max_new_tokens`, OpenAI and vLLM
 * `max_completion_tokens` or `max_tokens`), so every one of them is read here, they must agree, and the forwarded
 * body carries the gateway's cap in all of them.
 */

/** The inference routes: a request on any other path carries no OpenAI body. */
export type InferencePath = "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings";
export const INFERENCE_PATHS: readonly InferencePath[] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

/** Fields that bound how many tokens a runner generates per choice (top level). */
export const TOKEN_BOUND_FIELDS = ["max_tokens", "max_completion_tokens", "n_predict", "max_new_tokens"] as const;
/** Ollama's option object, whose `num_predict` bounds the answer too. */
const OLLAMA_BOUND = "num_predict";

/** OpenAI's own ceiling on `n`. */
export const MAX_CHOICES = 128;
const MAX_TOKEN_COUNT = 2 ** 31 - 1;

export interface InferenceRequest {
  readonly path: InferencePath;
  readonly model: string;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  /** The tokens per choice the caller asked for (every bound field agrees on it); undefined when none was set. */
  readonly maxTokens: number | undefined;
  /** Choices returned (`n`, default 1). */
  readonly choices: number;
  /** Sequences the runner generates to answer: the larger of `n` and `best_of`. */
  readonly sequences: number;
  /** The prompt's tokens, messages or input, as a BPE tokenizer counts them (tokens.ts), with chat's framing. */
  readonly promptTokens: number;
  /** The parsed body, as received. */
  readonly body: Readonly<Record<string, unknown>>;
}

/** A body the gateway refuses, with the gateway error code it maps to. */
export class OpenAIRequestError extends Error {
  readonly code: "invalid_request" | "contradictory_token_limits";
  constructor(code: OpenAIRequestError["code"], message: string) {
    super(message);
    this.name = "OpenAIRequestError";
    this.code = code;
  }
}

const content = z.union([z.string(), z.array(z.looseObject({ type: z.string() })), z.null()]);
const common = {
  model: z.string().min(1).max(256),
  stream: z.boolean().nullable().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullable().optional(),
};
const promptShape = z.union([z.string(), z.array(z.string()), z.array(z.number().int()), z.array(z.array(z.number().int()))]);
const shapes: Record<InferencePath, z.ZodType<Record<string, unknown>>> = {
  "/v1/chat/completions": z.looseObject({
    ...common,
    messages: z.array(z.looseObject({ role: z.string().min(1), content: content.optional() })).min(1),
  }),
  "/v1/completions": z.looseObject({ ...common, prompt: promptShape }),
  "/v1/embeddings": z.looseObject({ model: z.string().min(1).max(256), input: promptShape }),
};

/** Reads and checks a parsed body for `path`; an OpenAIRequestError names the field at fault. */
export function readInferenceRequest(path: InferencePath, body: Record<string, unknown>): InferenceRequest {
  const result = shapes[path].safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.map(String).join(".") || "body";
    throw new OpenAIRequestError("invalid_request", `${field}: ${issue.message}`);
  }
  const stream = body.stream === true;
  if (path === "/v1/embeddings") {
    if (stream) throw new OpenAIRequestError("invalid_request", "stream: embeddings cannot be streamed");
    return { path, model: body.model as string, stream: false, includeUsage: false, maxTokens: undefined, choices: 1, sequences: 1, promptTokens: promptTokens(body), body };
  }
  const bound = tokenBound(body);
  if (!bound.ok) throw new OpenAIRequestError(bound.code, bound.message);
  const choices = count(body, "n", MAX_CHOICES) ?? 1;
  const bestOf = count(body, "best_of", MAX_CHOICES);
  return {
    path,
    model: body.model as string,
    stream,
    includeUsage: (body.stream_options as { include_usage?: boolean } | null | undefined)?.include_usage === true,
    maxTokens: bound.value,
    choices,
    sequences: Math.max(choices, bestOf ?? 1),
    promptTokens: promptTokens(body),
    body,
  };
}

/**
 * The body to forward: the caller's, with `max_tokens` set to `cap` and every other bound field the caller sent set
 * to `cap` too, so that whichever one the runner reads, it generates at most `cap` tokens per sequence. Embeddings
 * are forwarded as they came.
 */
export function boundedBody(request: InferenceRequest, cap: number): Record<string, unknown> {
  if (request.path === "/v1/embeddings") return request.body as Record<string, unknown>;
  const out: Record<string, unknown> = { ...request.body };
  for (const field of TOKEN_BOUND_FIELDS) if (field !== "max_tokens" && Object.hasOwn(out, field)) out[field] = cap;
  out.max_tokens = cap;
  const options = out.options;
  if (isRecord(options) && Object.hasOwn(options, OLLAMA_BOUND)) out.options = { ...options, [OLLAMA_BOUND]: cap };
  return out;
}

type Bound = { ok: true; value: number | undefined } | { ok: false; code: OpenAIRequestError["code"]; message: string };

/** The tokens per choice the body asks for: every bound field present must be a positive integer, and all agree. */
function tokenBound(body: Record<string, unknown>): Bound {
  let value: number | undefined;
  let from = "";
  const consider = (name: string, v: unknown): Bound | null => {
    if (v === undefined || v === null) return null;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1 || v > MAX_TOKEN_COUNT) {
      return { ok: false, code: "invalid_request", message: `${name}: must be a positive integer (at most ${MAX_TOKEN_COUNT})` };
    }
    if (value !== undefined && v !== value) {
      return { ok: false, code: "contradictory_token_limits", message: `${from} is ${value} but ${name} is ${v}: send one bound on the answer's length, or the same value in each` };
    }
    value = v;
    from = name;
    return null;
  };
  for (const field of TOKEN_BOUND_FIELDS) {
    const problem = consider(field, body[field]);
    if (problem !== null) return problem;
  }
  if (body.options !== undefined && body.options !== null) {
    if (!isRecord(body.options)) return { ok: false, code: "invalid_request", message: "options: must be an object" };
    const problem = consider(`options.${OLLAMA_BOUND}`, body.options[OLLAMA_BOUND]);
    if (problem !== null) return problem;
  }
  return { ok: true, value };
}

function count(body: Record<string, unknown>, name: string, max: number): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1 || v > max) {
    throw new OpenAIRequestError("invalid_request", `${name}: must be an integer from 1 to ${max}`);
  }
  return v;
}

/** What the policy needs from an OpenAI-style request body. */
export interface OpenAIRequestFields {
  model?: string;
  maxTokens?: number;
  stream?: boolean;
  promptTokens?: number;
}

/** The policy's view of a checked request; `defaultMaxTokens` is what a request that sets no bound is given. */
export function policyFields(request: InferenceRequest, defaultMaxTokens?: number): OpenAIRequestFields {
  const maxTokens = request.maxTokens ?? defaultMaxTokens;
  return {
    model: request.model,
    stream: request.stream,
    promptTokens: request.promptTokens,
    ...(maxTokens === undefined || request.path === "/v1/embeddings" ? {} : { maxTokens }),
  };
}

/**
 * The policy's view of a body that was not checked against a route (`policy explain --body`, test cases): never
 * throws, leaves out what has the wrong shape. Bound fields that disagree yield the largest, the most a runner
 * could be asked for.
 */
export function openAIRequestFields(body: unknown): OpenAIRequestFields {
  try {
    return readFields(body);
  } catch {
    // Only a hostile object (a throwing getter or proxy) gets here; a JSON body never does.
    return {};
  }
}

function readFields(body: unknown): OpenAIRequestFields {
  const out: OpenAIRequestFields = {};
  if (!isRecord(body)) return out;
  if (typeof body.model === "string") out.model = body.model;
  const bounds = [...TOKEN_BOUND_FIELDS.map((f) => body[f]), isRecord(body.options) ? body.options[OLLAMA_BOUND] : undefined];
  for (const v of bounds) if (isCount(v) && (out.maxTokens === undefined || v > out.maxTokens)) out.maxTokens = v;
  if (typeof body.stream === "boolean") out.stream = body.stream;
  if (Array.isArray(body.messages) || body.prompt !== undefined || body.input !== undefined) out.promptTokens = promptTokens(body);
  return out;
}

/** Content nested deeper than this is not counted: real bodies are shallow, hostile ones need not be walked. */
const MAX_DEPTH = 8;

/** Tokens OpenAI's chat format adds around each message (role and delimiters), and to prime the answer. */
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_REPLY = 3;

/** Tokens of the messages' content (with chat's framing), the prompt and the input; token-id arrays count one per id. */
function promptTokens(b: Record<string, unknown>): number {
  const counter = new PromptCounter();
  let framing = 0;
  if (Array.isArray(b.messages) && b.messages.length > 0) {
    framing = TOKENS_PER_REPLY;
    for (const m of b.messages) {
      framing += TOKENS_PER_MESSAGE;
      if (isRecord(m)) countText(m.content, 0, counter);
    }
  }
  for (const field of ["prompt", "input"] as const) if (b[field] !== undefined) countText(b[field], 0, counter);
  return framing + counter.tokens;
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Counts the text of a content value: a string, an array of strings or parts ({type:"text", text}), or token ids. */
function countText(v: unknown, depth: number, counter: PromptCounter): void {
  if (typeof v === "string") return counter.add(v);
  // Token-id arrays (completions, embeddings) are already tokens.
  if (typeof v === "number") {
    counter.tokens += 1;
    return;
  }
  if (depth >= MAX_DEPTH) return;
  if (Array.isArray(v)) {
    for (const item of v) countText(item, depth + 1, counter);
    return;
  }
  if (isRecord(v) && typeof v.text === "string") counter.add(v.text);
}
