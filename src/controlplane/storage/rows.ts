import { GENESIS_HASH } from "../../decision-log/index.ts";
import type { Finding, IngestRecord, LogHead, NodeRecord, Severity, StoredBundle, StoredRevocation } from "./types.ts";

/**
 * Rows as both databases return them for the shared schema: integers as numbers and timestamps
 * as RFC 3339 strings (the PostgreSQL pool is configured to parse them so), blobs as bytes.
 * Mapping builds plain objects: SQLite's rows have a null prototype.
 */
type Row = Record<string, unknown>;

export const BUNDLE_COLUMNS = "group_name, revision, name, digest, etag, created_at, not_after, grace_seconds, published_at";
export const NODE_COLUMNS = "id, group_name, first_seen, last_contact, claimed_bundle_revision, claimed_stage, claimed_log_seq";
export const FINDING_COLUMNS = "id, node, kind, severity, seq_from, seq_to, explanation, created_at";
export const REVOCATION_COLUMNS = "id, kind, value, reason, revoked_at";
export const RECORD_COLUMNS = "seq, hash, prev, time, line";

export const EMPTY_HEAD: LogHead = Object.freeze({ ackSeq: 0, ackHash: GENESIS_HASH, lastTime: null });

export function bundleMeta(r: Row): Omit<StoredBundle, "archive"> {
  return {
    group: r.group_name as string,
    revision: r.revision as number,
    name: r.name as string,
    digest: r.digest as string,
    etag: r.etag as string,
    createdAt: r.created_at as string,
    notAfter: r.not_after as string,
    graceSeconds: r.grace_seconds as number,
    publishedAt: r.published_at as string,
  };
}

export function bundle(r: Row): StoredBundle {
  const bytes = r.archive as Uint8Array;
  // A view, not a copy: a 32 MiB archive is not duplicated on every read.
  return { ...bundleMeta(r), archive: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

export function node(r: Row): NodeRecord {
  return {
    id: r.id as string,
    group: r.group_name as string,
    firstSeen: r.first_seen as string,
    lastContact: r.last_contact as string,
    claimed: {
      bundleRevision: r.claimed_bundle_revision as number | null,
      stage: r.claimed_stage as string | null,
      logSeq: r.claimed_log_seq as number | null,
    },
  };
}

export function head(r: Row | undefined): LogHead {
  if (r === undefined) return { ...EMPTY_HEAD };
  return { ackSeq: r.ack_seq as number, ackHash: r.ack_hash as string, lastTime: r.last_time as string | null };
}

export function record(r: Row): IngestRecord {
  return { seq: r.seq as number, hash: r.hash as string, prev: r.prev as string, time: r.time as string, line: r.line as string };
}

export function revocation(r: Row): StoredRevocation {
  return {
    id: r.id as number,
    kind: r.kind as StoredRevocation["kind"],
    value: r.value as string,
    reason: r.reason as string,
    revokedAt: r.revoked_at as string,
  };
}

export function finding(r: Row): Finding {
  return {
    id: r.id as number,
    node: r.node as string,
    kind: r.kind as string,
    severity: r.severity as Severity,
    seqFrom: r.seq_from as number | null,
    seqTo: r.seq_to as number | null,
    explanation: r.explanation as string,
    createdAt: r.created_at as string,
  };
}
