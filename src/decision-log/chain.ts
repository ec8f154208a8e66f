import { hash } from "node:crypto";
import { DecisionLogError } from "./errors.ts";

/** What the gateway supplies for one decision. Never prompt text. */
export interface DecisionEntry {
  /** RFC 3339 UTC with milliseconds, e.g. "2026-01-01T00:00:00.000Z"; supplied by the caller. */
  time: string;
  requestId: string;
  principal: string | null;
  method: string;
  path: string;
  model: string | null;
  decision: "ALLOW" | "DENY";
  policy: string | null;
  rule: number | null;
  reason: string;
  /** Policy revision the decision was made under. */
  revision: string | null;
  /** Degradation stage of the policy bundle the decision was made under (absent when the policy comes from files). */
  stage?: "fresh" | "grace" | "restricted" | "locked";
  /** HTTP status answered when a denial was made before forwarding. */
  status?: number;
}

export interface DecisionRecord extends DecisionEntry {
  seq: number;
  prev: string;
  hash: string;
}

export type VerifyCheck = "malformed" | "sequence" | "chain" | "hash" | "truncated" | "anchor";

export type VerifyResult =
  /** `anchor` is present when the log was pruned: the chain was verified from it. */
  | { ok: true; records: number; lastSeq: number; lastHash: string; anchor?: LogAnchor }
  | { ok: false; seq: number; line: number; check: VerifyCheck; message: string };

export const GENESIS_HASH = "0".repeat(64);

/** A line longer than this is refused when sealing and reported as malformed when verifying. */
export const MAX_RECORD_BYTES = 64 * 1024;

const RFC3339_UTC_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const REQUIRED_KEYS = [
  "seq", "time", "requestId", "principal", "method", "path", "model",
  "decision", "policy", "rule", "reason", "revision", "prev", "hash",
] as const;
const ALLOWED_KEYS = new Set<string>([...REQUIRED_KEYS, "stage", "status"]);
const STAGES = new Set<unknown>(["fresh", "grace", "restricted", "locked"]);

/**
 * The bytes that are hashed: every field except `hash`, in this fixed key order, as JSON without
 * whitespace. Building the object field by field also drops anything a caller added beyond the
 * schema (a prompt must never reach the log).
 */
function canonicalBody(r: Omit<DecisionRecord, "hash">): string {
  return JSON.stringify(orderedFields(r, r.seq, r.prev));
}

function orderedFields(r: DecisionEntry, seq: number, prev: string): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    seq,
    time: r.time,
    requestId: r.requestId,
    principal: r.principal,
    method: r.method,
    path: r.path,
    model: r.model,
    decision: r.decision,
    policy: r.policy,
    rule: r.rule,
    reason: r.reason,
    revision: r.revision,
  };
  if (r.stage !== undefined) fields.stage = r.stage;
  if (r.status !== undefined) fields.status = r.status;
  fields.prev = prev;
  return fields;
}

/**
 * The line of a record from its canonical body: the same JSON with `hash` added as the last key
 * (a hex digest needs no escaping), which is what serializing all fields in order yields.
 */
function lineOf(body: string, digest: string): string {
  return `${body.slice(0, -1)},"hash":"${digest}"}`;
}

function sha256Hex(text: string): string {
  return hash("sha256", text, "hex");
}

/** Why a value is not a well-formed record (or entry, when `withChain` is false); null when it is. */
function schemaProblem(v: Record<string, unknown>, withChain: boolean): string | null {
  const nullableString = (k: string) => v[k] === null || typeof v[k] === "string";
  if (withChain) {
    if (!Number.isSafeInteger(v.seq) || (v.seq as number) < 1) return "seq is not a positive integer";
    if (typeof v.prev !== "string" || !SHA256_HEX.test(v.prev)) return "prev is not a lowercase sha256 hex digest";
    if (typeof v.hash !== "string" || !SHA256_HEX.test(v.hash)) return "hash is not a lowercase sha256 hex digest";
  }
  if (typeof v.time !== "string" || !RFC3339_UTC_MS.test(v.time) || Number.isNaN(Date.parse(v.time))) {
    return "time is not an RFC 3339 UTC timestamp with milliseconds";
  }
  if (typeof v.requestId !== "string" || v.requestId === "") return "requestId is not a non-empty string";
  if (!nullableString("principal")) return "principal is not a string or null";
  if (typeof v.method !== "string" || v.method === "") return "method is not a non-empty string";
  if (typeof v.path !== "string") return "path is not a string";
  if (!nullableString("model")) return "model is not a string or null";
  if (v.decision !== "ALLOW" && v.decision !== "DENY") return "decision is not ALLOW or DENY";
  if (!nullableString("policy")) return "policy is not a string or null";
  if (v.rule !== null && (!Number.isSafeInteger(v.rule) || (v.rule as number) < 0)) {
    return "rule is not a non-negative integer or null";
  }
  if (typeof v.reason !== "string") return "reason is not a string";
  if (!nullableString("revision")) return "revision is not a string or null";
  if (v.stage !== undefined && !STAGES.has(v.stage)) return "stage is not fresh, grace, restricted or locked";
  if (v.status !== undefined && (!Number.isSafeInteger(v.status) || (v.status as number) < 100 || (v.status as number) > 599)) {
    return "status is not an HTTP status code";
  }
  return null;
}

