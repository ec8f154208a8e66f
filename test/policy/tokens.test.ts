import assert from "node:assert/strict";
import { test } from "node:test";
import { openAIRequestFields } from "../../src/policy/index.ts";
import { EXACT_CHARS } from "../../src/policy/tokens.ts";

const tokens = (body: unknown) => openAIRequestFields(body).promptTokens;

test("prompts are counted with a BPE tokenizer, not as characters / 4", () => {
  // cl100k_base: "The| quick| brown| fox| jumps| over| the| lazy| dog" — characters / 4 said 11.
  assert.equal(tokens({ prompt: "The quick brown fox jumps over the lazy dog" }), 9);
  // A chat message carries its framing: characters / 4 said 3 for "hello world", a chat-templated runner counts 20 or so.
  assert.equal(tokens({ messages: [{ role: "user", content: "hello world" }] }), 2 + 3 + 3);
  // Text that packs many tokens into few characters is not under-counted: 40 digits are 14 tokens, not 10.
  assert.equal(tokens({ prompt: "1234567890".repeat(4) }), 14);
  assert.equal(tokens({ prompt: "日本語のテキスト" }), openAIRequestFields({ input: "日本語のテキスト" }).promptTokens);
  assert.ok(tokens({ prompt: "日本語のテキスト" })! >= 5);
});

test("a wall of one character is counted in pieces, never below its exact count", () => {
  const wall = "x".repeat(EXACT_CHARS);
  // 256-character pieces keep whole tokens: "xxxxxxxx" is one token, and 256 is a multiple of 8.
  assert.equal(tokens({ prompt: wall }), EXACT_CHARS / 8);
});

test("beyond the first EXACT_CHARS characters, a prompt is counted at one token per UTF-8 byte: an upper bound, at memory speed", () => {
  const english = "the shop opens at nine and closes at six, except on sundays. ".repeat(20_000).slice(0, 1_000_000);
  const exactHead = tokens({ prompt: english.slice(0, EXACT_CHARS) })!;
  // The tail is not tokenized at all (bench/micro/prompt-tokens.ts measures what that saves): its bytes are counted.
  assert.equal(tokens({ prompt: english })!, exactHead + (english.length - EXACT_CHARS));
  // The budget is per request, whatever the number of parts.
  const parts = tokens({ messages: [{ role: "user", content: english.slice(0, EXACT_CHARS) }, { role: "user", content: "héllo" }] })!;
  assert.equal(parts, exactHead + Buffer.byteLength("héllo") + 2 * 3 + 3);
});
