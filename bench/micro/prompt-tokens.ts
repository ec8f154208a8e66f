/**
 * What the prompt estimate costs on the request path: `openAIRequestFields` (the whole normalized view: shape check,
 * bounds, prompt tokens) with the BPE count the gateway uses, against the same view with the old estimate
 * (characters / 4), for bodies of different sizes and kinds. Also how far each estimate is from the BPE count.
 *
 *   ./node_modules/.bin/node bench/micro/prompt-tokens.ts [--quick]
 */
import { parseArgs } from "node:util";
import { openAIRequestFields } from "../../src/policy/index.ts";
import { loadTokenizer, PromptCounter } from "../../src/policy/tokens.ts";
import { printResult, quantile } from "./result.ts";
import type { MicroResult } from "./result.ts";

const ENGLISH = "The kiosk opens at nine and closes at six, except on Sundays; ask the assistant about returns. ";

interface Case {
  name: string;
  body: Record<string, unknown>;
}

function cases(): Case[] {
  const chat = (content: string) => ({ model: "m", max_tokens: 64, messages: [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content }] });
  return [
    { name: "chat, 1 short message", body: chat("What time does the store open on Saturday, and can I return an opened item?") },
    { name: "chat, 2 KiB English", body: chat(ENGLISH.repeat(22).slice(0, 2048)) },
    { name: "chat, 8 KiB English", body: chat(ENGLISH.repeat(90).slice(0, 8192)) },
    { name: "completion, 8 KiB base64", body: { model: "m", max_tokens: 64, prompt: Buffer.from(ENGLISH.repeat(70)).toString("base64").slice(0, 8192) } },
    { name: "completion, 8 KiB of one letter", body: { model: "m", max_tokens: 64, prompt: "x".repeat(8192) } },
    { name: "chat, 1 MiB English", body: chat(ENGLISH.repeat(11_000).slice(0, 1 << 20)) },
  ];
}

/** The prompt's text pieces, in order. */
function contentOf(body: Record<string, unknown>): string[] {
  const pieces = ((body.messages as { content: string }[] | undefined) ?? []).map((m) => m.content);
  if (typeof body.prompt === "string") pieces.push(body.prompt);
  return pieces;
}

/** characters / 4, as the estimate was before the tokenizer (content strings only). */
function charsOver4(body: Record<string, unknown>): number {
  let chars = 0;
  for (const m of (body.messages as { content: string }[] | undefined) ?? []) chars += m.content.length;
  if (typeof body.prompt === "string") chars += body.prompt.length;
  return Math.ceil(chars / 4);
}

function timeUs(fn: () => void, budgetMs: number): number[] {
  const samples: number[] = [];
  const end = performance.now() + budgetMs;
  while (performance.now() < end || samples.length < 5) {
    const t = performance.now();
    fn();
    samples.push((performance.now() - t) * 1000);
  }
  return samples.sort((a, b) => a - b);
}

export async function run(options: { quick: boolean }): Promise<MicroResult> {
  const budgetMs = options.quick ? 50 : 600;
  const loadStart = performance.now();
  loadTokenizer();
  const loadMs = performance.now() - loadStart;
  const rows: MicroResult["rows"] = [];
  for (const c of cases()) {
    const text = JSON.stringify(c.body);
    const parse = timeUs(() => JSON.parse(text), budgetMs);
    const parsed = JSON.parse(text) as Record<string, unknown>;
    const view = timeUs(() => openAIRequestFields(parsed), budgetMs);
    const bpeOnly = timeUs(() => {
      const counter = new PromptCounter();
      for (const piece of contentOf(parsed)) counter.add(piece);
    }, budgetMs);
    const quarter = timeUs(() => charsOver4(parsed), budgetMs);
    rows.push({
      body: c.name,
      bytes: text.length,
      "JSON.parse p50 µs": round(quantile(parse, 0.5)),
      "chars/4 p50 µs": round(quantile(quarter, 0.5)),
      "BPE count p50 µs": round(quantile(bpeOnly, 0.5)),
      "BPE count p99 µs": round(quantile(bpeOnly, 0.99)),
      "whole view p50 µs": round(quantile(view, 0.5)),
      "BPE tokens": openAIRequestFields(c.body).promptTokens ?? 0,
      "chars/4 said": charsOver4(c.body),
    });
  }
  return {
    name: "Prompt token estimate (request path)",
    rows,
    notes: [
      `Tokenizer load (gpt-tokenizer cl100k_base, once at gateway start): ${round(loadMs)} ms.`,
      "Per body: JSON.parse of it; the old estimate (characters / 4) and the BPE count alone over the parsed content; and " +
        "the whole request view the gateway builds (openAIRequestFields: OpenAI shape, bounds, BPE prompt count with chat " +
        "framing). Only the first 8 Ki characters are counted exactly; beyond them a byte is a token, so a 1 MiB body " +
        "costs what 8 KiB do plus a byte count.",
      `${budgetMs} ms of samples per row, one process, one core.`,
    ],
  };
}

function round(n: number): number {
  return n >= 100 ? Math.round(n) : Math.round(n * 10) / 10;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { quick: { type: "boolean", default: false } } });
  printResult(await run({ quick: values.quick }));
}
