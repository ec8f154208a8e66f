/** What the policy needs from an OpenAI-style request body. */
export interface OpenAIRequestFields {
  model?: string;
  maxTokens?: number;
  stream?: boolean;
  promptTokens?: number;
}

/** Content nested deeper than this is not counted: real bodies are shallow, hostile ones need not be walked. */
const MAX_DEPTH = 8;

/**
 * Reads model, max_tokens (or max_completion_tokens), stream and a prompt-token estimate
 * (ceil(characters / 4)) from a parsed chat/completions/embeddings body. Never throws:
 * anything of the wrong shape is simply left out.
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
  if (typeof body !== "object" || body === null || Array.isArray(body)) return out;
  const b = body as Record<string, unknown>;
  if (typeof b.model === "string") out.model = b.model;
  const max = isCount(b.max_tokens) ? b.max_tokens : isCount(b.max_completion_tokens) ? b.max_completion_tokens : undefined;
  if (max !== undefined) out.maxTokens = max;
  if (typeof b.stream === "boolean") out.stream = b.stream;
  let chars = 0;
  let seen = false;
  if (Array.isArray(b.messages)) {
    seen = true;
    for (const m of b.messages) {
      if (typeof m === "object" && m !== null) chars += textLength((m as Record<string, unknown>).content, 0);
    }
  }
  for (const field of ["prompt", "input"] as const) {
    if (b[field] !== undefined) {
      seen = true;
      chars += textLength(b[field], 0);
    }
  }
  if (seen) out.promptTokens = Math.ceil(chars / 4);
  return out;
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Characters of text in a content value: a string, an array of strings or parts ({type:"text", text}), or token ids. */
function textLength(v: unknown, depth: number): number {
  if (typeof v === "string") return v.length;
  // Token-id arrays (completions/embeddings) count one token (four characters) per id.
  if (typeof v === "number") return 4;
  if (depth >= MAX_DEPTH) return 0;
  if (Array.isArray(v)) {
    let n = 0;
    for (const item of v) n += textLength(item, depth + 1);
    return n;
  }
  if (typeof v === "object" && v !== null) {
    const text = (v as Record<string, unknown>).text;
    return typeof text === "string" ? text.length : 0;
  }
  return 0;
}
