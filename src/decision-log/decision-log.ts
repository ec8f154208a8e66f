import { constants, writeSync } from "node:fs";
import { mkdir, open, rename, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { TextDecoder } from "node:util";
import { anchorPath, readAnchor, writeAnchor } from "./anchor.ts";
import { ChainVerifier, MAX_RECORD_BYTES, readRecordLine, seal } from "./chain.ts";
import type { DecisionEntry, DecisionRecord, LogAnchor, SealedRecord, VerifyResult } from "./chain.ts";
import { DecisionLogError } from "./errors.ts";
import { ioProblem, openRegularFile, syncDirectory, writeFully } from "./files.ts";
import { readLogLines } from "./line-reader.ts";
import type { LogLine } from "./line-reader.ts";
import { continuesAt, locateRecord, readBatch, scanPrunable } from "./log-reader.ts";
import type { LogPosition, RecordBatch } from "./log-reader.ts";

export interface DecisionLogOptions {
  /** Most records written by one write + fsync (default 512). */
  maxBatch?: number;
  /** Called when open dropped a torn last record; the dropped bytes are kept in `<path>.torn`. */
  onRepair?: (info: { droppedBytes: number }) => void;
  /**
   * After a failed write the log retries on a timer: the first attempt after `initialMs` (default 100), each failed
   * attempt doubling the wait, up to `maxMs` (default 30 000).
   */
  retry?: { initialMs?: number; maxMs?: number };
  /** Called when the log accepts appends again after a failure; `droppedBytes` of rejected appends were cut off. */
  onRecover?: (info: { retries: number; droppedBytes: number }) => void;
  /** Milliseconds since the epoch, for `health` (default Date.now). */
  clock?: () => number;
}

/** Whether the log can take appends, and while it cannot, since when, why, and how recovery is going. */
export interface DecisionLogHealth {
  writable: boolean;
  /** When appends started to be refused (ms since the epoch); null while writable. */
  since: number | null;
  /** What failed: the write, or the last attempt to recover from it; null while writable. */
  lastError: string | null;
  /** Recovery attempts made since the failure. */
  retries: number;
  /** When the next attempt is due (ms since the epoch); null while writable, while an attempt is under way, and once closed. */
  nextRetryAt: number | null;
}

export interface DecisionLogStats {
  /** Completed write + fsync rounds. */
  batches: number;
  /** Records made durable by them. */
  records: number;
}

const DEFAULT_MAX_BATCH = 512;
const DEFAULT_RETRY_INITIAL_MS = 100;
const DEFAULT_RETRY_MAX_MS = 30_000;
/** What the recovery probe writes and fsyncs: one block, so a disk with no room for a batch is not declared writable. */
const PROBE_BYTES = 4096;
/** The checks a torn write can fail; a wrong seq or prev on an intact record never comes from a crash. */
const TORN_CHECKS = new Set(["truncated", "malformed", "hash"]);
const COPY_CHUNK_BYTES = 64 * 1024;

interface Pending {
  record: DecisionRecord;
  /** Without its newline. */
  line: string;
  resolve: (record: DecisionRecord) => void;
  reject: (error: Error) => void;
}

interface ScanOutcome {
  result: VerifyResult;
  /** Byte offset just past the last record that verified. */
  goodEnd: number;
  /** Byte offset where that record's line starts (equal to goodEnd when no record verified). */
  headStart: number;
  /** Whether the first failure is what a crash mid-write can leave: damage confined to the last line. */
  tornTail: boolean;
}

/**
 * A crash leaves a prefix of the last batch written, so at most the final line is damaged and it
 * never holds a whole record followed by more bytes; such a line means a newline was removed
 * between two records, which is tampering, and so is a final line longer than any record.
 */
function looksTorn(bytes: Buffer | null): boolean {
  return bytes !== null && !/"hash":"[0-9a-f]{64}"\}[^]/.test(bytes.toString("latin1"));
}

/**
 * Walks the file once, from the genesis or the anchor, stopping at the first bad line but looking one line further to
 * tell whether it was the last.
 */
