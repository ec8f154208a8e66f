import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { getLlama, LlamaCompletion, LlamaLogLevel, readGgufFileInfo } from "node-llama-cpp";
import { run } from "../../src/cli/model.ts";
import { buildTinyModel, TINY_MODEL_SHAPE, writeTinyModel } from "../../src/runners/tiny-model.ts";
import { readGguf, tensorData } from "./gguf-reader.ts";

const dir = mkdtempSync(join(tmpdir(), "edgeward-tiny-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

function cliIO() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s), cwd: dir }, out, err };
}

test("the same seed gives the same bytes; another seed other weights", () => {
  const a = buildTinyModel({ seed: 7 });
  assert.equal(sha(a), sha(buildTinyModel({ seed: 7 })));
  const b = buildTinyModel({ seed: 8 });
  assert.notEqual(sha(a), sha(b));
  assert.equal(a.length, b.length);
  assert.equal(sha(buildTinyModel()), sha(buildTinyModel({ seed: 1 })));
});

test("about 1 MB", () => {
  const size = buildTinyModel().length;
  assert.ok(size > 900_000 && size < 1_200_000, `size ${size}`);
});

test("rejects a seed outside u32", () => {
  assert.throws(() => buildTinyModel({ seed: -1 }), RangeError);
  assert.throws(() => buildTinyModel({ seed: 2 ** 32 }), RangeError);
  assert.throws(() => buildTinyModel({ seed: 1.5 }), RangeError);
});

test("metadata and tensor shapes are what llama.cpp's llama architecture expects", () => {
  const bytes = buildTinyModel();
  const f = readGguf(bytes);
  const s = TINY_MODEL_SHAPE;
  assert.equal(f.version, 3);
  assert.equal(f.metadata.get("general.architecture"), "llama");
  assert.equal(f.metadata.get("general.alignment"), 32);
  assert.equal(f.metadata.get("llama.context_length"), s.contextLength);
  assert.equal(f.metadata.get("llama.embedding_length"), s.embeddingLength);
  assert.equal(f.metadata.get("llama.block_count"), s.blockCount);
  assert.equal(f.metadata.get("llama.rope.dimension_count"), s.embeddingLength / s.headCount);
  assert.equal(f.metadata.get("tokenizer.ggml.model"), "llama");
  const tokens = f.metadata.get("tokenizer.ggml.tokens") as string[];
  const types = f.metadata.get("tokenizer.ggml.token_type") as number[];
  assert.deepEqual(tokens.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
  assert.equal(tokens[258], "<0xFF>");
  assert.deepEqual(types.slice(0, 4), [2, 3, 3, 6]);
  assert.equal(new Set(tokens).size, tokens.length);
  assert.equal((f.metadata.get("tokenizer.ggml.scores") as number[]).length, tokens.length);
  assert.equal(f.metadata.get("llama.vocab_size"), tokens.length);
  assert.ok(tokens.length > 300 && tokens.length < 1000);
  for (const prefix of ["▁h", "▁he", "▁hel", "▁hell", "▁hello", "▁world"]) assert.ok(tokens.includes(prefix), prefix);

  const dims = new Map(f.tensors.map((t) => [t.name, t.dims]));
  const e = s.embeddingLength;
  const v = tokens.length;
  assert.deepEqual(dims.get("token_embd.weight"), [e, v]);
  assert.deepEqual(dims.get("output.weight"), [e, v]);
  assert.deepEqual(dims.get("output_norm.weight"), [e]);
  assert.deepEqual(dims.get("blk.1.attn_q.weight"), [e, e]);
  assert.deepEqual(dims.get("blk.1.attn_output.weight"), [e, e]);
  assert.deepEqual(dims.get("blk.1.ffn_gate.weight"), [e, s.feedForwardLength]);
  assert.deepEqual(dims.get("blk.1.ffn_up.weight"), [e, s.feedForwardLength]);
  assert.deepEqual(dims.get("blk.1.ffn_down.weight"), [s.feedForwardLength, e]);
  assert.equal(f.tensors.length, 3 + 9 * s.blockCount);
  assert.ok(f.tensors.every((t) => t.type === 0 && t.offset % 32 === 0));
  assert.ok(tensorData(bytes, f, "output_norm.weight").every((x) => x === 1));
  assert.ok(tensorData(bytes, f, "blk.0.attn_q.weight").some((x) => x !== 0));
});

test("writeTinyModel writes atomically and node-llama-cpp's reader agrees", async () => {
  const path = join(dir, "w.gguf");
  await writeTinyModel(path, 3);
  assert.equal(sha(readFileSync(path)), sha(buildTinyModel({ seed: 3 })));
  assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith(".tmp")), []);
  const info = await readGgufFileInfo(path, { sourceType: "filesystem", readTensorInfo: true, logWarnings: false });
  assert.equal(info.version, 3);
  assert.equal(info.metadata.general.architecture, "llama");
  assert.equal(info.tensorInfo?.length, 3 + 9 * TINY_MODEL_SHAPE.blockCount);
});

