import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { StatementSync } from "node:sqlite";
import {
  bundleRevisionConflict, checkBundle, checkFinding, checkHeadUnchanged, checkInteger, checkLimit, checkRecords,
  checkRevocation, checkText, checkTouch, headAfter, recordSeqConflict,
} from "./checks.ts";
import * as rows from "./rows.ts";
import { newerSchemaProblem, SCHEMA_VERSION_TABLE_SQLITE, SQLITE_MIGRATIONS } from "./schema.ts";
import { ForeignRecordError, StorageError, type StorageConflictError } from "./types.ts";
import type {
  Finding, FindingQuery, IngestRecord, LogHead, NodeRecord, NodeTouch, Storage, StoredBundle, StoredRevocation,
} from "./types.ts";

type Row = Record<string, unknown>;

/** SQLITE_CONSTRAINT_PRIMARYKEY and SQLITE_CONSTRAINT_UNIQUE (extended result codes). */
const UNIQUE_VIOLATIONS = new Set([1555, 2067]);

function isUniqueViolation(err: unknown): boolean {
  return UNIQUE_VIOLATIONS.has((err as { errcode?: number } | null)?.errcode ?? -1);
}

/** Applies the missing migrations in one write transaction, so a second process opening the file waits rather than races. */
function migrate(db: DatabaseSync): void {
  db.exec("BEGIN IMMEDIATE");
  try {
    db.exec(SCHEMA_VERSION_TABLE_SQLITE);
    const applied = (db.prepare("SELECT coalesce(max(version), 0) AS v FROM schema_version").get() as Row).v as number;
    const problem = newerSchemaProblem(applied, SQLITE_MIGRATIONS.length);
    if (problem !== null) throw new StorageError("schema", problem);
    const record = db.prepare("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)");
    for (let version = applied + 1; version <= SQLITE_MIGRATIONS.length; version++) {
      db.exec(SQLITE_MIGRATIONS[version - 1]!);
      record.run(version, new Date().toISOString());
    }
    db.exec("COMMIT");
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw err;
  }
}

/**
 * Opens (creating it and its directory, 0700, if missing) the SQLite database at `path` and
 * migrates it. WAL with synchronous=FULL: a commit is durable once it returns, which is what an
 * acknowledged upload promises the edge.
 */
export async function openSqliteStorage(path: string): Promise<Storage> {
  // The database holds every node's decision log; its directory also holds the -wal and -shm files.
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new DatabaseSync(path);
  try {
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA foreign_keys = ON");
    // Another process (a CLI, a second control plane) may hold the write lock for a moment.
    db.exec("PRAGMA busy_timeout = 5000");
    migrate(db);
    return new SqliteStorage(db);
  } catch (err) {
    db.close();
    throw err;
  }
}

