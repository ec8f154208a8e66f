/**
 * The OpenAI request shapes the embedded runner accepts, checked by hand so each
 * rejection names the field at fault. Unknown fields are ignored, as OpenAI's
 * clients send many the runner has no use for.
 */

/** An error the HTTP layer turns into OpenAI's `{"error":{...}}` body. */
export class RunnerRequestError extends Error {
  readonly check: string;
  readonly status: number;
  readonly type: string;
  constructor(status: number, check: string, message: string, type = "invalid_request_error") {
    super(`runner: ${message}`);
    this.name = "RunnerRequestError";
    this.status = status;
    this.check = check;
    this.type = type;
  }
}

export interface SamplingOptions {
  model: string;
  /** Undefined: the runner's default. */
  maxTokens: number | undefined;
  temperature: number;
  topP: number | undefined;
  seed: number | undefined;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

export type ChatRole = "system" | "user" | "assistant";

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface ChatRequest extends SamplingOptions {
  kind: "chat";
  messages: ChatMessage[];
}

export interface CompletionRequest extends SamplingOptions {
  kind: "completion";
  prompt: string;
}

const OPENAI_DEFAULT_TEMPERATURE = 1;
const MAX_STOP_SEQUENCES = 4;

function bad(check: string, message: string): RunnerRequestError {
  return new RunnerRequestError(400, check, message);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function optionalNumber(body: Record<string, unknown>, key: string, min: number, max: number, integer: boolean): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    throw bad(key, `'${key}' must be ${integer ? "an integer" : "a number"} between ${min} and ${max}`);
  }
  return v;
}

const MAX_TOKEN_KEYS = ["max_tokens", "max_completion_tokens"] as const;

function parseSampling(body: Record<string, unknown>): SamplingOptions {
  if (typeof body.model !== "string" || body.model.length === 0) throw bad("model", "'model' must be a non-empty string");
  // Both bounds are read on both routes, and must agree: a gateway in front decides on one value, and the runner
  // must not generate by another.
  let maxTokens: number | undefined;
  let from = "";
  for (const key of MAX_TOKEN_KEYS) {
    const v = optionalNumber(body, key, 1, 2 ** 31 - 1, true);
    if (v === undefined) continue;
    if (maxTokens !== undefined && v !== maxTokens) throw bad(key, `'${from}' is ${maxTokens} but '${key}' is ${v}; send one, or the same value in both`);
    maxTokens = v;
    from = key;
  }
  optionalNumber(body, "n", 1, 1, true); // one choice per request: only n = 1 passes
  let stop: string[] = [];
  if (typeof body.stop === "string") stop = [body.stop];
  else if (Array.isArray(body.stop)) {
    if (body.stop.length > MAX_STOP_SEQUENCES || !body.stop.every((s): s is string => typeof s === "string")) {
      throw bad("stop", `'stop' must be a string or an array of at most ${MAX_STOP_SEQUENCES} strings`);
    }
    stop = body.stop;
  } else if (body.stop !== undefined && body.stop !== null) {
    throw bad("stop", "'stop' must be a string or an array of strings");
  }
  stop = stop.filter((s) => s.length > 0);
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean") {
    throw bad("stream", "'stream' must be a boolean");
  }
  const stream = body.stream === true;
  let includeUsage = false;
  if (body.stream_options !== undefined && body.stream_options !== null) {
    if (!isRecord(body.stream_options)) throw bad("stream_options", "'stream_options' must be an object");
    const iu = body.stream_options.include_usage;
    if (iu !== undefined && typeof iu !== "boolean") throw bad("stream_options", "'stream_options.include_usage' must be a boolean");
    includeUsage = iu === true;
  }
  return {
    model: body.model,
    maxTokens,
    temperature: optionalNumber(body, "temperature", 0, 2, false) ?? OPENAI_DEFAULT_TEMPERATURE,
    topP: optionalNumber(body, "top_p", 0, 1, false),
    seed: optionalNumber(body, "seed", -(2 ** 53), 2 ** 53, true),
    stop,
    stream,
    includeUsage,
  };
}

function messageText(content: unknown, index: number): string {
  if (typeof content === "string") return content;
  if (content === null || content === undefined) return "";
  if (Array.isArray(content)) {
    return content
      .map((part, j) => {
        if (!isRecord(part) || part.type !== "text" || typeof part.text !== "string") {
          throw bad("messages", `messages[${index}].content[${j}] must be a text part; only text is supported`);
        }
        return part.text;
      })
      .join("");
  }
  throw bad("messages", `messages[${index}].content must be a string or an array of text parts`);
}

const ROLES: Record<string, ChatRole> = { system: "system", developer: "system", user: "user", assistant: "assistant" };

export function parseChatRequest(body: unknown): ChatRequest {
  if (!isRecord(body)) throw bad("body", "request body must be a JSON object");
  const sampling = parseSampling(body);
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    throw bad("messages", "'messages' must be a non-empty array");
  }
  const messages = body.messages.map((m: unknown, i: number): ChatMessage => {
    if (!isRecord(m)) throw bad("messages", `messages[${i}] must be an object`);
    const role = typeof m.role === "string" ? ROLES[m.role] : undefined;
    if (role === undefined) throw bad("messages", `messages[${i}].role must be one of system, developer, user, assistant`);
    return { role, content: messageText(m.content, i) };
  });
  return { kind: "chat", ...sampling, messages };
}

export function parseCompletionRequest(body: unknown): CompletionRequest {
  if (!isRecord(body)) throw bad("body", "request body must be a JSON object");
  const sampling = parseSampling(body);
  let prompt: string;
  if (typeof body.prompt === "string") prompt = body.prompt;
  else if (Array.isArray(body.prompt) && body.prompt.length === 1 && typeof body.prompt[0] === "string") prompt = body.prompt[0];
  else throw bad("prompt", "'prompt' must be a string (or an array of exactly one string)");
  return { kind: "completion", ...sampling, prompt };
}