async function scanLog(fh: FileHandle, anchor: LogAnchor | null): Promise<ScanOutcome> {
  const verifier = new ChainVerifier(anchor);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const lines = readLogLines(fh, MAX_RECORD_BYTES);
  let goodEnd = 0;
  let headStart = 0;
  for await (const line of lines) {
    const failure = checkLogLine(verifier, decoder, line);
    if (failure === null) {
      headStart = line.start;
      goodEnd = line.end;
      continue;
    }
    const next = await lines.next();
    await lines.return(undefined);
    const tornTail = next.done === true && !failure.ok && TORN_CHECKS.has(failure.check) && looksTorn(line.bytes);
    return { result: failure, goodEnd, headStart, tornTail };
  }
  return { result: verifier.result(), goodEnd, headStart, tornTail: false };
}

function checkLogLine(verifier: ChainVerifier, decoder: TextDecoder, line: LogLine): VerifyResult | null {
  if (!line.terminated) return verifier.failure("truncated", "the log ends inside a record (torn write or truncation)");
  if (line.bytes === null) return verifier.failure("malformed", `line is longer than ${MAX_RECORD_BYTES} bytes`);
  if (line.bytes.length === 0) return verifier.failure("malformed", "empty line");
  let text: string;
  try {
    text = decoder.decode(line.bytes);
  } catch {
    return verifier.failure("malformed", "line is not valid UTF-8");
  }
  return verifier.push(text);
}

/**
 * Verifies a log file, streaming it line by line, from its anchor (`<path>.anchor`) when it was pruned. A file that
 * cannot be read throws a DecisionLogError with check "io", an anchor that cannot be read or parsed one with check
 * "anchor"; anything wrong with the log's contents is a failed VerifyResult.
 */
export async function verifyLogFile(path: string): Promise<VerifyResult> {
  let fh: FileHandle;
  try {
    fh = await openRegularFile(path);
  } catch (err) {
    throw new DecisionLogError("io", `cannot read ${path}: ${ioProblem(err)}`);
  }
  try {
    const anchor = await readAnchor(path);
    return (await scanLog(fh, anchor)).result;
  } catch (err) {
    if (err instanceof DecisionLogError) throw err;
    throw new DecisionLogError("io", `cannot read ${path}: ${ioProblem(err)}`);
  } finally {
    await fh.close();
  }
}

function writeAllSync(fd: number, data: Buffer): void {
  for (let offset = 0; offset < data.length;) offset += writeSync(fd, data, offset, data.length - offset);
}

/** Creates the file (0600, parent 0700) or opens the existing one, for reading and appending. */
async function openForAppend(path: string): Promise<FileHandle> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    const fh = await open(path, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_EXCL, 0o600);
    await fh.chmod(0o600); // the umask may have narrowed or the platform widened the mode
    // The new directory entry must survive a crash too, or the first records vanish with it.
    await syncDirectory(dir);
    return fh;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const fh = await open(path, constants.O_RDWR | constants.O_APPEND);
  if (!(await fh.stat()).isFile()) {
    await fh.close();
    throw new DecisionLogError("io", `${path} is not a regular file`);
  }
  return fh;
}

/** Moves the bytes after the last good record to `<path>.torn` (kept for forensics) and cuts them off. */
async function repairTornTail(fh: FileHandle, path: string, goodEnd: number): Promise<number> {
  const size = (await fh.stat()).size;
  // O_NOFOLLOW: a symlink planted at the .torn path must not redirect the write.
  const torn = await open(`${path}.torn`, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    await torn.chmod(0o600);
    const chunk = Buffer.allocUnsafe(COPY_CHUNK_BYTES);
    for (let position = goodEnd; position < size;) {
      const { bytesRead } = await fh.read(chunk, 0, Math.min(COPY_CHUNK_BYTES, size - position), position);
      if (bytesRead === 0) break;
      await writeFully(torn, chunk.subarray(0, bytesRead));
      position += bytesRead;
    }
    await torn.sync(); // the evidence is durable before it is cut from the log
  } finally {
    await torn.close();
  }
  await fh.truncate(goodEnd);
  await fh.sync();
  return size - goodEnd;
}

