import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { parseChatRequest, parseCompletionRequest, RunnerRequestError } from "../../src/runners/embedded/openai-request.ts";

test("a full chat request parses with OpenAI's defaults filled in", () => {
  const r = parseChatRequest({
    model: "m",
    messages: [
      { role: "developer", content: "be brief" },
      { role: "user", content: [{ type: "text", text: "hi " }, { type: "text", text: "there" }] },
      { role: "assistant", content: null },
    ],
    stop: "\n",
    stream: true,
    stream_options: { include_usage: true },
    max_completion_tokens: 5,
    seed: -3,
    top_p: 0.5,
    user: "ignored",
    logit_bias: {},
  });
  assert.deepEqual(r, {
    kind: "chat",
    model: "m",
    maxTokens: 5,
    temperature: 1,
    topP: 0.5,
    seed: -3,
    stop: ["\n"],
    stream: true,
    includeUsage: true,
    messages: [
      { role: "system", content: "be brief" },
      { role: "user", content: "hi there" },
      { role: "assistant", content: "" },
    ],
  });
});

test("a completion accepts a one-element prompt array and drops empty stops", () => {
  const r = parseCompletionRequest({ model: "m", prompt: ["p"], stop: ["", "x"], temperature: 0, max_tokens: null });
  assert.equal(r.prompt, "p");
  assert.deepEqual(r.stop, ["x"]);
  assert.equal(r.temperature, 0);
  assert.equal(r.maxTokens, undefined);
  assert.equal(r.stream, false);
});

test("each malformed field is named", () => {
  const ok = { model: "m", messages: [{ role: "user", content: "x" }] };
  const cases: Array<[unknown, string]> = [
    [null, "body"],
    ["str", "body"],
    [{ ...ok, model: 3 }, "model"],
    [{ ...ok, model: "" }, "model"],
    [{ ...ok, messages: "x" }, "messages"],
    [{ ...ok, messages: [null] }, "messages"],
    [{ ...ok, messages: [{ role: "tool", content: "x" }] }, "messages"],
    [{ ...ok, messages: [{ role: "user", content: 5 }] }, "messages"],
    [{ ...ok, max_tokens: -1 }, "max_tokens"],
    [{ ...ok, max_completion_tokens: "5" }, "max_completion_tokens"],
    [{ ...ok, max_tokens: 1, max_completion_tokens: 300 }, "max_completion_tokens"],
    [{ ...ok, temperature: Number.NaN }, "temperature"],
    [{ ...ok, top_p: 1.5 }, "top_p"],
    [{ ...ok, seed: 0.5 }, "seed"],
    [{ ...ok, n: 3 }, "n"],
    [{ ...ok, stop: 5 }, "stop"],
    [{ ...ok, stop: [1] }, "stop"],
    [{ ...ok, stream_options: [] }, "stream_options"],
    [{ ...ok, stream_options: { include_usage: "yes" } }, "stream_options"],
  ];
  for (const [body, check] of cases) {
    assert.throws(
      () => parseChatRequest(body),
      (err: unknown) => err instanceof RunnerRequestError && err.status === 400 && err.check === check && err.message.startsWith("runner: "),
      JSON.stringify(body),
    );
  }
});

test("any JSON value either parses or is a 400, never another error", () => {
  const json = fc.jsonValue();
  const shaped = fc.record(
    { model: fc.oneof(fc.constant("m"), json), messages: fc.oneof(fc.array(fc.record({ role: fc.oneof(fc.constantFrom("user", "system", "x"), json), content: json })), json), prompt: json, stop: json, max_tokens: json, stream: json, stream_options: json },
    { requiredKeys: [] },
  );
  fc.assert(
    fc.property(fc.oneof(json, shaped), (body) => {
      for (const parse of [parseChatRequest, parseCompletionRequest]) {
        try {
          parse(body);
        } catch (err) {
          assert.ok(err instanceof RunnerRequestError && err.status === 400, String(err));
        }
      }
    }),
    { numRuns: 1000 },
  );
});

test("the completions route reads max_completion_tokens too, so a gateway's cap holds whichever it sent", () => {
  assert.equal(parseCompletionRequest({ model: "m", prompt: "p", max_completion_tokens: 7 }).maxTokens, 7);
  assert.equal(parseCompletionRequest({ model: "m", prompt: "p", max_tokens: 7, max_completion_tokens: 7 }).maxTokens, 7);
  assert.throws(() => parseCompletionRequest({ model: "m", prompt: "p", max_tokens: 1, max_completion_tokens: 500 }), (err: unknown) => err instanceof RunnerRequestError && err.status === 400);
});
