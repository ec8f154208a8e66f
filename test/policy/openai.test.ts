import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { openAIRequestFields } from "../../src/policy/index.ts";

describe("openAIRequestFields", () => {
  it("reads a chat completion body, including array-of-parts content", () => {
    const body = {
      model: "tiny",
      max_tokens: 64,
      stream: true,
      messages: [
        { role: "system", content: "12345678" },
        { role: "user", content: [{ type: "text", text: "abcd" }, { type: "image_url", image_url: { url: "data:..." } }] },
        { role: "assistant", content: null },
      ],
    };
    assert.deepEqual(openAIRequestFields(body), { model: "tiny", maxTokens: 64, stream: true, promptTokens: 3 });
  });

  it("uses max_completion_tokens when max_tokens is absent", () => {
    assert.deepEqual(openAIRequestFields({ model: "m", max_completion_tokens: 9, messages: [] }), { model: "m", maxTokens: 9, promptTokens: 0 });
  });

  it("reads completions prompts (string, list, token ids)", () => {
    assert.deepEqual(openAIRequestFields({ model: "m", prompt: "hello" }), { model: "m", promptTokens: 2 });
    assert.deepEqual(openAIRequestFields({ prompt: ["abcd", "efgh"] }), { promptTokens: 2 });
    assert.deepEqual(openAIRequestFields({ prompt: [1, 2, 3] }), { promptTokens: 3 });
  });

  it("reads embeddings input", () => {
    assert.deepEqual(openAIRequestFields({ model: "e", input: ["aaaa", "bbbbb"] }), { model: "e", promptTokens: 3 });
  });

  it("leaves out fields of the wrong type", () => {
    assert.deepEqual(openAIRequestFields({ model: 5, max_tokens: "10", stream: "yes" }), {});
    assert.deepEqual(openAIRequestFields({ max_tokens: -1 }), {});
    assert.deepEqual(openAIRequestFields({ max_tokens: 1.5 }), {});
    assert.deepEqual(openAIRequestFields({ messages: "hi" }), {});
  });

  it("never throws, whatever it is given", () => {
    for (const v of [null, undefined, 0, "x", [], true, Object.create(null)]) assert.deepEqual(openAIRequestFields(v), {});
    const deep: unknown[] = [];
    let cur = deep;
    for (let i = 0; i < 100_000; i++) {
      const next: unknown[] = [];
      cur.push(next);
      cur = next;
    }
    assert.deepEqual(openAIRequestFields({ input: deep }), { promptTokens: 0 });
    fc.assert(fc.property(fc.anything(), (v) => {
      openAIRequestFields(v);
      openAIRequestFields({ messages: [v], prompt: v, input: v, model: v, max_tokens: v });
    }));
  });

  it("ignores getters that throw", () => {
    const hostile = { get model(): string { throw new Error("boom"); } };
    assert.deepEqual(openAIRequestFields(hostile), {});
  });
});