/** Where a recovery attempt writes its probe: beside the log, on the same file system. */
function probePath(path: string): string {
  return `${path}.probe`;
}

/** Bytes copied per read while a prune copies the kept records. */
const PRUNE_CHUNK_BYTES = 64 * 1024;

/**
 * The append-only, hash-chained decision log. One writer per file: appends are sealed in call
 * order and made durable with group commit (one write + one fsync per batch of concurrent appends).
 * Records the control plane has acknowledged can be pruned from its start (`prune`, `applyRetention`): the log is
 * rewritten without them while appends wait, and an anchor beside it carries the chain on.
 */
export class DecisionLog {
  readonly #path: string;
  /** Replaced when a prune swaps the file. */
  #fh: FileHandle;
  readonly #maxBatch: number;
  #queue: Pending[] = [];
  #draining: Promise<void> | null = null;
  /** Head of the sealed chain, including records still waiting to be written. */
  #sealedSeq: number;
  #sealedHash: string;
  /** Head of the durable chain. */
  #durableSeq: number;
  #durableHash: string;
  /** Where the durable records end in the file, and where the last one's line starts (equal when the file holds none). */
  #durableEnd: number;
  #headStart: number;
  #failure: DecisionLogError | null = null;
  /** While appends are refused after a failed write: since when, the last error, the attempts made, the next one. */
  #outage: { since: number; lastError: string; retries: number; nextRetryAt: number | null } | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  /** The recovery attempt under way. */
  #recovering: Promise<boolean> | null = null;
  readonly #retryInitialMs: number;
  readonly #retryMaxMs: number;
  readonly #onRecover: ((info: { retries: number; droppedBytes: number }) => void) | undefined;
  readonly #clock: () => number;
  #closed = false;
  #closing: Promise<void> | null = null;
  #stats: DecisionLogStats = { batches: 0, records: 0 };
  /** The last record pruned (null while nothing was). */
  #anchor: LogAnchor | null;
  /** The batch being written and fsync'd (resolves false when it failed). */
  #inFlight: Promise<boolean> | null = null;
  /** Set while a prune swaps the file: no batch starts until it resolves. */
  #pruneGate: Promise<void> | null = null;
  /** Prunes run one at a time. */
  #maintenance: Promise<unknown> = Promise.resolve();
  /** Where the last readAfter stopped, so the next one need not walk the file from its start. */
  #readHint: LogPosition | null = null;
  /** How far the last retention scan found records old enough, and for which cutoff. */
  #retentionHint: { position: LogPosition; cutoffMs: number } | null = null;

  private constructor(
    path: string, fh: FileHandle, head: { lastSeq: number; lastHash: string; durableEnd: number; headStart: number },
    maxBatch: number, anchor: LogAnchor | null, options: DecisionLogOptions,
  ) {
    this.#path = path;
    this.#fh = fh;
    this.#maxBatch = maxBatch;
    this.#sealedSeq = this.#durableSeq = head.lastSeq;
    this.#sealedHash = this.#durableHash = head.lastHash;
    this.#durableEnd = head.durableEnd;
    this.#headStart = head.headStart;
    this.#anchor = anchor;
    this.#retryInitialMs = options.retry?.initialMs ?? DEFAULT_RETRY_INITIAL_MS;
    this.#retryMaxMs = options.retry?.maxMs ?? DEFAULT_RETRY_MAX_MS;
    this.#onRecover = options.onRecover;
    this.#clock = options.clock ?? Date.now;
  }

