import { StorageConflictError, StorageError } from "./types.ts";
import type { Finding, IngestRecord, LogHead, NodeTouch, StoredBundle, StoredRevocation } from "./types.ts";

/**
 * What both implementations check before touching the database, so that they refuse the same
 * inputs with the same error and return exactly what they stored (PostgreSQL would otherwise
 * normalize a timestamp that SQLite keeps as text).
 */

const RFC3339_UTC_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const SEVERITIES = new Set<unknown>(["low", "medium", "high", "critical"]);
const REVOCATION_KINDS = new Set<unknown>(["spiffe-id", "serial"]);

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

function refuse(message: string): never {
  throw new StorageError("input", message);
}

/** A timestamp that round-trips unchanged: RFC 3339 UTC with milliseconds, and a real date. */
export function checkTime(field: string, value: unknown): string {
  if (typeof value !== "string" || !RFC3339_UTC_MS.test(value) || Number.isNaN(Date.parse(value))
    || new Date(value).toISOString() !== value) {
    refuse(`${field} is not an RFC 3339 UTC timestamp with milliseconds (e.g. 2026-01-01T00:00:00.000Z)`);
  }
  return value;
}

export function checkInteger(field: string, value: unknown, min = 0): number {
  if (!Number.isSafeInteger(value) || (value as number) < min) refuse(`${field} is not an integer ≥ ${min}`);
  return value as number;
}

function checkOptionalInteger(field: string, value: unknown): number | null {
  return value === null || value === undefined ? null : checkInteger(field, value);
}

/** PostgreSQL text cannot hold U+0000, so neither store accepts it. */
export function checkText(field: string, value: unknown): string {
  if (typeof value !== "string") refuse(`${field} is not a string`);
  if (value.includes("\0")) refuse(`${field} contains a NUL character`);
  return value;
}

/** A result size: default 100, at most 1000 (larger asks are served 1000). */
export function checkLimit(value: number | undefined): number {
  if (value === undefined) return DEFAULT_LIMIT;
  return Math.min(checkInteger("limit", value, 1), MAX_LIMIT);
}

export function checkBundle(b: StoredBundle): void {
  checkText("bundle.group", b.group);
  checkInteger("bundle.revision", b.revision);
  checkText("bundle.name", b.name);
  checkText("bundle.digest", b.digest);
  checkText("bundle.etag", b.etag);
  checkTime("bundle.createdAt", b.createdAt);
  checkTime("bundle.notAfter", b.notAfter);
  checkInteger("bundle.graceSeconds", b.graceSeconds);
  checkTime("bundle.publishedAt", b.publishedAt);
  if (!(b.archive instanceof Uint8Array)) refuse("bundle.archive is not a Buffer");
}

export function checkRevocation(r: Omit<StoredRevocation, "id">): void {
  if (!REVOCATION_KINDS.has(r.kind)) refuse('revocation.kind is not "spiffe-id" or "serial"');
  checkText("revocation.value", r.value);
  checkText("revocation.reason", r.reason);
  checkTime("revocation.revokedAt", r.revokedAt);
}

export function checkTouch(n: NodeTouch): void {
  checkText("node.id", n.id);
  checkText("node.group", n.group);
  checkTime("node.at", n.at);
  checkOptionalInteger("node.claimed.bundleRevision", n.claimed?.bundleRevision);
  if (n.claimed?.stage !== undefined) checkText("node.claimed.stage", n.claimed.stage);
  checkOptionalInteger("node.claimed.logSeq", n.claimed?.logSeq);
}

export function checkFinding(f: Omit<Finding, "id">): void {
  checkText("finding.node", f.node);
  checkText("finding.kind", f.kind);
  if (!SEVERITIES.has(f.severity)) refuse("finding.severity is not low, medium, high or critical");
  checkOptionalInteger("finding.seqFrom", f.seqFrom);
  checkOptionalInteger("finding.seqTo", f.seqTo);
  checkText("finding.explanation", f.explanation);
  checkTime("finding.createdAt", f.createdAt);
}

export function checkRecords(records: IngestRecord[]): void {
  for (const r of records) {
    checkInteger("record.seq", r.seq, 1);
    checkText("record.hash", r.hash);
    checkText("record.prev", r.prev);
    checkTime("record.time", r.time);
    checkText("record.line", r.line);
  }
}

/** appendRecords' guard: the head read inside the transaction must be the one the caller checked the batch against. */
export function checkHeadUnchanged(node: string, current: LogHead, expected: LogHead): void {
  if (current.ackSeq !== expected.ackSeq || current.ackHash !== expected.ackHash || current.lastTime !== expected.lastTime) {
    throw new StorageConflictError(
      "head",
      `the log head of ${node} moved to seq ${current.ackSeq} while a batch after seq ${expected.ackSeq} was being stored (a concurrent upload won): read the head again`,
    );
  }
}

/** The head after a non-empty batch: its last record, and the latest record time ever stored. */
export function headAfter(expected: LogHead, records: IngestRecord[]): LogHead {
  const last = records[records.length - 1]!;
  let lastTime = expected.lastTime;
  // Equal-length RFC 3339 UTC strings order as the times they name.
  for (const r of records) if (lastTime === null || r.time > lastTime) lastTime = r.time;
  return { ackSeq: last.seq, ackHash: last.hash, lastTime };
}

export function recordSeqConflict(node: string, records: IngestRecord[]): StorageConflictError {
  const seqs = records.length === 1 ? `seq ${records[0]!.seq}` : `seq ${records[0]!.seq}–${records[records.length - 1]!.seq}`;
  return new StorageConflictError("record-seq", `a record of ${node} in ${seqs} is already stored; nothing of the batch was stored`);
}

export function bundleRevisionConflict(b: StoredBundle): StorageConflictError {
  return new StorageConflictError("bundle-revision", `group ${b.group} already has revision ${b.revision}`);
}
