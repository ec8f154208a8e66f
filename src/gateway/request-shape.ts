import { z } from "zod";
import { badRequest } from "./errors.ts";

/** The OpenAI request shapes the gateway relies on; other fields pass through to the runner untouched. */
const content = z.union([z.string(), z.array(z.looseObject({ type: z.string() })), z.null()]);
const common = {
  model: z.string().min(1).max(256),
  max_tokens: z.number().int().positive().optional(),
  max_completion_tokens: z.number().int().positive().optional(),
  stream: z.boolean().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullable().optional(),
};

const shapes = {
  "/v1/chat/completions": z.looseObject({
    ...common,
    messages: z.array(z.looseObject({ role: z.string().min(1), content: content.optional() })).min(1),
  }),
  "/v1/completions": z.looseObject({
    ...common,
    prompt: z.union([z.string(), z.array(z.string()), z.array(z.number().int()), z.array(z.array(z.number().int()))]),
  }),
  "/v1/embeddings": z.looseObject({
    model: z.string().min(1).max(256),
    input: z.union([z.string(), z.array(z.string()), z.array(z.number().int()), z.array(z.array(z.number().int()))]),
  }),
} as const;

export type InferencePath = keyof typeof shapes;
export const INFERENCE_PATHS = Object.keys(shapes) as InferencePath[];

export interface InferenceRequest {
  model: string;
  stream: boolean;
  includeUsage: boolean;
  maxTokens: number | undefined;
}

/** Checks a parsed body against the route's OpenAI shape; a mismatch is a 400 naming the field. */
export function checkRequestShape(path: InferencePath, body: Record<string, unknown>): InferenceRequest {
  const result = shapes[path].safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.map(String).join(".") || "body";
    throw badRequest("invalid_request", `${field}: ${issue.message}`);
  }
  const b = result.data as { model: string; stream?: boolean; stream_options?: { include_usage?: boolean } | null; max_tokens?: number; max_completion_tokens?: number };
  if (path === "/v1/embeddings" && b.stream === true) throw badRequest("invalid_request", "stream: embeddings cannot be streamed");
  return {
    model: b.model,
    stream: b.stream === true,
    includeUsage: b.stream_options?.include_usage === true,
    maxTokens: b.max_completion_tokens ?? b.max_tokens,
  };
}