  /**
   * Opens (or creates) the log and verifies the whole chain, from its anchor when it was pruned. A torn last record
   * is cut off and reported; any other corruption, and a log that does not continue its anchor, throws a
   * DecisionLogError naming the first bad record.
   */
  static async open(path: string, options: DecisionLogOptions = {}): Promise<DecisionLog> {
    const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    if (!Number.isSafeInteger(maxBatch) || maxBatch < 1) {
      throw new DecisionLogError("options", `maxBatch must be a positive integer, got ${maxBatch}`);
    }
    for (const [name, value] of [["retry.initialMs", options.retry?.initialMs], ["retry.maxMs", options.retry?.maxMs]] as const) {
      if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
        throw new DecisionLogError("options", `${name} must be a positive integer, got ${value}`);
      }
    }
    let fh: FileHandle;
    try {
      fh = await openForAppend(path);
    } catch (err) {
      if (err instanceof DecisionLogError) throw err;
      throw new DecisionLogError("io", `cannot open ${path}: ${ioProblem(err)}`);
    }
    try {
      const anchor = await readAnchor(path);
      // What an interrupted prune or recovery probe left: the log and its anchor are consistent either way (see prune).
      await Promise.all([`${path}.prune`, `${anchorPath(path)}.tmp`, probePath(path)].map((p) => unlink(p).catch(() => undefined)));
      let scan = await scanLog(fh, anchor);
      if (!scan.result.ok) {
        const { check, seq, line, message } = scan.result;
        if (!scan.tornTail) {
          throw new DecisionLogError(
            check,
            `${path}: record seq ${seq} (line ${line}): ${message}; refusing to open — only a torn last record is repaired; investigate the log`,
          );
        }
        const droppedBytes = await repairTornTail(fh, path, scan.goodEnd);
        scan = await scanLog(fh, anchor);
        if (!scan.result.ok) {
          throw new DecisionLogError(scan.result.check, `${path}: still invalid after dropping a torn last record: ${scan.result.message}`);
        }
        options.onRepair?.({ droppedBytes });
      }
      const head = { lastSeq: scan.result.lastSeq, lastHash: scan.result.lastHash, durableEnd: scan.goodEnd, headStart: scan.headStart };
      return new DecisionLog(path, fh, head, maxBatch, anchor, options);
    } catch (err) {
      await fh.close();
      if (err instanceof DecisionLogError) throw err;
      throw new DecisionLogError("io", `cannot read ${path}: ${ioProblem(err)}`);
    }
  }

  /** Seq of the last durable record (0 for an empty log). */
  get lastSeq(): number {
    return this.#durableSeq;
  }

  /** Hash of the last durable record (the genesis hash for an empty log). */
  get lastHash(): string {
    return this.#durableHash;
  }

  /** The last record pruned, or null when the log still starts at seq 1. */
  get anchor(): LogAnchor | null {
    return this.#anchor === null ? null : { ...this.#anchor };
  }

  /** Why appends are refused (a failed write or fsync, or the log was closed), or null while appends are accepted. */
  get refusal(): DecisionLogError | null {
    return this.#failure ?? (this.#closed ? new DecisionLogError("closed", "the log is closed") : null);
  }

  /** Whether appends are accepted and, after a failed write, how recovery is going: for readiness and metrics. */
  get health(): DecisionLogHealth {
    const outage = this.#outage;
    if (outage !== null) return { writable: false, since: outage.since, lastError: outage.lastError, retries: outage.retries, nextRetryAt: this.#closed ? null : outage.nextRetryAt };
    if (this.#closed) return { writable: false, since: null, lastError: "the log is closed", retries: 0, nextRetryAt: null };
    return { writable: true, since: null, lastError: null, retries: 0, nextRetryAt: null };
  }

  get stats(): DecisionLogStats {
    return { ...this.#stats };
  }

  /** Seals the entry as the next record; resolves once its bytes are fsync'd, rejects if they may not be. */
  append(entry: DecisionEntry): Promise<DecisionRecord> {
    if (this.#closed) return Promise.reject(new DecisionLogError("closed", "the log is closed"));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    let sealed: SealedRecord;
    try {
      sealed = seal(entry, this.#sealedSeq + 1, this.#sealedHash);
    } catch (err) {
      return Promise.reject(err);
    }
    const { record, line } = sealed;
    this.#sealedSeq = record.seq;
    this.#sealedHash = record.hash;
    return new Promise((resolve, reject) => {
      this.#queue.push({ record, line, resolve, reject });
      // Deferred by a microtask so appends made in the same tick share the first batch too.
      this.#draining ??= Promise.resolve().then(() => this.#drain());
    });
  }

  /**
   * Up to `limits` of the durable records after `after` — the lines as they are in the file — checking that they
   * continue `after`'s chain. Records not yet fsync'd are never returned: a crash could still take them back.
   * Throws a DecisionLogError: "ahead" when `after` is past the last durable record, "chain" when `after` is not
   * this log's record, "pruned" when the records after it were pruned.
   */
  async readAfter(after: LogAnchor, limits: { maxRecords: number; maxBytes: number }): Promise<RecordBatch> {
    const throughSeq = this.#durableSeq;
    if (after.seq > throughSeq) throw new DecisionLogError("ahead", `seq ${after.seq} is beyond the log's last record (seq ${throughSeq})`);
    if (after.seq === throughSeq) {
      if (after.hash !== this.#durableHash) throw new DecisionLogError("chain", `record seq ${after.seq} is not the one expected (hash ${after.hash.slice(0, 16)}…)`);
      return { lines: [], hashes: [], firstSeq: after.seq + 1, bytes: 0, end: { ...after, offset: 0 } };
    }
    const batch = await this.#read((fh) => readBatch(fh, this.#path, after, { throughSeq, ...limits }, this.#readHint));
    this.#readHint = batch.end;
    return batch;
  }

  /**
   * Removes the records up to and including `upToSeq` (a durable one). Appends wait while the file is swapped: the
   * kept records are copied to `<path>.prune` and fsync'd, the anchor (`<path>.anchor`, the last pruned record) is
   * replaced atomically FIRST, then the copy is renamed over the log. A crash in between leaves the whole log beside
   * the new anchor, which still verifies (its records chain up to the anchor). Returns the new anchor, or null when
   * the records were already pruned.
   */
  prune(upToSeq: number): Promise<LogAnchor | null> {
    return this.#exclusive(async () => {
      if (!Number.isSafeInteger(upToSeq) || upToSeq < 1) throw new DecisionLogError("prune", `seq must be a positive integer, got ${upToSeq}`);
      if (upToSeq > this.#durableSeq) {
        throw new DecisionLogError("prune", `record seq ${upToSeq} is not in the log (its last durable record is seq ${this.#durableSeq})`);
      }
      if (upToSeq <= (this.#anchor?.seq ?? 0)) return null;
      const boundary = await this.#read((fh) => locateRecord(fh, this.#path, upToSeq));
      await this.#rewrite(boundary);
      return { seq: boundary.seq, hash: boundary.hash };
    });
  }

  /**
   * Retention: prunes the records that are acknowledged (seq ≤ `ackSeq`) and whose time is at or before `cutoffMs`,
   * from the start of the log up to the first record that is not (so no younger or unacknowledged record is ever
   * removed). Each prune copies the records kept, so one is made only once the records to remove are at least a
   * quarter of the file: records are then kept a little longer than asked, and the copying stays proportional to
   * what is appended. Returns the new anchor, or null when nothing was pruned.
   */
  applyRetention(ackSeq: number, cutoffMs: number): Promise<LogAnchor | null> {
    return this.#exclusive(async () => {
      const maxSeq = Math.min(ackSeq, this.#durableSeq);
      const floor = this.#anchor?.seq ?? 0;
      if (maxSeq <= floor) return null;
      const saved = this.#retentionHint;
      const hint = saved !== null && saved.cutoffMs <= cutoffMs ? saved.position : null;
      const { boundary, size } = await this.#read(async (fh) => ({
        boundary: await scanPrunable(fh, this.#path, maxSeq, cutoffMs, hint),
        size: (await fh.stat()).size,
      }));
      if (boundary === null || boundary.seq <= floor) return null;
      this.#retentionHint = { position: boundary, cutoffMs };
      if (boundary.offset * 3 < size - boundary.offset) return null;
      await this.#rewrite(boundary);
      return { seq: boundary.seq, hash: boundary.hash };
    });
  }

  /** Runs a prune after the ones before it; refused once the log is closed or failed. */
  #exclusive<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#maintenance.then(() => {
      if (this.#closed) throw new DecisionLogError("closed", "the log is closed");
      if (this.#failure !== null) throw this.#failure;
      return job();
    });
    this.#maintenance = run.catch(() => undefined);
    return run;
  }

  /** Runs `read` on a read-only handle of its own, so that a prune swapping the file never closes it underneath. */
  async #read<T>(read: (fh: FileHandle) => Promise<T>): Promise<T> {
    let fh: FileHandle;
    try {
      fh = await openRegularFile(this.#path);
    } catch (err) {
      throw new DecisionLogError("io", `cannot read ${this.#path}: ${ioProblem(err)}`);
    }
    try {
      return await read(fh);
    } catch (err) {
      if (err instanceof DecisionLogError) throw err;
      throw new DecisionLogError("io", `cannot read ${this.#path}: ${ioProblem(err)}`);
    } finally {
      await fh.close();
    }
  }

  /** Swaps the file for one without the records up to `boundary`, while no batch is written. */
  async #rewrite(boundary: LogPosition): Promise<void> {
    let release!: () => void;
    this.#pruneGate = new Promise((resolve) => (release = resolve));
    try {
      await this.#inFlight; // the batch being written lands in the current file, which is then copied whole
      if (this.#failure !== null) throw this.#failure;
      await this.#replaceFile(boundary);
    } finally {
      this.#readHint = null;
      this.#retentionHint = null;
      this.#pruneGate = null;
      release();
    }
  }

  async #replaceFile(boundary: LogPosition): Promise<void> {
    const path = this.#path;
    const temp = `${path}.prune`;
    const current = this.#fh;
    const size = (await current.stat()).size;
    // The boundary came from a separate read of this file; it must still sit just before the records kept.
    const seamHolds = boundary.offset === size
      ? boundary.seq === this.#durableSeq && boundary.hash === this.#durableHash
      : await continuesAt(current, path, boundary);
    if (!seamHolds) throw new DecisionLogError("prune", `${path}: record seq ${boundary.seq} is no longer at byte ${boundary.offset}; nothing was pruned`);
    try {
      // O_NOFOLLOW: a symbolic link planted at the temporary path must not redirect the write.
      const out = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
      try {
        await out.chmod(0o600);
        const chunk = Buffer.allocUnsafe(PRUNE_CHUNK_BYTES);
        for (let position = boundary.offset; position < size;) {
          const { bytesRead } = await current.read(chunk, 0, Math.min(PRUNE_CHUNK_BYTES, size - position), position);
          if (bytesRead === 0) throw new Error(`${path} is shorter than expected`);
          await writeFully(out, chunk.subarray(0, bytesRead));
          position += bytesRead;
        }
        await out.sync();
      } finally {
        await out.close();
      }
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw new DecisionLogError("prune", `cannot write ${temp}: ${ioProblem(err)}; nothing was pruned`);
    }
    try {
      await writeAnchor(path, boundary);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    // From here the anchor is the new one, and the log (old or new) continues it.
    this.#anchor = { seq: boundary.seq, hash: boundary.hash };
    try {
      await rename(temp, path);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw new DecisionLogError("prune", `cannot replace ${path}: ${ioProblem(err)}; the log still holds the records up to the anchor`);
    }
    // The file at the path now starts at the boundary.
    this.#durableEnd = size - boundary.offset;
    this.#headStart = Math.max(0, this.#headStart - boundary.offset);
    try {
      const next = await open(path, constants.O_RDWR | constants.O_APPEND);
      this.#fh = next;
      await current.close();
      // Until the directory is synced a crash could bring back the old file, losing what is appended to the new one.
      await syncDirectory(dirname(path));
    } catch (err) {
      throw this.#fail(`the pruned log could not be reopened or made durable (${ioProblem(err)})`);
    }
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      if (this.#pruneGate !== null) {
        await this.#pruneGate; // the file is being swapped: the batch goes to the new one
        if (this.#failure !== null) {
          for (const pending of this.#queue.splice(0)) pending.reject(this.#failure);
          break;
        }
        continue;
      }
      this.#inFlight = this.#write(this.#queue.splice(0, this.#maxBatch));
      const written = await this.#inFlight;
      this.#inFlight = null;
      if (!written) break;
    }
    this.#draining = null;
  }

  /** Writes and fsyncs one batch, then settles its appends; false when it failed (and with it every later append). */
  async #write(batch: Pending[]): Promise<boolean> {
    const bytes = Buffer.from(`${batch.map((p) => p.line).join("\n")}\n`, "utf8");
    try {
      // The write only reaches the page cache, so it is made in place (microseconds); the fsync, which waits for
      // the disk, goes to the thread pool. One thread hand-off per batch instead of two.
      writeAllSync(this.#fh.fd, bytes);
      await this.#fh.datasync();
    } catch (err) {
      // What reached the disk is unknown, so nothing more may be chained onto it until recovery has cut the file
      // back to the durable records.
      const failure = this.#fail(`write or fsync failed (${ioProblem(err)})`);
      for (const pending of [...batch, ...this.#queue.splice(0)]) pending.reject(failure);
      return false;
    }
    const last = batch[batch.length - 1] as Pending;
    this.#headStart = this.#durableEnd + bytes.length - Buffer.byteLength(last.line, "utf8") - 1;
    this.#durableEnd += bytes.length;
    this.#durableSeq = last.record.seq;
    this.#durableHash = last.record.hash;
    this.#stats.batches += 1;
    this.#stats.records += batch.length;
    for (const pending of batch) pending.resolve(pending.record);
    return true;
  }

  /**
   * Refuses appends from now on, after a failed write (`problem` says what failed), and starts retrying recovery.
   * Returns the error the appends are refused with.
   */
  #fail(problem: string): DecisionLogError {
    this.#failure = new DecisionLogError("write", `${problem}; appends are refused until the log recovers (retried with backoff)`);
    this.#outage = { since: this.#clock(), lastError: problem, retries: 0, nextRetryAt: null };
    this.#scheduleRetry();
    return this.#failure;
  }

  #scheduleRetry(): void {
    const outage = this.#outage;
    if (outage === null || this.#closed) return;
    const delay = Math.min(this.#retryMaxMs, this.#retryInitialMs * 2 ** Math.min(outage.retries, 30));
    outage.nextRetryAt = this.#clock() + delay;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => void this.recover(), delay);
    // A pending retry must not keep the process alive: close() stops it anyway.
    this.#retryTimer.unref();
  }

  /**
   * Tries now to take appends again after a failed write (the timer does it on its own, with backoff); resolves true
   * once they are accepted (at once when nothing failed), false when this attempt failed or the log is closed.
   *
   * What reached the disk of the failed batch is unknown, and its appends were rejected to their callers, so none of
   * its bytes may stay in the chain: an attempt first writes and fsyncs a probe file beside the log (the disk takes
   * writes again), then reopens the log, checks that it still ends with the last durable record at the offset where
   * that record was made durable, moves any bytes after it to `<path>.torn` and cuts them off, and continues the
   * chain from that record.
   */
  recover(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    if (this.#failure === null) return Promise.resolve(true);
    this.#recovering ??= (async () => {
      if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
      // One at a time with prunes, and after the batch that failed has settled.
      const attempt = this.#maintenance.then(async () => {
        while (this.#draining !== null) await this.#draining;
        return this.#attemptRecovery();
      });
      this.#maintenance = attempt.catch(() => undefined);
      try {
        return await attempt;
      } finally {
        this.#recovering = null;
      }
    })();
    return this.#recovering;
  }

  async #attemptRecovery(): Promise<boolean> {
    const outage = this.#outage;
    if (this.#closed || this.#failure === null || outage === null) return this.#failure === null && !this.#closed;
    outage.retries += 1;
    outage.nextRetryAt = null; // under way
    let droppedBytes: number;
    try {
      await this.#probe();
      droppedBytes = await this.#reopenAtDurableHead();
    } catch (err) {
      outage.lastError = err instanceof DecisionLogError ? err.message.replace(/^decision log: /, "") : `recovery failed: ${ioProblem(err)}`;
      this.#scheduleRetry();
      return false;
    }
    this.#sealedSeq = this.#durableSeq;
    this.#sealedHash = this.#durableHash;
    this.#readHint = null;
    this.#retentionHint = null;
    this.#failure = null;
    this.#outage = null;
    this.#onRecover?.({ retries: outage.retries, droppedBytes });
    return true;
  }

  /** Writes and fsyncs a block beside the log, as an append would; throws while the disk refuses. */
  async #probe(): Promise<void> {
    const path = probePath(this.#path);
    try {
      // O_NOFOLLOW: a symbolic link planted at the probe's path must not redirect the write.
      const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
      try {
        await writeFully(fh, Buffer.alloc(PROBE_BYTES));
        await fh.datasync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      throw new DecisionLogError("write", `the disk still refuses writes (${ioProblem(err)})`);
    } finally {
      await unlink(path).catch(() => undefined);
    }
  }

  /**
   * Replaces the handle with a new one on the log, which must still hold the durable records where they were written;
   * the bytes after them (what landed of rejected appends) go to `<path>.torn`. Returns how many bytes were cut.
   */
  async #reopenAtDurableHead(): Promise<number> {
    const path = this.#path;
    let next: FileHandle;
    try {
      // Without O_CREAT: a log that vanished is not started again at genesis.
      next = await open(path, constants.O_RDWR | constants.O_APPEND);
    } catch (err) {
      throw new DecisionLogError("io", `cannot reopen ${path}: ${ioProblem(err)}`);
    }
    let dropped: number;
    try {
      const stat = await next.stat();
      if (!stat.isFile()) throw new DecisionLogError("io", `${path} is not a regular file`);
      if (stat.size < this.#durableEnd) {
        throw new DecisionLogError("recover", `${path} is ${stat.size} bytes, shorter than its durable records (${this.#durableEnd} bytes): records were removed while the log could not write; investigate and restart`);
      }
      await this.#checkDurableHead(next);
      dropped = stat.size - this.#durableEnd;
      if (dropped > 0) await repairTornTail(next, path, this.#durableEnd);
      // A prune that failed after its rename may not have made the new directory entry durable.
      await syncDirectory(dirname(path));
    } catch (err) {
      await next.close();
      if (err instanceof DecisionLogError) throw err;
      throw new DecisionLogError("io", `cannot repair ${path}: ${ioProblem(err)}`);
    }
    const old = this.#fh;
    this.#fh = next;
    // Closing the old handle may report the failed write again; it no longer matters.
    await old.close().catch(() => undefined);
    return dropped;
  }

  /** Checks that the line ending at the durable end is the durable head record, whole. */
  async #checkDurableHead(fh: FileHandle): Promise<void> {
    const length = this.#durableEnd - this.#headStart;
    if (length === 0) return; // the file holds no record: the head is the anchor or the genesis
    const at = this.#headStart === 0 ? 0 : this.#headStart - 1;
    const bytes = Buffer.alloc(this.#durableEnd - at);
    const { bytesRead } = await fh.read(bytes, 0, bytes.length, at);
    const text = bytes.subarray(0, bytesRead).toString("utf8");
    const line = this.#headStart === 0 ? text : text.slice(1);
    const read = line.endsWith("\n") && (this.#headStart === 0 || text.startsWith("\n")) ? readRecordLine(line.slice(0, -1)) : null;
    if (read === null || !read.ok || read.record.seq !== this.#durableSeq || read.record.hash !== this.#durableHash) {
      throw new DecisionLogError("recover", `${this.#path} no longer ends its durable records with record seq ${this.#durableSeq} at byte ${this.#durableEnd}: the file was changed while the log could not write; investigate and restart`);
    }
  }

  /**
   * Waits for a prune in progress and pending appends, then closes the file; later appends reject. A log closed while
   * it cannot write first tries once to cut off what landed of the rejected appends, so that reopening it does not
   * take them for records.
   */
  close(): Promise<void> {
    this.#closed = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#closing ??= (async () => {
      await this.#maintenance;
      while (this.#draining !== null) await this.#draining;
      if (this.#failure !== null) await this.#reopenAtDurableHead().catch(() => undefined);
      await this.#fh.close();
    })();
    return this.#closing;
  }
}