/** A sealed record and its line as written to the log (no trailing newline). */
export interface SealedRecord {
  record: DecisionRecord;
  line: string;
}

/** Seals one entry as record `seq` following the record whose hash is `prev`. */
export function sealRecord(entry: DecisionEntry, seq: number, prev: string): DecisionRecord {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new DecisionLogError("entry", `seq ${seq} is not a positive integer`);
  if (typeof prev !== "string" || !SHA256_HEX.test(prev)) {
    throw new DecisionLogError("entry", "prev is not a lowercase sha256 hex digest");
  }
  return seal(entry, seq, prev).record;
}

/**
 * Seals one entry after a chain head the caller vouches for (the log's own, verified or sealed by
 * it, so `seq` and `prev` are not re-checked on its hot path), and returns the line too so the
 * record is serialized only once.
 */
export function seal(entry: DecisionEntry, seq: number, prev: string): SealedRecord {
  const problem = schemaProblem(entry as unknown as Record<string, unknown>, false);
  if (problem !== null) throw new DecisionLogError("entry", `entry rejected: ${problem}`);
  const fields = orderedFields(entry, seq, prev);
  const body = JSON.stringify(fields);
  const digest = sha256Hex(body);
  const line = lineOf(body, digest);
  if (Buffer.byteLength(line, "utf8") > MAX_RECORD_BYTES) {
    throw new DecisionLogError("entry", `entry rejected: the record is larger than ${MAX_RECORD_BYTES} bytes`);
  }
  fields.hash = digest;
  return { record: fields as unknown as DecisionRecord, line };
}

/** The record as written to the log: one JSON line (no trailing newline), `hash` last. */
export function serializeRecord(r: DecisionRecord): string {
  return JSON.stringify({ ...orderedFields(r, r.seq, r.prev), hash: r.hash });
}

type LineRead =
  | { ok: true; record: DecisionRecord }
  | { ok: false; check: VerifyCheck; message: string };

/**
 * Reads one line as a record on its own: a well-formed, canonical line whose fields hash to its `hash`. Its place
 * in a chain (seq, prev) is the caller's to check. The order matters for the message: a record that was edited
 * reports "hash" even when the edit was to its seq or prev.
 */
export function readRecordLine(line: string): LineRead {
  if (Buffer.byteLength(line, "utf8") > MAX_RECORD_BYTES) {
    return { ok: false, check: "malformed", message: `line is longer than ${MAX_RECORD_BYTES} bytes` };
  }
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { ok: false, check: "malformed", message: "line is not valid JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, check: "malformed", message: "line is not a JSON object" };
  }
  const fields = value as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!ALLOWED_KEYS.has(key)) return { ok: false, check: "malformed", message: `unknown field "${key}"` };
  }
  for (const key of REQUIRED_KEYS) {
    if (!(key in fields)) return { ok: false, check: "malformed", message: `missing field "${key}"` };
  }
  const problem = schemaProblem(fields, true);
  if (problem !== null) return { ok: false, check: "malformed", message: problem };
  const record = fields as unknown as DecisionRecord;
  const body = canonicalBody(record);
  if (sha256Hex(body) !== record.hash) {
    return { ok: false, check: "hash", message: "hash mismatch — the record was edited" };
  }
  // Equal fields can be spelled differently in JSON (escapes, key order); only the canonical
  // spelling is accepted, so every byte of the line is covered.
  if (lineOf(body, record.hash) !== line) {
    return { ok: false, check: "malformed", message: "record is not in canonical form — the line was re-encoded or edited" };
  }
  return { ok: true, record };
}

