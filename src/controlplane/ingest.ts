import { ChainVerifier, type DecisionRecord } from "../decision-log/chain.ts";
import type { IngestRecord, LogHead } from "./storage/index.ts";

/**
 * Decides what an uploaded decision-log batch means against the node's stored head. Pure: the server reads the head
 * and the stored hashes the batch overlaps, and stores what this module accepts. Every line goes through the audit
 * module's verifier (canonical line, hash, seq, prev), so the centre accepts exactly what `edgeward log verify` does.
 */

/** Why an upload is refused; all but "foreign-chain" are decided here, that one by storage (records_hash). */
export type RefusalCode = "gap" | "fork" | "chain" | "tampered" | "foreign-chain";

export interface IngestRefusal {
  ok: false;
  code: RefusalCode;
  /** The refused record's seq, or (a gap) the first missing one. */
  seq: number;
  message: string;
}

export interface CheckedRecord {
  record: DecisionRecord;
  /** As uploaded, without its newline. */
  line: string;
}

/** A batch whose lines verified as one chain segment (empty when the batch was). */
export type CheckedBatch =
  | { ok: true; records: CheckedRecord[] }
  | { ok: false; code: RefusalCode; seq: number | null; message: string };

export interface IngestPlan {
  ok: true;
  /** Records after the head, in order, to store. */
  records: CheckedRecord[];
  /** Lines already stored, byte for byte the same record (a resent batch). */
  duplicates: number;
}

/** Most lines one upload may carry; the uploader sends up to its maxBatchRecords (default 1000). */
export const MAX_BATCH_LINES = 10_000;

const NEWLINE = 0x0a;

/**
 * The lines of an inflated batch, without their newlines. A batch is lines each ending in "\n"; bytes after the
 * last newline are returned as a last, unterminated line so that the checker refuses them.
 */
export function splitBatch(bytes: Buffer): { lines: Buffer[]; terminated: boolean } {
  const lines: Buffer[] = [];
  let start = 0;
  for (let nl = bytes.indexOf(NEWLINE); nl !== -1; nl = bytes.indexOf(NEWLINE, start)) {
    lines.push(bytes.subarray(start, nl));
    start = nl + 1;
  }
  if (start === bytes.length) return { lines, terminated: true };
  lines.push(bytes.subarray(start));
  return { lines, terminated: false };
}

function claimedStart(line: string): { seq: number; prev: string } | null {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value !== "object" || value === null) return null;
    const { seq, prev } = value as { seq?: unknown; prev?: unknown };
    return Number.isSafeInteger(seq) && (seq as number) >= 1 && typeof prev === "string" ? { seq: seq as number, prev } : null;
  } catch {
    return null;
  }
}

/**
 * Checks a batch line by line as one contiguous stretch of a chain, starting where its first line says it does
 * (whether that joins the stored chain is decided against the head afterwards). Fed a line at a time so the server
 * can yield to the event loop between slices of a large batch.
 */
export class BatchChecker {
  readonly #verifier = new ChainVerifier();
  readonly #decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  readonly #records: CheckedRecord[] = [];
  #failure: CheckedBatch | null = null;
  #started = false;

