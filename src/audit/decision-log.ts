import { constants, writeSync } from "node:fs";
import { mkdir, open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { TextDecoder } from "node:util";
import { ChainVerifier, MAX_RECORD_BYTES, seal } from "./chain.ts";
import type { DecisionEntry, DecisionRecord, SealedRecord, VerifyResult } from "./chain.ts";
import { DecisionLogError } from "./errors.ts";
import { readLogLines } from "./line-reader.ts";
import type { LogLine } from "./line-reader.ts";

export interface DecisionLogOptions {
  /** Most records written by one write + fsync (default 512). */
  maxBatch?: number;
  /** Called when open dropped a torn last record; the dropped bytes are kept in `<path>.torn`. */
  onRepair?: (info: { droppedBytes: number }) => void;
}

export interface DecisionLogStats {
  /** Completed write + fsync rounds. */
  batches: number;
  /** Records made durable by them. */
  records: number;
}

const DEFAULT_MAX_BATCH = 512;
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

/** Walks the file once, stopping at the first bad line but looking one line further to tell whether it was the last. */
async function scanLog(fh: FileHandle): Promise<ScanOutcome> {
  const verifier = new ChainVerifier();
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const lines = readLogLines(fh, MAX_RECORD_BYTES);
  let goodEnd = 0;
  for await (const line of lines) {
    const failure = checkLogLine(verifier, decoder, line);
    if (failure === null) {
      goodEnd = line.end;
      continue;
    }
    const next = await lines.next();
    await lines.return(undefined);
    const tornTail = next.done === true && !failure.ok && TORN_CHECKS.has(failure.check) && looksTorn(line.bytes);
    return { result: failure, goodEnd, tornTail };
  }
  return { result: verifier.result(), goodEnd, tornTail: false };
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

function ioProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case "ENOENT": return "no such file";
    case "EACCES":
    case "EPERM": return "permission denied";
    case "EISDIR": return "is a directory";
    default: return code ?? (err instanceof Error ? err.message : String(err));
  }
}

/**
 * Verifies a log file, streaming it line by line. A file that cannot be read throws a
 * DecisionLogError with check "io"; anything wrong with its contents is a failed VerifyResult.
 */
export async function verifyLogFile(path: string): Promise<VerifyResult> {
  let fh: FileHandle;
  try {
    // O_NONBLOCK so a FIFO planted at the path is refused below instead of blocking the open.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    if (!(await fh.stat()).isFile()) {
      await fh.close();
      throw new DecisionLogError("io", `cannot read ${path}: not a regular file`);
    }
  } catch (err) {
    if (err instanceof DecisionLogError) throw err;
    throw new DecisionLogError("io", `cannot read ${path}: ${ioProblem(err)}`);
  }
  try {
    return (await scanLog(fh)).result;
  } catch (err) {
    throw new DecisionLogError("io", `cannot read ${path}: ${ioProblem(err)}`);
  } finally {
    await fh.close();
  }
}

async function writeFully(fh: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await fh.write(data, offset, data.length - offset, null);
    offset += bytesWritten;
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
    const dirHandle = await open(dir, constants.O_RDONLY);
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
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

/**
 * The append-only, hash-chained decision log. One writer per file: appends are sealed in call
 * order and made durable with group commit (one write + one fsync per batch of concurrent appends).
 */
export class DecisionLog {
  readonly #fh: FileHandle;
  readonly #maxBatch: number;
  #queue: Pending[] = [];
  #draining: Promise<void> | null = null;
  /** Head of the sealed chain, including records still waiting to be written. */
  #sealedSeq: number;
  #sealedHash: string;
  /** Head of the durable chain. */
  #durableSeq: number;
  #durableHash: string;
  #failure: DecisionLogError | null = null;
  #closed = false;
  #closing: Promise<void> | null = null;
  #stats: DecisionLogStats = { batches: 0, records: 0 };

  private constructor(fh: FileHandle, lastSeq: number, lastHash: string, maxBatch: number) {
    this.#fh = fh;
    this.#maxBatch = maxBatch;
    this.#sealedSeq = this.#durableSeq = lastSeq;
    this.#sealedHash = this.#durableHash = lastHash;
  }

  /**
   * Opens (or creates) the log and verifies the whole chain. A torn last record is cut off and
   * reported; any other corruption throws a DecisionLogError naming the first bad record.
   */
  static async open(path: string, options: DecisionLogOptions = {}): Promise<DecisionLog> {
    const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    if (!Number.isSafeInteger(maxBatch) || maxBatch < 1) {
      throw new DecisionLogError("options", `maxBatch must be a positive integer, got ${maxBatch}`);
    }
    let fh: FileHandle;
    try {
      fh = await openForAppend(path);
    } catch (err) {
      if (err instanceof DecisionLogError) throw err;
      throw new DecisionLogError("io", `cannot open ${path}: ${ioProblem(err)}`);
    }
    try {
      let scan = await scanLog(fh);
      if (!scan.result.ok) {
        const { check, seq, line, message } = scan.result;
        if (!scan.tornTail) {
          throw new DecisionLogError(
            check,
            `${path}: record seq ${seq} (line ${line}): ${message}; refusing to open — only a torn last record is repaired; investigate the log`,
          );
        }
        const droppedBytes = await repairTornTail(fh, path, scan.goodEnd);
        scan = await scanLog(fh);
        if (!scan.result.ok) {
          throw new DecisionLogError(scan.result.check, `${path}: still invalid after dropping a torn last record: ${scan.result.message}`);
        }
        options.onRepair?.({ droppedBytes });
      }
      return new DecisionLog(fh, scan.result.lastSeq, scan.result.lastHash, maxBatch);
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

  /** Why appends are refused (a failed write or fsync, or the log was closed), or null while appends are accepted. */
  get refusal(): DecisionLogError | null {
    return this.#failure ?? (this.#closed ? new DecisionLogError("closed", "the log is closed") : null);
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

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      try {
        // The write only reaches the page cache, so it is made in place (microseconds); the fsync, which waits for
        // the disk, goes to the thread pool. One thread hand-off per batch instead of two.
        writeAllSync(this.#fh.fd, Buffer.from(`${batch.map((p) => p.line).join("\n")}\n`, "utf8"));
        await this.#fh.datasync();
      } catch (err) {
        // What reached the disk is unknown, so nothing more may be chained onto it in this process.
        this.#failure = new DecisionLogError(
          "write",
          `write or fsync failed (${ioProblem(err)}); appends are refused until the log is reopened`,
        );
        for (const pending of [...batch, ...this.#queue.splice(0)]) pending.reject(this.#failure);
        break;
      }
      const last = batch[batch.length - 1] as Pending;
      this.#durableSeq = last.record.seq;
      this.#durableHash = last.record.hash;
      this.#stats.batches += 1;
      this.#stats.records += batch.length;
      for (const pending of batch) pending.resolve(pending.record);
    }
    this.#draining = null;
  }

  /** Waits for pending appends to be written, then closes the file; later appends reject. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      while (this.#draining !== null) await this.#draining;
      await this.#fh.close();
    })();
    return this.#closing;
  }
}
