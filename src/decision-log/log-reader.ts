import type { FileHandle } from "node:fs/promises";
import { TextDecoder } from "node:util";
import { MAX_RECORD_BYTES, readRecordLine } from "./chain.ts";
import type { DecisionRecord, LogAnchor } from "./chain.ts";
import { DecisionLogError } from "./errors.ts";
import { readLogLines } from "./line-reader.ts";

/** Where a record's line ends in the file: `offset` is just past its newline. Lets the next read skip what came before. */
export interface LogPosition {
  seq: number;
  hash: string;
  offset: number;
}

/** Consecutive records read from a log, as the lines that are in the file (without their newlines). */
export interface RecordBatch {
  lines: string[];
  /** Their hashes, in the same order. */
  hashes: string[];
  /** Seq of the first line (meaningless when there is none). */
  firstSeq: number;
  /** Bytes of the lines with their newlines. */
  bytes: number;
  /** The last record returned (the starting point when none was), for the next read. */
  end: LogPosition;
}

export interface BatchLimits {
  /** The last record that may be returned: the log's durable head, so nothing not yet fsync'd is ever handed out. */
  throughSeq: number;
  maxRecords: number;
  /** Bytes of lines (with newlines); the first record is returned whatever its size. */
  maxBytes: number;
}

interface FileRecord {
  line: string;
  record: DecisionRecord;
  end: number;
}

/**
 * The complete lines of a log file from byte `start`, each read as a record on its own (the chain was verified when
 * the log was opened and has been extended by its writer since). A partial last line — a write in progress — ends
 * the walk; any other bad line throws, naming it.
 */
async function* fileRecords(fh: FileHandle, path: string, start: number): AsyncGenerator<FileRecord> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for await (const { bytes, start: at, end, terminated } of readLogLines(fh, MAX_RECORD_BYTES, start)) {
    if (!terminated) return;
    let line: string;
    try {
      if (bytes === null) throw new Error(`line is longer than ${MAX_RECORD_BYTES} bytes`);
      line = decoder.decode(bytes);
    } catch (err) {
      throw new DecisionLogError("malformed", `${path}: line at byte ${at}: ${(err as Error).message}`);
    }
    const read = readRecordLine(line);
    if (!read.ok) throw new DecisionLogError(read.check, `${path}: line at byte ${at}: ${read.message}`);
    yield { line, record: read.record, end };
  }
}

/**
 * The records of the file after record `seq`: from `hint` when it is the position of that record (checked: the line
 * there must be record seq+1, chained to it), otherwise from the start of the file (`resumed` false), the caller
 * then skipping what it does not need. A remembered position is only a hint: a rewrite of the file moves everything.
 */
async function walkAfter(fh: FileHandle, path: string, seq: number, hint: LogPosition | null): Promise<{ resumed: boolean; records: AsyncIterable<FileRecord> }> {
  if (hint !== null && hint.seq === seq && hint.offset > 0) {
    const tail = fileRecords(fh, path, hint.offset);
    let first: IteratorResult<FileRecord> | null = null;
    try {
      first = await tail.next();
    } catch (err) {
      if (!(err instanceof DecisionLogError)) throw err;
    }
    if (first !== null && first.done !== true && first.value.record.seq === seq + 1 && first.value.record.prev === hint.hash) {
      const head = first.value;
      return { resumed: true, records: (async function* () { yield head; yield* tail; })() };
    }
    await tail.return(undefined);
  }
  return { resumed: false, records: fileRecords(fh, path, 0) };
}

/**
 * Reads the records after `after` (which must be before `limits.throughSeq`), checking that they continue its chain:
 * the first must be seq after.seq+1 with prev after.hash. Throws a DecisionLogError with check "pruned" when the log
 * no longer holds that record, "chain" when it does not follow `after` (the log is not the one `after` came from).
 */
export async function readBatch(fh: FileHandle, path: string, after: LogAnchor, limits: BatchLimits, hint: LogPosition | null): Promise<RecordBatch> {
  const batch: RecordBatch = { lines: [], hashes: [], firstSeq: after.seq + 1, bytes: 0, end: { ...after, offset: 0 } };
  const { records } = await walkAfter(fh, path, after.seq, hint);
  for await (const { line, record, end } of records) {
    if (record.seq <= after.seq) {
      if (record.seq === after.seq && record.hash !== after.hash) {
        throw new DecisionLogError("chain", `${path}: record seq ${after.seq} is not the one expected (hash ${after.hash.slice(0, 16)}…)`);
      }
      continue;
    }
    const expected = after.seq + 1 + batch.lines.length;
    if (record.seq !== expected) {
      if (batch.lines.length === 0) throw new DecisionLogError("pruned", `${path} no longer holds record seq ${expected} (it starts at seq ${record.seq})`);
      throw new DecisionLogError("sequence", `${path}: expected seq ${expected}, found ${record.seq}`);
    }
    const prev = batch.lines.length === 0 ? after.hash : batch.end.hash;
    if (record.prev !== prev) {
      throw new DecisionLogError("chain", `${path}: record seq ${record.seq} does not follow the hash of seq ${record.seq - 1} (${prev.slice(0, 16)}…)`);
    }
    const size = Buffer.byteLength(line, "utf8") + 1;
    if (batch.lines.length > 0 && batch.bytes + size > limits.maxBytes) break;
    batch.lines.push(line);
    batch.hashes.push(record.hash);
    batch.bytes += size;
    batch.end = { seq: record.seq, hash: record.hash, offset: end };
    if (record.seq >= limits.throughSeq || batch.lines.length >= limits.maxRecords) break;
  }
  if (batch.lines.length === 0) throw new DecisionLogError("pruned", `${path} holds no record after seq ${after.seq}`);
  return batch;
}

/**
 * The last record of the longest run from the start of the file whose records all have seq ≤ `maxSeq` and a time at
 * or before `cutoffMs` (a young record ends the run even when older ones follow it); null when the first record is
 * not in it. `hint`, the answer of an earlier call with a cutoff no later than this one's, lets the walk resume.
 */
export async function scanPrunable(fh: FileHandle, path: string, maxSeq: number, cutoffMs: number, hint: LogPosition | null): Promise<LogPosition | null> {
  const usable = hint !== null && hint.seq <= maxSeq ? hint : null;
  const { resumed, records } = await walkAfter(fh, path, usable?.seq ?? 0, usable);
  let last = resumed ? usable : null;
  for await (const { record, end } of records) {
    if (record.seq > maxSeq || Date.parse(record.time) > cutoffMs) break;
    last = { seq: record.seq, hash: record.hash, offset: end };
  }
  return last;
}

/** The position of record `seq` in the file; throws with check "pruned" when the file does not hold it. */
export async function locateRecord(fh: FileHandle, path: string, seq: number): Promise<LogPosition> {
  for await (const { record, end } of fileRecords(fh, path, 0)) {
    if (record.seq === seq) return { seq, hash: record.hash, offset: end };
    if (record.seq > seq) break;
  }
  throw new DecisionLogError("pruned", `${path} holds no record seq ${seq}`);
}

/** Whether the line at `position.offset` is the record after `position`, chained to it. */
export async function continuesAt(fh: FileHandle, path: string, position: LogPosition): Promise<boolean> {
  for await (const { record } of fileRecords(fh, path, position.offset)) {
    return record.seq === position.seq + 1 && record.prev === position.hash;
  }
  return false;
}