  /** Checks the next line; false once the batch has failed (later lines need not be fed). */
  add(bytes: Buffer, terminated = true): boolean {
    if (this.#failure !== null) return false;
    const seq = this.#nextSeq();
    if (!terminated) return this.#fail("tampered", seq, "the batch ends inside a line (every line must end with a newline)");
    let line: string;
    try {
      line = this.#decoder.decode(bytes);
    } catch {
      return this.#fail("tampered", seq, "the line is not valid UTF-8");
    }
    if (!this.#started) {
      this.#started = true;
      // The verifier starts where the first line claims to continue; if the claim is not even readable, the
      // verifier refuses the line as malformed before it looks at seq or prev.
      const start = claimedStart(line);
      if (start !== null) {
        this.#verifier.lastSeq = start.seq - 1;
        this.#verifier.lastHash = start.prev;
      }
    }
    const failure = this.#verifier.push(line);
    if (failure !== null && !failure.ok) {
      const at = this.#records.length === 0 && claimedStart(line) === null ? null : failure.seq;
      switch (failure.check) {
        case "sequence": {
          const found = claimedStart(line)?.seq ?? 0;
          return this.#fail(found > failure.seq ? "gap" : "chain", failure.seq, `within the batch: ${failure.message}`);
        }
        case "chain":
          return this.#fail("chain", at, `within the batch: ${failure.message}`);
        default:
          return this.#fail("tampered", at, failure.message);
      }
    }
    this.#records.push({ record: JSON.parse(line) as DecisionRecord, line });
    return true;
  }

  result(): CheckedBatch {
    return this.#failure ?? { ok: true, records: this.#records };
  }

  #nextSeq(): number | null {
    return this.#records.length === 0 ? null : this.#verifier.lastSeq + 1;
  }

  #fail(code: RefusalCode, seq: number | null, message: string): false {
    this.#failure = { ok: false, code, seq, message };
    return false;
  }
}

/** Checks a whole batch at once (the server feeds a BatchChecker in slices instead). */
export function checkBatch(bytes: Buffer): CheckedBatch {
  const { lines, terminated } = splitBatch(bytes);
  const checker = new BatchChecker();
  lines.every((line, i) => checker.add(line, terminated || i < lines.length - 1));
  return checker.result();
}

/** The seqs of the batch that the head already covers, whose stored hashes `planIngest` needs; null when none. */
export function overlap(head: LogHead, batch: CheckedBatch): { from: number; to: number } | null {
  if (!batch.ok || batch.records.length === 0) return null;
  const from = batch.records[0]!.record.seq;
  const to = Math.min(batch.records.at(-1)!.record.seq, head.ackSeq);
  return from <= to ? { from, to } : null;
}

/**
 * What to do with a checked batch: lines the head covers must be the stored records (duplicates, skipped) or the
 * batch is a fork; the first line past the head must be the next seq (else a gap) and name the head's hash as prev
 * (else the chain is broken). `stored` maps seq → stored hash for the overlap.
 */
export function planIngest(head: LogHead, batch: CheckedBatch, stored: ReadonlyMap<number, string>): IngestPlan | IngestRefusal {
  if (!batch.ok) return { ok: false, code: batch.code, seq: batch.seq ?? head.ackSeq + 1, message: batch.message };
  let duplicates = 0;
  const fresh: CheckedRecord[] = [];
  for (const checked of batch.records) {
    const { seq, hash, prev } = checked.record;
    if (seq <= head.ackSeq) {
      const storedHash = stored.get(seq);
      if (storedHash !== hash) {
        const held = storedHash === undefined ? "holds no record with that seq" : `holds hash ${storedHash}`;
        return { ok: false, code: "fork", seq, message: `record seq ${seq} has hash ${hash} but the control plane ${held}: two different records claim one seq` };
      }
      duplicates += 1;
      continue;
    }
    if (fresh.length === 0) {
      if (seq !== head.ackSeq + 1) {
        return { ok: false, code: "gap", seq: head.ackSeq + 1, message: `expected seq ${head.ackSeq + 1} after the acknowledged head, found ${seq}: records ${head.ackSeq + 1}..${seq - 1} are missing` };
      }
      if (prev !== head.ackHash) {
        return { ok: false, code: "chain", seq, message: `record seq ${seq} names prev ${prev} but the acknowledged record seq ${head.ackSeq} has hash ${head.ackHash}` };
      }
    }
    fresh.push(checked);
  }
  return { ok: true, records: fresh, duplicates };
}

export function toIngestRecord(c: CheckedRecord): IngestRecord {
  return { seq: c.record.seq, hash: c.record.hash, prev: c.record.prev, time: c.record.time, line: c.line };
}