class SqliteStorage implements Storage {
  readonly #db: DatabaseSync;
  readonly #insertBundle: StatementSync;
  readonly #latestBundle: StatementSync;
  readonly #bundleHistory: StatementSync;
  readonly #bundleGroups: StatementSync;
  readonly #bundleMeta: StatementSync;
  readonly #insertRevocation: StatementSync;
  readonly #revocations: StatementSync;
  readonly #touchNode: StatementSync;
  readonly #node: StatementSync;
  readonly #nodes: StatementSync;
  readonly #head: StatementSync;
  readonly #createHead: StatementSync;
  readonly #moveHead: StatementSync;
  readonly #insertRecord: StatementSync;
  readonly #hashHolder: StatementSync;
  readonly #records: StatementSync;
  readonly #countRecords: StatementSync;
  readonly #insertFinding: StatementSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#insertBundle = db.prepare(`INSERT INTO bundles (${rows.BUNDLE_COLUMNS}, archive) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.#latestBundle = db.prepare(
      `SELECT ${rows.BUNDLE_COLUMNS}, archive FROM bundles WHERE group_name = ? ORDER BY revision DESC LIMIT 1`,
    );
    this.#bundleHistory = db.prepare(
      `SELECT ${rows.BUNDLE_COLUMNS} FROM bundles WHERE group_name = ? ORDER BY revision DESC LIMIT ?`,
    );
    this.#bundleGroups = db.prepare("SELECT DISTINCT group_name FROM bundles ORDER BY group_name");
    this.#bundleMeta = db.prepare(`SELECT ${rows.BUNDLE_COLUMNS} FROM bundles WHERE group_name = ? AND revision = ?`);
    this.#insertRevocation = db.prepare(
      `INSERT INTO revocations (kind, value, reason, revoked_at) VALUES (?, ?, ?, ?) RETURNING ${rows.REVOCATION_COLUMNS}`,
    );
    this.#revocations = db.prepare(`SELECT ${rows.REVOCATION_COLUMNS} FROM revocations ORDER BY revoked_at, id`);
    this.#touchNode = db.prepare(`
      INSERT INTO nodes (${rows.NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET
        first_seen = min(nodes.first_seen, excluded.first_seen),
        last_contact = max(nodes.last_contact, excluded.last_contact),
        group_name = CASE WHEN excluded.last_contact >= nodes.last_contact
          THEN excluded.group_name ELSE nodes.group_name END,
        claimed_bundle_revision = CASE WHEN excluded.last_contact >= nodes.last_contact
          THEN coalesce(excluded.claimed_bundle_revision, nodes.claimed_bundle_revision) ELSE nodes.claimed_bundle_revision END,
        claimed_stage = CASE WHEN excluded.last_contact >= nodes.last_contact
          THEN coalesce(excluded.claimed_stage, nodes.claimed_stage) ELSE nodes.claimed_stage END,
        claimed_log_seq = CASE WHEN excluded.last_contact >= nodes.last_contact
          THEN coalesce(excluded.claimed_log_seq, nodes.claimed_log_seq) ELSE nodes.claimed_log_seq END`);
    this.#node = db.prepare(`SELECT ${rows.NODE_COLUMNS} FROM nodes WHERE id = ?`);
    this.#nodes = db.prepare(`SELECT ${rows.NODE_COLUMNS} FROM nodes ORDER BY id`);
    this.#head = db.prepare("SELECT ack_seq, ack_hash, last_time FROM log_heads WHERE node = ?");
    this.#createHead = db.prepare(
      "INSERT INTO log_heads (node, ack_seq, ack_hash, last_time) VALUES (?, ?, ?, ?) ON CONFLICT (node) DO NOTHING",
    );
    this.#moveHead = db.prepare("UPDATE log_heads SET ack_seq = ?, ack_hash = ?, last_time = ? WHERE node = ?");
    this.#insertRecord = db.prepare(`INSERT INTO records (node, ${rows.RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`);
    this.#hashHolder = db.prepare("SELECT node, seq FROM records WHERE hash = ? AND copied = 0");
    this.#records = db.prepare(`SELECT ${rows.RECORD_COLUMNS} FROM records WHERE node = ? AND seq BETWEEN ? AND ? ORDER BY seq`);
    this.#countRecords = db.prepare("SELECT count(*) AS n FROM records WHERE node = ?");
    this.#insertFinding = db.prepare(
      `INSERT INTO findings (node, kind, severity, seq_from, seq_to, explanation, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING ${rows.FINDING_COLUMNS}`,
    );
  }

  /** Every write takes the write lock up front (BEGIN IMMEDIATE), so a transaction never fails half-way on a lock upgrade. */
  #write<T>(work: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const result = work();
      this.#db.exec("COMMIT");
      return result;
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  async putBundle(b: StoredBundle): Promise<void> {
    checkBundle(b);
    this.#write(() => {
      try {
        this.#insertBundle.run(
          b.group, b.revision, b.name, b.digest, b.etag, b.createdAt, b.notAfter, b.graceSeconds, b.publishedAt, b.archive,
        );
      } catch (err) {
        throw isUniqueViolation(err) ? bundleRevisionConflict(b) : err;
      }
    });
  }

  async latestBundle(group: string): Promise<StoredBundle | null> {
    const row = this.#latestBundle.get(checkText("group", group)) as Row | undefined;
    return row === undefined ? null : rows.bundle(row);
  }

  async bundleHistory(group: string, limit: number): Promise<Omit<StoredBundle, "archive">[]> {
    return (this.#bundleHistory.all(checkText("group", group), checkLimit(limit)) as Row[]).map(rows.bundleMeta);
  }

  async bundleGroups(): Promise<string[]> {
    return (this.#bundleGroups.all() as Row[]).map((r) => r.group_name as string);
  }

  async bundleMeta(group: string, revision: number): Promise<Omit<StoredBundle, "archive"> | null> {
    const row = this.#bundleMeta.get(checkText("group", group), checkInteger("revision", revision)) as Row | undefined;
    return row === undefined ? null : rows.bundleMeta(row);
  }

  async addRevocation(r: Omit<StoredRevocation, "id">): Promise<StoredRevocation> {
    checkRevocation(r);
    return rows.revocation(this.#write(() => this.#insertRevocation.get(r.kind, r.value, r.reason, r.revokedAt) as Row));
  }

  async listRevocations(): Promise<StoredRevocation[]> {
    return (this.#revocations.all() as Row[]).map(rows.revocation);
  }

  async touchNode(n: NodeTouch): Promise<void> {
    checkTouch(n);
    this.#write(() => {
      const c = n.claimed;
      this.#touchNode.run(n.id, n.group, n.at, n.at, c?.bundleRevision ?? null, c?.stage ?? null, c?.logSeq ?? null);
    });
  }

  async getNode(id: string): Promise<NodeRecord | null> {
    const row = this.#node.get(checkText("node id", id)) as Row | undefined;
    return row === undefined ? null : rows.node(row);
  }

  async listNodes(): Promise<NodeRecord[]> {
    return (this.#nodes.all() as Row[]).map(rows.node);
  }

  async logHead(node: string): Promise<LogHead> {
    return rows.head(this.#head.get(checkText("node", node)) as Row | undefined);
  }

  async getRecords(node: string, fromSeq: number, toSeq: number): Promise<IngestRecord[]> {
    const from = checkInteger("fromSeq", fromSeq);
    const to = checkInteger("toSeq", toSeq);
    return (this.#records.all(checkText("node", node), from, to) as Row[]).map(rows.record);
  }

  async appendRecords(node: string, expected: LogHead, records: IngestRecord[]): Promise<LogHead> {
    checkText("node", node);
    checkRecords(records);
    return this.#write(() => {
      const current = rows.head(this.#head.get(node) as Row | undefined);
      checkHeadUnchanged(node, current, expected);
      if (records.length === 0) return current;
      this.#createHead.run(node, current.ackSeq, current.ackHash, current.lastTime);
      for (const r of records) {
        try {
          this.#insertRecord.run(node, r.seq, r.hash, r.prev, r.time, r.line);
        } catch (err) {
          throw isUniqueViolation(err) ? this.#conflict(node, r, records) : err;
        }
      }
      const next = headAfter(current, records);
      this.#moveHead.run(next.ackSeq, next.ackHash, next.lastTime, node);
      return next;
    });
  }

  /** Which constraint `record` broke: its hash under another node (a copy), or a seq stored twice. */
  #conflict(node: string, record: IngestRecord, records: IngestRecord[]): StorageConflictError {
    const holder = this.#hashHolder.get(record.hash) as Row | undefined;
    return holder !== undefined && holder.node !== node
      ? new ForeignRecordError(node, record.seq, holder.node as string, holder.seq as number)
      : recordSeqConflict(node, records);
  }

  async countRecords(node: string): Promise<number> {
    return (this.#countRecords.get(checkText("node", node)) as Row).n as number;
  }

  async addFindings(findings: Omit<Finding, "id">[]): Promise<Finding[]> {
    findings.forEach(checkFinding);
    if (findings.length === 0) return [];
    return this.#write(() =>
      findings.map((f) =>
        rows.finding(this.#insertFinding.get(f.node, f.kind, f.severity, f.seqFrom, f.seqTo, f.explanation, f.createdAt) as Row)),
    );
  }

  async listFindings(q: FindingQuery): Promise<Finding[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    for (const [column, value] of [["node", q.node], ["severity", q.severity], ["kind", q.kind]] as const) {
      if (value === undefined) continue;
      where.push(`${column} = ?`);
      params.push(checkText(column, value));
    }
    params.push(checkLimit(q.limit));
    const sql = `SELECT ${rows.FINDING_COLUMNS} FROM findings
      ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY created_at DESC, id DESC LIMIT ?`;
    return (this.#db.prepare(sql).all(...params) as Row[]).map(rows.finding);
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}
