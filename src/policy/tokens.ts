import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/**
 * Token counts of prompt text, for reservations made before a runner has counted anything: BPE with OpenAI's
 * cl100k_base vocabulary (gpt-tokenizer, pure JavaScript, its ranks shipped in the package: nothing is downloaded).
 * Runners use their own tokenizers, so this is an estimate of theirs; the runner's reported usage settles the
 * reservation when it comes.
 *
 * It runs on the request path, so its cost is bounded: the first EXACT_CHARS characters of a request are counted
 * exactly, and what lies beyond them is counted at one token per UTF-8 byte — an upper bound for a byte-level BPE,
 * computed at memory speed — so a 1 MiB prompt costs what 8 KiB do.
 */

/** Characters per request counted exactly (about 0.35 ms of English or base64 on one core: bench/micro/prompt-tokens.ts). */
export const EXACT_CHARS = 8 * 1024;
/** Runs without a break longer than this are cut into pieces: BPE over one long run grows faster than its length. */
const MAX_RUN = 256;
const LONG_RUN = new RegExp(`\\S{${MAX_RUN + 1},}|\\s{${MAX_RUN + 1},}`, "g");

type Count = (text: string) => number;
let count: Count | null = null;

/**
 * The tokenizer, loaded on first use (its ranks take about 190 ms and 40 MB to load, which only the gateway and the
 * commands that count prompts should pay); the gateway loads it at start so that no request waits for it.
 */
export function loadTokenizer(): Count {
  count ??= (createRequire(import.meta.url)(encodingModule()) as { countTokens: Count }).countTokens;
  return count;
}

/** The build's copy of the one encoding used (dist/vendor/, packaging/build.ts) when there is one; else the package. */
function encodingModule(): string {
  const vendored = fileURLToPath(new URL("../vendor/gpt-tokenizer/cjs/encoding/cl100k_base.js", import.meta.url));
  return existsSync(vendored) ? vendored : "gpt-tokenizer/encoding/cl100k_base";
}

/** Counts the pieces of a request's prompt text, in order, within one EXACT_CHARS budget. */
export class PromptCounter {
  #left = EXACT_CHARS;
  tokens = 0;

  add(text: string): void {
    if (text.length === 0) return;
    if (this.#left === 0) {
      this.tokens += Buffer.byteLength(text, "utf8");
      return;
    }
    let exact = text;
    if (text.length > this.#left) {
      // Cut between two UTF-16 units of one character never: a lone surrogate would count as three bytes anyway.
      let cut = this.#left;
      const code = text.charCodeAt(cut - 1);
      if (code >= 0xd800 && code < 0xdc00) cut--;
      exact = text.slice(0, cut);
      this.tokens += Buffer.byteLength(text.slice(cut), "utf8");
      this.#left = 0;
    } else {
      this.#left -= text.length;
    }
    this.tokens += countExact(exact);
  }
}

function countExact(text: string): number {
  const tokenize = loadTokenizer();
  LONG_RUN.lastIndex = 0;
  if (!LONG_RUN.test(text)) return tokenize(text);
  // Long runs (a wall of one letter, of spaces) are counted in pieces: a piece boundary can only add a token.
  let tokens = 0;
  let from = 0;
  LONG_RUN.lastIndex = 0;
  for (let m = LONG_RUN.exec(text); m !== null; m = LONG_RUN.exec(text)) {
    if (m.index > from) tokens += tokenize(text.slice(from, m.index));
    const end = m.index + m[0].length;
    for (let i = m.index; i < end;) {
      let next = Math.min(i + MAX_RUN, end);
      const code = text.charCodeAt(next - 1);
      if (next < end && code >= 0xd800 && code < 0xdc00) next--; // never split a character's two UTF-16 units
      tokens += tokenize(text.slice(i, next));
      i = next;
    }
    from = m.index + m[0].length;
  }
  if (from < text.length) tokens += tokenize(text.slice(from));
  return tokens;
}
