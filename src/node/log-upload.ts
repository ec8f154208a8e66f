import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { gzip as gzipCallback } from "node:zlib";
import { Agent, request, type Dispatcher } from "undici";
import { DecisionLogError, type DecisionLog, type LogAnchor, type RecordBatch } from "../decision-log/index.ts";
import type { UploadConfig } from "../config/index.ts";
import type { Logger, UploadMetrics } from "../telemetry/index.ts";
import { CursorStore, cursorAnchor, type UploadCursor } from "./upload-cursor.ts";

const gzip = promisify(gzipCallback);

/** The backoff's ceiling while the control plane is unreachable (unless the interval itself is longer). */
export const MAX_BACKOFF_MS = 5 * 60_000;

/**
 * Bytes of lines per batch: far below what the control plane inflates (32 MiB) and, since gzip never grows data by
 * more than a few bytes per 64 KiB block, below its 8 MiB compressed limit too, whatever the records hold.
 */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;

/** How long one call may wait for the control plane's answer (an ingest runs the retroactive analysis first). */
const ANSWER_TIMEOUT_MS = 60_000;

/** The largest answer read from the control plane (a head, an ack, or an error). */
const MAX_ANSWER_BYTES = 64 * 1024;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** How DecisionLog.readAfter says that a starting point is not in this log: past its end, another record, pruned. */
const HEAD_MISMATCH = new Set(["ahead", "chain", "pruned"]);

/** OpenSSL's codes for a server certificate that does not verify (a wrong `upload.ca`, or a stranger answering). */
const TLS_FAILURE = /CERT|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/;

/** Why an upload round failed; `reason` is the label of edgeward_upload_failures_total. */
export class UploadError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = "UploadError";
    this.reason = reason;
  }
}

/**
 * Exponential backoff with full jitter (a uniformly random wait up to the exponential ceiling), after `failures`
 * consecutive failed rounds: the ceiling is `baseMs` after the first, doubling up to MAX_BACKOFF_MS. Full jitter
 * spreads a fleet that lost the control plane at once over the whole window instead of retrying in step. Pure.
 */
export function backoffDelayMs(failures: number, baseMs: number, random: () => number): number {
  const cap = Math.max(MAX_BACKOFF_MS, baseMs);
  const ceiling = Math.min(cap, baseMs * 2 ** Math.min(Math.max(failures, 1) - 1, 30));
  return Math.floor(random() * ceiling);
}

/** The body of a POST: the lines as they are in the log file, each ending in a newline, gzip'd. */
export function encodeBatch(lines: readonly string[]): Promise<Buffer> {
  return gzip(Buffer.from(`${lines.join("\n")}\n`, "utf8"));
}

/**
 * The node's own hash of record `seq`, when the batch sent after `after` tells it (the record before the batch or
 * one in it); null otherwise. Pure.
 */
export function ownHash(after: LogAnchor, batch: Pick<RecordBatch, "firstSeq" | "hashes">, seq: number): string | null {
  if (seq === after.seq) return after.hash;
  return batch.hashes[seq - batch.firstSeq] ?? null;
}

/** A head or an acknowledgement from the control plane: `{"ackSeq": N, "ackHash": "<hex>"}` (more fields allowed). */
export function parseHead(value: unknown): UploadCursor | null {
  if (typeof value !== "object" || value === null) return null;
  const { ackSeq, ackHash } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(ackSeq) || (ackSeq as number) < 0) return null;
  if (typeof ackHash !== "string" || !SHA256_HEX.test(ackHash)) return null;
  return { ackSeq: ackSeq as number, ackHash };
}

export interface NodeStatus {
  /** The active bundle's revision, or null (no bundle, or policy files). */
  bundleRevision: number | null;
  /** The bundle's degradation stage, or null (policy files). */
  stage: string | null;
}

export interface LogUploaderOptions {
  config: UploadConfig;
  /** Prune acknowledged records older than this (null: never prune). */
  retentionMs: number | null;
  log: DecisionLog;
  clock: () => number;
  logger: Logger;
  metrics: UploadMetrics;
  /** The gateway's own certificate and key (PEM), presented to the control plane; read for each call (rotation). */
  clientCredentials(): { cert: string; key: string };
  /** What the node reports about itself in the x-edgeward-* headers of each call. */
  nodeStatus(): NodeStatus;
  /** Uniform in [0, 1): the backoff's jitter (injected by tests). */
  random?: () => number;
}

type RoundOutcome = "more" | "idle";

/**
 * Uploads the decision log to the control plane, batch by batch after the acknowledged cursor, and prunes what is
 * both acknowledged and past the retention period. Reads the control plane's head at start and after every failure
 * (the server is the truth about what it holds); advances the cursor only when the server acknowledges a record
 * whose hash is the node's own; backs off with full jitter while the control plane is unreachable.
 */
