/** A bundle as the release pipeline signed it, kept per node group; `archive` is the .tar.gz exactly as pushed. */
export interface StoredBundle {
  group: string;
  revision: number;
  name: string;
  digest: string;
  etag: string;
  createdAt: string;
  notAfter: string;
  graceSeconds: number;
  publishedAt: string;
  archive: Buffer;
}

/**
 * What a node says about itself in the x-edgeward-* headers of its calls. Nothing vouches for it: it is kept as the
 * node's claim, beside what the centre knows, and checked against it (see analysis.ts, claimFindings).
 */
export interface NodeClaims {
  bundleRevision: number | null;
  stage: string | null;
  logSeq: number | null;
}

/** An edge node as the control plane last saw it; `id` is its SPIFFE ID (from its verified SVID). */
export interface NodeRecord {
  id: string;
  group: string;
  firstSeen: string;
  lastContact: string;
  /** As of its latest contact; a claim absent from a call keeps its earlier value. */
  claimed: NodeClaims;
}

/** The last acknowledged record of a node's decision log; `lastTime` is the latest record time ever ingested. */
export interface LogHead {
  ackSeq: number;
  ackHash: string;
  lastTime: string | null;
}

export interface StoredRevocation {
  id: number;
  kind: "spiffe-id" | "serial";
  value: string;
  reason: string;
  revokedAt: string;
}

export type Severity = "low" | "medium" | "high" | "critical";

export interface Finding {
  id: number;
  node: string;
  kind: string;
  severity: Severity;
  seqFrom: number | null;
  seqTo: number | null;
  explanation: string;
  createdAt: string;
}

/** One decision-log line as uploaded, with the fields the store indexes. */
export interface IngestRecord {
  seq: number;
  hash: string;
  prev: string;
  time: string;
  line: string;
}

export interface FindingQuery {
  node?: string;
  severity?: string;
  kind?: string;
  /** Default 100; larger than 1000 is clamped to 1000. */
  limit?: number;
}

export interface NodeTouch {
  id: string;
  group: string;
  at: string;
  /** What the call claimed; absent ones keep their earlier value. */
  claimed?: { bundleRevision?: number; stage?: string; logSeq?: number };
}

/**
 * The control plane's state. Every timestamp in and out is RFC 3339 UTC with milliseconds
 * ("2026-01-01T00:00:00.000Z"); anything else is refused, so both implementations return exactly
 * what they were given.
 */
export interface Storage {
  /** StorageConflictError ("bundle-revision") when the group already has this revision. */
  putBundle(b: StoredBundle): Promise<void>;
  latestBundle(group: string): Promise<StoredBundle | null>;
  /** Newest first; `limit` as for findings. */
  bundleHistory(group: string, limit: number): Promise<Omit<StoredBundle, "archive">[]>;
  /** Groups that have at least one bundle, sorted. */
  bundleGroups(): Promise<string[]>;
  /** The group's bundle of that revision, without its archive; null when the group has none. */
  bundleMeta(group: string, revision: number): Promise<Omit<StoredBundle, "archive"> | null>;
  addRevocation(r: Omit<StoredRevocation, "id">): Promise<StoredRevocation>;
  /** Oldest first. */
  listRevocations(): Promise<StoredRevocation[]>;
  /**
   * Records a contact: creates the node (firstSeen = at) or updates it. Requests of one node may
   * finish out of order, so the node keeps the state of its latest contact: a touch older than
   * lastContact changes nothing (but an earlier firstSeen), and absent optional fields keep their value.
   */
  touchNode(n: NodeTouch): Promise<void>;
  getNode(id: string): Promise<NodeRecord | null>;
  /** Sorted by id. */
  listNodes(): Promise<NodeRecord[]>;
  /** `{ ackSeq: 0, ackHash: GENESIS_HASH, lastTime: null }` for a node that never uploaded. */
  logHead(node: string): Promise<LogHead>;
  /** Stored records with fromSeq ≤ seq ≤ toSeq, by seq. */
  getRecords(node: string, fromSeq: number, toSeq: number): Promise<IngestRecord[]>;
  /**
   * In ONE transaction: re-reads the head and throws StorageConflictError ("head") unless it still
   * equals `expected` (two uploads racing), inserts the records (StorageConflictError "record-seq"
   * if one's seq is already stored; ForeignRecordError "record-hash" if one's hash is stored under
   * another node — a copy of that node's log; then nothing is stored), and moves the head to the
   * last record, with lastTime the latest of the previous lastTime and the records' times. The
   * caller has verified that the records continue `expected`.
   */
  appendRecords(node: string, expected: LogHead, records: IngestRecord[]): Promise<LogHead>;
  countRecords(node: string): Promise<number>;
  /** Returns them with their ids, in the order given. */
  addFindings(f: Omit<Finding, "id">[]): Promise<Finding[]>;
  /** Newest first (createdAt, then id). */
  listFindings(q: FindingQuery): Promise<Finding[]>;
  close(): Promise<void>;
}

/** What a storage call was refused for; stable slugs. */
export type StorageCheck =
  | "input" // a value the schema cannot hold as given (timestamp format, limit, severity, revocation kind, a NUL character)
  | "schema" // the database was migrated by a newer edgeward
  | ConflictCheck;

export type ConflictCheck =
  | "head" // appendRecords: the log head moved since the caller read it (another upload won)
  | "record-seq" // appendRecords: a record with that seq is already stored for the node
  | "record-hash" // appendRecords: a record with that hash is stored under another node (ForeignRecordError)
  | "bundle-revision"; // putBundle: the group already has that revision

/** A storage call was refused; `check` names why. Database and I/O failures pass through as they are. */
export class StorageError extends Error {
  readonly check: StorageCheck;
  constructor(check: StorageCheck, message: string) {
    super(`storage: ${message}`);
    this.name = "StorageError";
    this.check = check;
  }
}

/** A write lost to a unique constraint or to a concurrent writer; nothing of it was stored. */
export class StorageConflictError extends StorageError {
  declare readonly check: ConflictCheck;
  constructor(check: ConflictCheck, message: string) {
    super(check, message);
    this.name = "StorageConflictError";
  }
}

/**
 * appendRecords refused a record whose hash is already stored under another node. A record's hash covers its request
 * id (a UUID) and its time, so two nodes never write the same one: the batch holds a copy of the holder's log.
 */
export class ForeignRecordError extends StorageConflictError {
  declare readonly check: "record-hash";
  /** The refused record's seq in the uploading node's batch. */
  readonly seq: number;
  /** The node it is stored under, and its seq there. */
  readonly holder: string;
  readonly holderSeq: number;
  constructor(node: string, seq: number, holder: string, holderSeq: number) {
    super("record-hash", `record seq ${seq} of ${node} is stored under ${holder} as its seq ${holderSeq}: the batch holds another node's records; nothing of it was stored`);
    this.name = "ForeignRecordError";
    this.seq = seq;
    this.holder = holder;
    this.holderSeq = holderSeq;
  }
}
