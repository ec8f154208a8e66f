import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import type { DecisionRecord } from "../decision-log/chain.ts";
import type { Logger } from "../telemetry/index.ts";
import { analyze, refusalFinding } from "./analysis.ts";
import { raiseOnce } from "./claims.ts";
import { ApiError } from "./errors.ts";
import { BatchChecker, MAX_BATCH_LINES, overlap, planIngest, splitBatch, toIngestRecord, type IngestRefusal } from "./ingest.ts";
import { KeyedLock } from "./keyed-lock.ts";
import { ForeignRecordError, MAX_LIMIT, StorageConflictError, type LogHead, type Storage } from "./storage/index.ts";

const MiB = 1024 * 1024;
/** The body of POST /v1/logs as sent. */
export const MAX_UPLOAD_BYTES = 8 * MiB;
/** ...and inflated: inflation stops here, so a gzip bomb costs at most this. */
export const MAX_INFLATED_BYTES = 32 * MiB;
/** Lines checked between two yields to the event loop, so one large batch never stalls the other requests. */
const LINES_PER_SLICE = 500;

export interface UploadResult {
  ackSeq: number;
  ackHash: string;
  accepted: number;
  duplicates: number;
}

export interface IngestionOptions {
  storage: Storage;
  logger: Logger;
  clockSkewMs: number;
  /** The current time as storage keeps it. */
  now: () => string;
}

const inflate = promisify(gunzip);
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Inflation runs on the thread pool, and stops at the limit. */
async function inflateLimited(body: Buffer): Promise<Buffer> {
  try {
    return await inflate(body, { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
      throw new ApiError(413, "too_large", `the batch inflates to more than ${MAX_INFLATED_BYTES / MiB} MiB`);
    }
    throw new ApiError(400, "bad_gzip", "the body is not valid gzip data");
  }
}

/**
 * Decision-log uploads around the pure core (ingest.ts, analysis.ts): one node's uploads run one at a time; the
 * records are stored in one transaction, then analysed; a refusal stores nothing and raises a finding.
 */
export class LogIngestion {
  readonly #o: IngestionOptions;
  readonly #lock = new KeyedLock();

  constructor(options: IngestionOptions) {
    this.#o = options;
  }

  /** One gzip'd batch from `node` (of `group`); an ApiError for every refusal. */
  async upload(node: { id: string; group: string }, body: Buffer): Promise<UploadResult> {
    const { lines, terminated } = splitBatch(await inflateLimited(body));
    if (lines.length > MAX_BATCH_LINES) throw new ApiError(413, "too_many_lines", `a batch holds at most ${MAX_BATCH_LINES} lines (this one ${lines.length})`);
    return this.#lock.run(node.id, () => this.#ingest(node, lines, terminated));
  }

  async #ingest(node: { id: string; group: string }, lines: Buffer[], terminated: boolean): Promise<UploadResult> {
    const { storage, logger } = this.#o;
    const head = await storage.logHead(node.id);
    const checker = new BatchChecker();
    for (let i = 0; i < lines.length; i++) {
      if (!checker.add(lines[i]!, terminated || i < lines.length - 1)) break;
      if ((i + 1) % LINES_PER_SLICE === 0) await yieldToLoop();
    }
    const batch = checker.result();
    const span = overlap(head, batch);
    const stored = new Map<number, string>();
    if (span !== null) for (const r of await storage.getRecords(node.id, span.from, span.to)) stored.set(r.seq, r.hash);
    const plan = planIngest(head, batch, stored);
    if (!plan.ok) {
      await this.#raiseRefusal(node.id, plan);
      throw new ApiError(409, plan.code, plan.message, { detail: { seq: plan.seq }, extra: { ackSeq: head.ackSeq, ackHash: head.ackHash } });
    }
    let after: LogHead = head;
    if (plan.records.length > 0) {
      try {
        after = await storage.appendRecords(node.id, head, plan.records.map(toIngestRecord));
      } catch (error) {
        if (error instanceof ForeignRecordError) {
          // The records verify as a chain, but they are stored under another node: this node uploads a copy of that
          // node's log, not decisions of its own.
          const refusal: IngestRefusal = { ok: false, code: "foreign-chain", seq: error.seq, message: error.message.replace(/^storage: /, "") };
          await this.#raiseRefusal(node.id, refusal);
          throw new ApiError(409, refusal.code, refusal.message, { detail: { seq: refusal.seq }, extra: { ackSeq: head.ackSeq, ackHash: head.ackHash } });
        }
        if (!(error instanceof StorageConflictError)) throw error;
        const current = await storage.logHead(node.id);
        throw new ApiError(409, "conflict", "another upload moved the log head; fetch the head and resend", { extra: { ackSeq: current.ackSeq, ackHash: current.ackHash } });
      }
      // The records are stored and acknowledged whatever happens next; a failed analysis is logged, not answered.
      await this.#analyze(node, head, plan.records.map((c) => c.record)).catch((error: Error) =>
        logger.error({ node: node.id, err: error.message, seqFrom: plan.records[0]!.record.seq }, "retroactive analysis failed for an ingested batch"));
    }
    return { ackSeq: after.ackSeq, ackHash: after.ackHash, accepted: plan.records.length, duplicates: plan.duplicates };
  }

  async #analyze(node: { id: string; group: string }, before: LogHead, records: DecisionRecord[]): Promise<void> {
    const { storage, clockSkewMs, now } = this.#o;
    const [revocations, history] = await Promise.all([storage.listRevocations(), storage.bundleHistory(node.group, MAX_LIMIT)]);
    const findings = analyze({ node: node.id, records, revocations, history, previousLastTime: before.lastTime, clockSkewMs, now: now() });
    if (findings.length > 0) await storage.addFindings(findings);
  }

  /** A refused upload is a finding on the node; an uploader retrying the same refused batch does not repeat it. */
  async #raiseRefusal(node: string, refusal: IngestRefusal): Promise<void> {
    const { storage, logger, now } = this.#o;
    if (!(await raiseOnce(storage, refusalFinding(node, refusal.code, refusal.seq, refusal.message, now())))) return;
    logger.warn({ node, code: refusal.code, seq: refusal.seq }, "decision-log upload refused");
  }
}