export class LogUploader {
  readonly #o: LogUploaderOptions;
  readonly #store: CursorStore;
  readonly #ca: string | null;
  readonly #random: () => number;
  #cursor: UploadCursor;
  #closed = false;
  #loop: Promise<void> | null = null;
  #inflight: AbortController | null = null;
  #timer: NodeJS.Timeout | null = null;
  #wake: (() => void) | null = null;
  /** Consecutive failed rounds; 0 while uploads succeed. */
  #failures = 0;

  private constructor(options: LogUploaderOptions, store: CursorStore, cursor: UploadCursor, ca: string | null) {
    this.#o = options;
    this.#store = store;
    this.#cursor = cursor;
    this.#ca = ca;
    this.#random = options.random ?? Math.random;
  }

  /** Reads the CA file and the cursor (refusing to start only when they are unusable), then starts uploading at once. */
  static async start(options: LogUploaderOptions): Promise<LogUploader> {
    const ca = options.config.ca === null ? null : await readFile(options.config.ca, "utf8");
    const store = new CursorStore(options.config.stateDir);
    const { cursor, error } = await store.load();
    if (error !== null) options.logger.warn(`upload cursor ignored, starting from none: ${error}`);
    const uploader = new LogUploader(options, store, cursor, ca);
    options.metrics.ackedSeq.set(cursor.ackSeq);
    uploader.#loop = uploader.#run();
    return uploader;
  }

  /** The last acknowledged record the node checked (and persisted). */
  get cursor(): UploadCursor {
    return { ...this.#cursor };
  }

  /** Stops the loop and any call in flight; the cursor on disk is whatever was last acknowledged. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#inflight?.abort();
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let needHead = true;
    while (!this.#closed) {
      let pause: number;
      try {
        const outcome = await this.#round(needHead);
        if (this.#failures > 0) this.#o.logger.info({ ackSeq: this.#cursor.ackSeq }, "decision-log upload resumed");
        this.#failures = 0;
        needHead = false;
        pause = outcome === "more" ? 0 : this.#o.config.intervalMs;
      } catch (err) {
        if (this.#closed) return;
        const failure = err instanceof UploadError ? err : new UploadError("log", (err as Error).message);
        this.#failures += 1;
        needHead = true;
        this.#o.metrics.failures.inc({ reason: failure.reason });
        pause = backoffDelayMs(this.#failures, this.#o.config.intervalMs, this.#random);
        this.#o.logger.warn({ reason: failure.reason, failures: this.#failures, retryInMs: pause }, `decision-log upload failed: ${failure.message}`);
      }
      await this.#sleep(pause);
    }
  }

  /** One upload: the head when asked, one batch after it, the acknowledgement checked and persisted, then retention. */
  async #round(needHead: boolean): Promise<RoundOutcome> {
    const limits = { maxRecords: this.#o.config.maxBatchRecords, maxBytes: MAX_BATCH_BYTES };
    let position = cursorAnchor(this.#cursor);
    let batch: RecordBatch | null = null;
    if (needHead) {
      const head = await this.#getHead();
      try {
        batch = await this.#o.log.readAfter(cursorAnchor(head), limits);
        position = cursorAnchor(head);
        // The server is the truth about what it holds: the cursor follows its head, down too (it lost records).
        if (head.ackSeq !== this.#cursor.ackSeq || head.ackHash !== this.#cursor.ackHash) await this.#saveCursor(head);
      } catch (err) {
        if (!(err instanceof DecisionLogError) || !HEAD_MISMATCH.has(err.check)) throw err;
        // Uploading from the node's own cursor lets the control plane refuse the batch and raise a finding on the node.
        this.#o.metrics.failures.inc({ reason: "head-mismatch" });
        this.#o.logger.error(
          { ackSeq: head.ackSeq, ackHash: head.ackHash, check: err.check },
          `the control plane's head does not match this node's decision log (${err.message.replace(/^decision log: /, "")}); uploading from the node's cursor, seq ${this.#cursor.ackSeq}`,
        );
      }
    }
    try {
      batch ??= await this.#o.log.readAfter(position, limits);
    } catch (err) {
      if (!(err instanceof DecisionLogError)) throw err;
      throw new UploadError("log", `cannot read the records after seq ${position.seq}: ${err.message.replace(/^decision log: /, "")}`);
    }
    const start = position.seq;
    if (batch.lines.length > 0) {
      const ack = await this.#post(batch);
      const own = ownHash(position, batch, ack.ackSeq);
      if (own !== ack.ackHash) {
        throw new UploadError("ack-mismatch", `the control plane acknowledged seq ${ack.ackSeq} with hash ${ack.ackHash}, which is not this node's record${own === null ? " (outside the batch sent)" : ` (${own})`}; the cursor stays at seq ${this.#cursor.ackSeq}`);
      }
      await this.#saveCursor(ack);
      this.#o.metrics.batches.inc();
      position = cursorAnchor(ack);
    }
    await this.#applyRetention();
    // Straight on while records wait and this batch moved the cursor; otherwise at the next interval.
    return position.seq > start && position.seq < this.#o.log.lastSeq ? "more" : "idle";
  }

  async #getHead(): Promise<UploadCursor> {
    const { status, json } = await this.#call("GET", `${this.#o.config.url}/head`, null);
    if (status !== 200) throw statusError(status, json, "head");
    const head = parseHead(json);
    if (head === null) throw new UploadError("status", "the control plane's head is not {ackSeq, ackHash}");
    return head;
  }

  async #post(batch: RecordBatch): Promise<UploadCursor> {
    const body = await encodeBatch(batch.lines);
    const { status, json } = await this.#call("POST", this.#o.config.url, body);
    if (status === 409) {
      const error = (json as { error?: { code?: unknown; message?: unknown } } | null)?.error;
      const code = typeof error?.code === "string" && ["gap", "fork", "chain", "tampered", "foreign-chain"].includes(error.code) ? error.code : "refused";
      const message = typeof error?.message === "string" ? error.message.slice(0, 500) : "no reason given";
      throw new UploadError(code, `the control plane refused records ${batch.firstSeq}..${batch.end.seq} (${code}): ${message}; the node keeps them`);
    }
    if (status !== 200) throw statusError(status, json, "batch");
    const ack = parseHead(json);
    if (ack === null) throw new UploadError("status", "the control plane's acknowledgement is not {ackSeq, ackHash}");
    return ack;
  }