test("llama.cpp loads it, tokenizes with the vocabulary and generates", async () => {
  const path = join(dir, "load.gguf");
  await writeTinyModel(path);
  const llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error });
  try {
    const model = await llama.loadModel({ modelPath: path });
    const vocab = readGguf(readFileSync(path)).metadata.get("tokenizer.ggml.tokens") as string[];
    const tokens = model.tokenize("hello world");
    // Whole words, each one piece of the vocabulary: SPM merged all the way up.
    assert.deepEqual([...tokens], [vocab.indexOf("▁hello"), vocab.indexOf("▁world")]);
    assert.equal(model.detokenize(tokens), "hello world");
    // Unknown characters fall back to bytes rather than <unk>.
    const bytes = model.tokenize("é");
    assert.ok(bytes.length >= 2 && !bytes.includes(0 as never));
    assert.equal(model.detokenize(bytes), "é");
    const context = await model.createContext({ contextSize: 512, threads: 1 });
    const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
    const a = await completion.generateCompletion("hello world", { maxTokens: 12, temperature: 0 });
    const b = await completion.generateCompletion("hello world", { maxTokens: 12, temperature: 0 });
    assert.ok(a.length > 0);
    assert.equal(a, b);
    await model.dispose();
  } finally {
    await llama.dispose();
  }
});

test("edgeward model tiny writes the file; bad arguments exit 2", async () => {
  const c = cliIO();
  assert.equal(await run(["tiny", "--out", "m.gguf", "--seed", "9"], c.io), 0);
  assert.equal(sha(readFileSync(join(dir, "m.gguf"))), sha(buildTinyModel({ seed: 9 })));
  assert.match(c.out.join(""), /m\.gguf/);
  assert.ok(statSync(join(dir, "m.gguf")).isFile());

  for (const argv of [[], ["tiny"], ["huge", "--out", "x.gguf"], ["tiny", "--out", "x.gguf", "--seed", "-1"], ["tiny", "--out", "x.gguf", "--seed", "1e3"], ["tiny", "--out", "x.gguf", "--seed", "4294967296"], ["tiny", "--out", "x.gguf", "--bogus"]]) {
    const bad = cliIO();
    assert.equal(await run(argv, bad.io), 2, argv.join(" "));
    assert.match(bad.err.join(""), /usage: edgeward model tiny/);
  }
  // A folder that does not exist yet is made (`--out models/tiny.gguf` in a fresh folder, as the docs do).
  assert.equal(await run(["tiny", "--out", join(dir, "missing-dir", "x.gguf")], cliIO().io), 0);
  assert.ok(statSync(join(dir, "missing-dir", "x.gguf")).isFile());
  // One that cannot be (its parent is a file) is a one-line failure.
  const fail = cliIO();
  assert.equal(await run(["tiny", "--out", join(dir, "m.gguf", "x.gguf")], fail.io), 1);
  assert.match(fail.err.join(""), /^model: cannot write \S+: EEXIST: file already exists/);
});
