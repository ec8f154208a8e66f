/**
 * A tiny llama-architecture GGUF with random (seeded) weights and a small SPM
 * vocabulary, so the runner, the demo and the tests exercise a real inference
 * engine without downloading anything. Its output is word salad by design.
 */
import { randomBytes } from "node:crypto";
import { rename, unlink, writeFile } from "node:fs/promises";
import { encodeGguf } from "./gguf-writer.ts";
import type { GgufTensor, GgufValue } from "./gguf-writer.ts";

export const TINY_MODEL_SHAPE = {
  contextLength: 512,
  embeddingLength: 64,
  blockCount: 2,
  feedForwardLength: 384,
  headCount: 4,
  headCountKv: 4,
  alignment: 32,
} as const;

// Words the vocabulary knows whole; every prefix of each is a token too, because
// SPM only merges two pieces into a piece that is already in the vocabulary.
const WORDS = [
  "hello", "world", "the", "a", "an", "and", "or", "of", "to", "in", "on", "at", "is", "are", "was",
  "it", "this", "that", "with", "for", "from", "by", "as", "be", "not", "no", "yes", "you", "we", "they",
  "edge", "gateway", "model", "token", "policy", "trust", "zero", "node", "cluster", "request", "reply",
  "secure", "local", "fast", "small", "tiny", "data", "log", "budget", "runner", "answer", "question",
  "what", "why", "how", "when", "where", "who", "good", "time", "day", "light", "river", "stone",
];

const SPACE = "\u2581"; // "▁", SentencePiece's word-boundary marker

// llama.cpp token types.
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;

interface Vocabulary {
  tokens: string[];
  scores: number[];
  types: number[];
}

function buildVocabulary(): Vocabulary {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(TOKEN_BYTE);
  }
  const normal: string[] = [];
  const seen = new Set<string>();
  const add = (piece: string): void => {
    if (!seen.has(piece)) {
      seen.add(piece);
      normal.push(piece);
    }
  };
  add(SPACE);
  for (let c = 0x21; c < 0x7f; c++) add(String.fromCharCode(c));
  // Both forms: "▁word" mid-text, and "word" where the text starts (the leading space is trimmed after <s>).
  for (const word of WORDS) {
    for (let i = 1; i <= word.length; i++) add(SPACE + word.slice(0, i));
    for (let i = 1; i <= word.length; i++) add(word.slice(0, i));
  }
  for (const piece of normal) {
    tokens.push(piece);
    types.push(TOKEN_NORMAL);
  }
  // Longer pieces score higher so merges prefer whole words; control and byte tokens score 0.
  const scores = tokens.map((t, i) => (types[i] === TOKEN_NORMAL ? -1000 + [...t].length : 0));
  return { tokens, scores, types };
}

/** mulberry32: a small, fast, seedable PRNG; deterministic across platforms. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Builds the GGUF bytes of the tiny model. Pure: the same seed gives the same bytes. */
export function buildTinyModel(options: { seed?: number } = {}): Uint8Array {
  const seed = options.seed ?? 1;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError("tiny-model: seed must be an integer in [0, 2^32)");
  }
  const random = mulberry32(seed);
  const s = TINY_MODEL_SHAPE;
  const vocab = buildVocabulary();
  const nVocab = vocab.tokens.length;
  const headDim = s.embeddingLength / s.headCount;
  const kvDim = headDim * s.headCountKv;

  // Uniform in [-a, a] with a = sqrt(3 / fanIn) keeps activations near unit variance.
  const matrix = (name: string, fanIn: number, fanOut: number, gain = 1): GgufTensor => {
    const a = gain * Math.sqrt(3 / fanIn);
    const data = new Float32Array(fanIn * fanOut);
    for (let i = 0; i < data.length; i++) data[i] = (random() * 2 - 1) * a;
    return { name, dims: [fanIn, fanOut], data };
  };
  const ones = (name: string): GgufTensor => ({ name, dims: [s.embeddingLength], data: new Float32Array(s.embeddingLength).fill(1) });

  const tensors: GgufTensor[] = [];
  const embd = matrix("token_embd.weight", s.embeddingLength, nVocab, Math.sqrt(s.embeddingLength / 3));
  tensors.push(embd);
  for (let b = 0; b < s.blockCount; b++) {
    tensors.push(
      ones(`blk.${b}.attn_norm.weight`),
      matrix(`blk.${b}.attn_q.weight`, s.embeddingLength, s.embeddingLength),
      matrix(`blk.${b}.attn_k.weight`, s.embeddingLength, kvDim),
      matrix(`blk.${b}.attn_v.weight`, s.embeddingLength, kvDim),
      matrix(`blk.${b}.attn_output.weight`, s.embeddingLength, s.embeddingLength),
      ones(`blk.${b}.ffn_norm.weight`),
      matrix(`blk.${b}.ffn_gate.weight`, s.embeddingLength, s.feedForwardLength),
      matrix(`blk.${b}.ffn_down.weight`, s.feedForwardLength, s.embeddingLength),
      matrix(`blk.${b}.ffn_up.weight`, s.embeddingLength, s.feedForwardLength),
    );
  }
  tensors.push(ones("output_norm.weight"));
  // Logits with a spread of a few units make sampling lively but not uniform.
  const output = matrix("output.weight", s.embeddingLength, nVocab, 3);
  // Zero logits for control and byte tokens: the model never ends on its own and
  // only emits readable pieces, so "length" and "stop" are decided by the request.
  const firstNormal = 3 + 256;
  output.data.fill(0, 0, firstNormal * s.embeddingLength);
  tensors.push(output);

  const u32 = (value: number): GgufValue => ({ type: "u32", value });
  const metadata: Array<readonly [string, GgufValue]> = [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: `edgeward-tiny-seed-${seed}` }],
    ["general.alignment", u32(s.alignment)],
    ["general.file_type", u32(0)], // ALL_F32
    ["llama.context_length", u32(s.contextLength)],
    ["llama.embedding_length", u32(s.embeddingLength)],
    ["llama.block_count", u32(s.blockCount)],
    ["llama.feed_forward_length", u32(s.feedForwardLength)],
    ["llama.attention.head_count", u32(s.headCount)],
    ["llama.attention.head_count_kv", u32(s.headCountKv)],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e-5 }],
    ["llama.rope.dimension_count", u32(headDim)],
    ["llama.rope.freq_base", { type: "f32", value: 10000 }],
    ["llama.vocab_size", u32(nVocab)],
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: "array", itemType: "f32", value: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", value: vocab.types }],
    ["tokenizer.ggml.bos_token_id", u32(1)],
    ["tokenizer.ggml.eos_token_id", u32(2)],
    ["tokenizer.ggml.unknown_token_id", u32(0)],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: true }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }],
  ];
  return encodeGguf({ metadata, tensors, alignment: s.alignment });
}

/** Writes the tiny model atomically: a temp file beside the target, then rename. */
export async function writeTinyModel(path: string, seed?: number): Promise<void> {
  const bytes = buildTinyModel(seed === undefined ? {} : { seed });
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFile(tmp, bytes, { flag: "wx", mode: 0o644 });
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}