  /** One call with a fresh connection (so that a rotated SVID is presented), the node's headers, and a bounded answer. */
  async #call(method: "GET" | "POST", url: string, body: Buffer | null): Promise<{ status: number; json: unknown }> {
    const status = this.#o.nodeStatus();
    const headers: Record<string, string> = { accept: "application/json", "x-edgeward-log-seq": String(this.#o.log.lastSeq) };
    if (status.bundleRevision !== null) headers["x-edgeward-bundle-revision"] = String(status.bundleRevision);
    if (status.stage !== null) headers["x-edgeward-stage"] = status.stage;
    if (body !== null) {
      headers["content-type"] = "application/x-ndjson";
      headers["content-encoding"] = "gzip";
    }
    const abort = new AbortController();
    this.#inflight = abort;
    const dispatcher = this.#dispatcher();
    try {
      const res = await request(url, { method, headers, body, dispatcher, signal: abort.signal });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_ANSWER_BYTES) {
          res.body.destroy();
          throw new UploadError("status", `the control plane's answer to ${method} ${url} is larger than ${MAX_ANSWER_BYTES} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      let json: unknown = null;
      try {
        json = JSON.parse(Buffer.concat(chunks, size).toString("utf8"));
      } catch {
        // A non-JSON answer (a proxy's error page) is judged by its status alone.
      }
      return { status: res.statusCode, json };
    } catch (err) {
      if (err instanceof UploadError) throw err;
      const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
      const code = e.code ?? e.cause?.code ?? e.name;
      const reason = TLS_FAILURE.test(code) ? "tls" : "unreachable";
      throw new UploadError(reason, `${method} ${url}: ${code}${e.message ? ` (${e.message})` : ""}`);
    } finally {
      this.#inflight = null;
      await dispatcher.close().catch(() => undefined);
    }
  }

  #dispatcher(): Dispatcher {
    const { cert, key } = this.#o.clientCredentials();
    return new Agent({
      connect: { cert, key, ...(this.#ca === null ? {} : { ca: this.#ca }) },
      headersTimeout: ANSWER_TIMEOUT_MS,
      bodyTimeout: ANSWER_TIMEOUT_MS,
      connections: 1,
    });
  }

  async #saveCursor(cursor: UploadCursor): Promise<void> {
    try {
      await this.#store.save(cursor);
    } catch (err) {
      throw new UploadError("cursor", (err as Error).message);
    }
    this.#cursor = { ackSeq: cursor.ackSeq, ackHash: cursor.ackHash };
    this.#o.metrics.ackedSeq.set(cursor.ackSeq);
  }

  /** Prunes acknowledged records past the retention period; a failure is reported, and the upload goes on. */
  async #applyRetention(): Promise<void> {
    const { retentionMs } = this.#o;
    if (retentionMs === null) return;
    try {
      const anchor = await this.#o.log.applyRetention(this.#cursor.ackSeq, this.#o.clock() - retentionMs);
      if (anchor !== null) this.#o.logger.info({ throughSeq: anchor.seq }, "decision log pruned: acknowledged records past the retention period");
    } catch (err) {
      this.#o.metrics.failures.inc({ reason: "prune" });
      this.#o.logger.error({ err: (err as Error).message }, "decision log could not be pruned; its records are kept");
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.#closed) return resolve();
      const wake = () => {
        this.#timer = null;
        this.#wake = null;
        resolve();
      };
      this.#timer = setTimeout(wake, ms).unref();
      this.#wake = wake;
    });
  }
}

function statusError(status: number, json: unknown, what: string): UploadError {
  const code = (json as { error?: { code?: unknown } } | null)?.error?.code;
  return new UploadError("status", `the control plane answered ${status}${typeof code === "string" ? ` (${code.slice(0, 64)})` : ""} to the ${what}`);
}