/** Why an intact record cannot follow the record hashed `prevHash` as record `expectedSeq`; null when it can. */
function placeProblem(record: DecisionRecord, expectedSeq: number, prevHash: string): { check: VerifyCheck; message: string } | null {
  if (record.seq !== expectedSeq) {
    return {
      check: "sequence",
      message: `expected seq ${expectedSeq}, found ${record.seq} — a record was deleted, inserted or reordered`,
    };
  }
  if (record.prev !== prevHash) {
    return {
      check: "chain",
      message: expectedSeq === 1
        ? "prev is not the genesis hash — the start of the log was replaced"
        : `prev does not match the hash of record seq ${expectedSeq - 1} — a record was replaced or forged`,
    };
  }
  return null;
}

/**
 * The last record pruned from the start of a log: the kept records continue the chain from it. Pruning writes
 * the anchor before it replaces the log, so a crash between the two leaves a log that still holds the anchor's
 * record; such a log verifies when its records chain up to the anchor's hash.
 */
export interface LogAnchor {
  seq: number;
  hash: string;
}

/** Walks a chain line by line, from the genesis or from an anchor; shared by the in-memory and the streaming verifiers. */
export class ChainVerifier {
  records = 0;
  lastSeq = 0;
  lastHash = GENESIS_HASH;
  readonly #anchor: LogAnchor | null;
  /** Set while the log still holds records up to the anchor's (a crash between the anchor's write and the log's replacement). */
  #anchorAhead = false;

  constructor(anchor: LogAnchor | null = null) {
    this.#anchor = anchor;
    if (anchor !== null) {
      this.lastSeq = anchor.seq;
      this.lastHash = anchor.hash;
    }
  }

  /** Checks the next complete line; on success it becomes the head of the chain. */
  push(line: string): VerifyResult | null {
    const read = readRecordLine(line);
    if (!read.ok) return this.failure(read.check, read.message);
    const record = read.record;
    const anchor = this.#anchor;
    if (this.records === 0 && anchor !== null && record.seq !== anchor.seq + 1) {
      if (record.seq > anchor.seq + 1) {
        return this.failure("anchor", `the log starts at seq ${record.seq}, after its anchor at seq ${anchor.seq} — records after the anchor were removed`);
      }
      // The log still starts before its anchor: the records up to it are bound to it by the chain, checked below.
      if (record.seq === 1 && record.prev !== GENESIS_HASH) {
        return this.failure("chain", "prev is not the genesis hash — the start of the log was replaced");
      }
      this.#anchorAhead = true;
    } else {
      const problem = placeProblem(record, this.lastSeq + 1, this.lastHash);
      if (problem !== null) {
        const check = this.records === 0 && anchor !== null && problem.check === "chain" ? "anchor" : problem.check;
        const message = check === "anchor"
          ? `prev does not match the anchor's hash (seq ${anchor!.seq}) — the anchor or the start of the log was replaced`
          : problem.message;
        return this.failure(check, message);
      }
    }
    if (this.#anchorAhead && record.seq === anchor!.seq) {
      if (record.hash !== anchor!.hash) {
        return { ok: false, seq: record.seq, line: this.records + 1, check: "anchor", message: `record seq ${record.seq} does not match the anchor's hash — the anchor or the log was replaced` };
      }
      this.#anchorAhead = false;
    }
    this.records += 1;
    this.lastSeq = record.seq;
    this.lastHash = record.hash;
    return null;
  }

  /** The failure for the line after the current head. */
  failure(check: VerifyCheck, message: string): VerifyResult {
    return { ok: false, seq: this.lastSeq + 1, line: this.records + 1, check, message };
  }

  result(): VerifyResult {
    if (this.#anchorAhead) {
      return this.failure("anchor", `the log ends at seq ${this.lastSeq}, before its anchor at seq ${this.#anchor!.seq} — records were removed`);
    }
    const result: VerifyResult = { ok: true, records: this.records, lastSeq: this.lastSeq, lastHash: this.lastHash };
    return this.#anchor === null ? result : { ...result, anchor: { ...this.#anchor } };
  }
}

/**
 * Verifies complete lines (without their newlines) and names the first bad record. A single empty
 * last element is ignored, so `text.split("\n")` of a newline-terminated log can be passed as is.
 */
export function verifyRecords(lines: Iterable<string>): VerifyResult {
  const verifier = new ChainVerifier();
  let pendingEmpty = false;
  for (const line of lines) {
    if (pendingEmpty) return verifier.failure("malformed", "empty line");
    if (line === "") {
      pendingEmpty = true;
      continue;
    }
    const failure = verifier.push(line);
    if (failure !== null) return failure;
  }
  return verifier.result();
}
