import { gzipSync } from "node:zlib";
import { GENESIS_HASH, sealRecord, serializeRecord, type DecisionEntry, type DecisionRecord } from "../../src/decision-log/index.ts";
import { entry } from "../decision-log/fixtures.ts";

export interface Chain {
  records: DecisionRecord[];
  /** serialized, without newlines; lines[i] is seq i + 1 */
  lines: string[];
}

/** A valid chain of `entries` (or `n` plausible entries) from genesis. */
export function makeChain(entries: number | readonly DecisionEntry[]): Chain {
  const list = typeof entries === "number" ? Array.from({ length: entries }, (_, i) => entry(i + 1)) : entries;
  let prev = GENESIS_HASH;
  const records = list.map((e, i) => {
    const record = sealRecord(e, i + 1, prev);
    prev = record.hash;
    return record;
  });
  return { records, lines: records.map(serializeRecord) };
}

/** Records seq from..to (inclusive) as an upload body before compression: each line newline-terminated. */
export function ndjson(chain: Chain, from: number, to: number): Buffer {
  return Buffer.from(chain.lines.slice(from - 1, to).map((l) => `${l}\n`).join(""));
}

/** The same, gzip'd as the uploader sends it. */
export function gzBatch(chain: Chain, from: number, to: number): Buffer {
  return gzipSync(ndjson(chain, from, to));
}
