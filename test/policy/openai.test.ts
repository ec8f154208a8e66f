import assert from "node:assert/strict";
import { describe, it, test } from "node:test";
import fc from "fast-check";
import { boundedBody, openAIRequestFields, OpenAIRequestError, policyFields, readInferenceRequest } from "../../src/policy/index.ts";

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
    // "123|456|78" and "abcd" (cl100k_base), plus 3 framing tokens per message and 3 priming the answer.
    assert.deepEqual(openAIRequestFields(body), { model: "tiny", maxTokens: 64, stream: true, promptTokens: 3 + 1 + 3 * 3 + 3 });
  });

  it("uses max_completion_tokens when max_tokens is absent", () => {
    assert.deepEqual(openAIRequestFields({ model: "m", max_completion_tokens: 9, messages: [] }), { model: "m", maxTokens: 9, promptTokens: 0 });
  });

  it("reads completions prompts (string, list, token ids)", () => {
    assert.deepEqual(openAIRequestFields({ model: "m", prompt: "hello" }), { model: "m", promptTokens: 1 });
    assert.deepEqual(openAIRequestFields({ prompt: ["abcd", "efgh"] }), { promptTokens: 3 });
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

describe("readInferenceRequest: one view of the bounds every runner reads", () => {
  const chat = { model: "m", messages: [{ role: "user", content: "hello there" }] };

  test("every bound field is read; they must agree; none set is undefined", () => {
    assert.equal(readInferenceRequest("/v1/chat/completions", chat).maxTokens, undefined);
    for (const field of ["max_tokens", "max_completion_tokens", "n_predict", "max_new_tokens"]) {
      assert.equal(readInferenceRequest("/v1/chat/completions", { ...chat, [field]: 9 }).maxTokens, 9, field);
    }
    assert.equal(readInferenceRequest("/v1/chat/completions", { ...chat, options: { num_predict: 9 } }).maxTokens, 9);
    assert.equal(readInferenceRequest("/v1/completions", { model: "m", prompt: "p", max_tokens: 9, n_predict: 9, max_tokens_: 1 }).maxTokens, 9);
    assert.throws(() => readInferenceRequest("/v1/chat/completions", { ...chat, max_tokens: 1, max_completion_tokens: 300 }),
      (err: unknown) => err instanceof OpenAIRequestError && err.code === "contradictory_token_limits" && /max_tokens is 1 but max_completion_tokens is 300/.test(err.message));
    assert.throws(() => readInferenceRequest("/v1/chat/completions", { ...chat, n_predict: -1 }), (err: unknown) => err instanceof OpenAIRequestError && /n_predict/.test(err.message));
    assert.throws(() => readInferenceRequest("/v1/chat/completions", { ...chat, options: "x" }), OpenAIRequestError);
  });

  test("sequences are the larger of n and best_of", () => {
    const r = readInferenceRequest("/v1/completions", { model: "m", prompt: "p", n: 2, best_of: 5 });
    assert.deepEqual([r.choices, r.sequences], [2, 5]);
    assert.throws(() => readInferenceRequest("/v1/completions", { model: "m", prompt: "p", n: 0 }), OpenAIRequestError);
  });

  test("the forwarded body carries the cap in every bound field the caller sent, and always in max_tokens", () => {
    const r = readInferenceRequest("/v1/chat/completions", { ...chat, max_completion_tokens: 9, n_predict: 9, options: { num_predict: 9, seed: 1 } });
    assert.deepEqual(boundedBody(r, 4), { ...chat, max_tokens: 4, max_completion_tokens: 4, n_predict: 4, options: { num_predict: 4, seed: 1 } });
    assert.deepEqual(r.body.options, { num_predict: 9, seed: 1 }, "the body as received is not changed");
    const e = readInferenceRequest("/v1/embeddings", { model: "m", input: "x" });
    assert.equal(boundedBody(e, 4), e.body);
  });

  test("the policy sees the bound a request would be forwarded with", () => {
    const r = readInferenceRequest("/v1/chat/completions", chat);
    assert.equal(policyFields(r, 1024).maxTokens, 1024);
    assert.equal(policyFields(readInferenceRequest("/v1/chat/completions", { ...chat, n_predict: 7 }), 1024).maxTokens, 7);
    // Lenient reading (policy explain/test): disagreeing bounds count as the largest.
    assert.equal(openAIRequestFields({ max_tokens: 1, max_completion_tokens: 300 }).maxTokens, 300);
  });
});
