import pg from "pg";
import {
  bundleRevisionConflict, checkBundle, checkFinding, checkHeadUnchanged, checkInteger, checkLimit, checkRecords,
  checkRevocation, checkText, checkTouch, headAfter, recordSeqConflict,
} from "./checks.ts";
import * as rows from "./rows.ts";
import { newerSchemaProblem, POSTGRES_MIGRATIONS, SCHEMA_VERSION_TABLE_POSTGRES } from "./schema.ts";
import { ForeignRecordError, StorageError, type StorageConflictError } from "./types.ts";
import type {
  Finding, FindingQuery, IngestRecord, LogHead, NodeRecord, NodeTouch, Storage, StoredBundle, StoredRevocation,
} from "./types.ts";

type Row = Record<string, unknown>;

const UNIQUE_VIOLATION = "23505";
const POOL_SIZE = 10;
/** Serializes migrations of concurrently starting control planes ("edgeward" in ASCII). */
const MIGRATION_LOCK = "7306078180994019940";

const parseTimestamptz = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ) as (value: string) => Date;

function parseInt8(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`storage: bigint ${value} does not fit a JavaScript number`);
  return n;
}

/**
 * This pool's parsers (the global ones stay untouched): bigint as a number (every bigint here is
 * a seq, a revision or a count, far below 2^53) and timestamptz as the RFC 3339 string the rest
 * of the control plane uses — the same shapes SQLite returns, so one set of row mappers serves both.
 */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((id: number, format?: "text" | "binary") => {
    if (id === pg.types.builtins.INT8) return parseInt8;
    if (id === pg.types.builtins.TIMESTAMPTZ) return (value: string) => parseTimestamptz(value).toISOString();
    return pg.types.getTypeParser(id, format);
  }) as typeof pg.types.getTypeParser,
};

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === UNIQUE_VIOLATION;
}

/** The unique index on record hashes (schema.ts): a record stored under one node only. */
function isHashViolation(err: unknown): boolean {
  return isUniqueViolation(err) && (err as { constraint?: unknown }).constraint === "records_hash";
}

/** Runs `work` in a transaction on one dedicated connection; a connection that cannot even roll back is discarded. */
async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch((rollbackError: Error) => {
      broken = rollbackError;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

async function migrate(pool: pg.Pool): Promise<void> {
  await inTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await client.query(SCHEMA_VERSION_TABLE_POSTGRES);
    const applied = (await client.query("SELECT coalesce(max(version), 0) AS v FROM schema_version")).rows[0].v as number;
    const problem = newerSchemaProblem(applied, POSTGRES_MIGRATIONS.length);
    if (problem !== null) throw new StorageError("schema", problem);
    for (let version = applied + 1; version <= POSTGRES_MIGRATIONS.length; version++) {
      await client.query(POSTGRES_MIGRATIONS[version - 1]!);
      await client.query("INSERT INTO schema_version (version, applied_at) VALUES ($1, now())", [version]);
    }
  });
}

/** Connects a pool (at most 10 connections) to the database at `url` and migrates it in one transaction. */
export async function openPostgresStorage(url: string): Promise<Storage> {
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, types: TYPES });
  // An idle connection that drops (server restart) is removed by the pool; without a listener its
  // error would crash the process. A lasting outage surfaces as the error of the next query.
  pool.on("error", () => {});
  try {
    await migrate(pool);
  } catch (err) {
    await pool.end();
    throw err;
  }
  return new PostgresStorage(pool);
}

class PostgresStorage implements Storage {
  readonly #pool: pg.Pool;
  #closed: Promise<void> | null = null;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async #rows(sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await this.#pool.query(sql, params)).rows as Row[];
  }

  async putBundle(b: StoredBundle): Promise<void> {
    checkBundle(b);
    try {
      await this.#pool.query(
        `INSERT INTO bundles (${rows.BUNDLE_COLUMNS}, archive) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [b.group, b.revision, b.name, b.digest, b.etag, b.createdAt, b.notAfter, b.graceSeconds, b.publishedAt, b.archive],
      );
    } catch (err) {
      throw isUniqueViolation(err) ? bundleRevisionConflict(b) : err;
    }
  }

  async latestBundle(group: string): Promise<StoredBundle | null> {
    const [row] = await this.#rows(
      `SELECT ${rows.BUNDLE_COLUMNS}, archive FROM bundles WHERE group_name = $1 ORDER BY revision DESC LIMIT 1`,
      [checkText("group", group)],
    );
    return row === undefined ? null : rows.bundle(row);
  }

  async bundleHistory(group: string, limit: number): Promise<Omit<StoredBundle, "archive">[]> {
    const found = await this.#rows(
      `SELECT ${rows.BUNDLE_COLUMNS} FROM bundles WHERE group_name = $1 ORDER BY revision DESC LIMIT $2`,
      [checkText("group", group), checkLimit(limit)],
    );
    return found.map(rows.bundleMeta);
  }

  async bundleGroups(): Promise<string[]> {
    return (await this.#rows("SELECT DISTINCT group_name FROM bundles ORDER BY group_name")).map((r) => r.group_name as string);
  }

  async bundleMeta(group: string, revision: number): Promise<Omit<StoredBundle, "archive"> | null> {
    const [row] = await this.#rows(
      `SELECT ${rows.BUNDLE_COLUMNS} FROM bundles WHERE group_name = $1 AND revision = $2`,
      [checkText("group", group), checkInteger("revision", revision)],
    );
    return row === undefined ? null : rows.bundleMeta(row);
  }

  async addRevocation(r: Omit<StoredRevocation, "id">): Promise<StoredRevocation> {
    checkRevocation(r);
    const [row] = await this.#rows(
      `INSERT INTO revocations (kind, value, reason, revoked_at) VALUES ($1, $2, $3, $4) RETURNING ${rows.REVOCATION_COLUMNS}`,
      [r.kind, r.value, r.reason, r.revokedAt],
    );
    return rows.revocation(row!);
  }

  async listRevocations(): Promise<StoredRevocation[]> {
    return (await this.#rows(`SELECT ${rows.REVOCATION_COLUMNS} FROM revocations ORDER BY revoked_at, id`)).map(rows.revocation);
  }

  async touchNode(n: NodeTouch): Promise<void> {
    checkTouch(n);
    await this.#pool.query(
      `INSERT INTO nodes (${rows.NODE_COLUMNS}) VALUES ($1, $2, $3, $3, $4, $5, $6)
       ON CONFLICT (id) DO UPDATE SET
         first_seen = least(nodes.first_seen, excluded.first_seen),
         last_contact = greatest(nodes.last_contact, excluded.last_contact),
         group_name = CASE WHEN excluded.last_contact >= nodes.last_contact
           THEN excluded.group_name ELSE nodes.group_name END,
         claimed_bundle_revision = CASE WHEN excluded.last_contact >= nodes.last_contact
           THEN coalesce(excluded.claimed_bundle_revision, nodes.claimed_bundle_revision) ELSE nodes.claimed_bundle_revision END,
         claimed_stage = CASE WHEN excluded.last_contact >= nodes.last_contact
           THEN coalesce(excluded.claimed_stage, nodes.claimed_stage) ELSE nodes.claimed_stage END,
         claimed_log_seq = CASE WHEN excluded.last_contact >= nodes.last_contact
           THEN coalesce(excluded.claimed_log_seq, nodes.claimed_log_seq) ELSE nodes.claimed_log_seq END`,
      [n.id, n.group, n.at, n.claimed?.bundleRevision ?? null, n.claimed?.stage ?? null, n.claimed?.logSeq ?? null],
    );
  }

  async getNode(id: string): Promise<NodeRecord | null> {
    const [row] = await this.#rows(`SELECT ${rows.NODE_COLUMNS} FROM nodes WHERE id = $1`, [checkText("node id", id)]);
    return row === undefined ? null : rows.node(row);
  }

  async listNodes(): Promise<NodeRecord[]> {
    return (await this.#rows(`SELECT ${rows.NODE_COLUMNS} FROM nodes ORDER BY id`)).map(rows.node);
  }

  async logHead(node: string): Promise<LogHead> {
    const [row] = await this.#rows("SELECT ack_seq, ack_hash, last_time FROM log_heads WHERE node = $1", [checkText("node", node)]);
    return rows.head(row);
  }

  async getRecords(node: string, fromSeq: number, toSeq: number): Promise<IngestRecord[]> {
    const found = await this.#rows(
      `SELECT ${rows.RECORD_COLUMNS} FROM records WHERE node = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq`,
      [checkText("node", node), checkInteger("fromSeq", fromSeq), checkInteger("toSeq", toSeq)],
    );
    return found.map(rows.record);
  }

  /**
   * The head row is locked (FOR UPDATE) before it is compared, so a racing upload waits and then
   * sees the moved head. A node's first upload creates the row first: a concurrent first upload
   * blocks on that insert until this transaction ends, then finds the row and locks it in turn.
   * Two nodes storing the same record race on records_hash the same way: the second waits for the
   * first to commit, then breaks the index and stores nothing.
   */
  async appendRecords(node: string, expected: LogHead, records: IngestRecord[]): Promise<LogHead> {
    checkText("node", node);
    checkRecords(records);
    if (records.length === 0) {
      const current = await this.logHead(node);
      checkHeadUnchanged(node, current, expected);
      return current;
    }
    try {
      return await this.#append(node, expected, records);
    } catch (err) {
      // The failed transaction can no longer be read in; the record it collided with is committed, so it is found after.
      throw isHashViolation(err) ? await this.#hashConflict(node, records) : err;
    }
  }

  /** The first record of the batch whose hash another node holds, as a ForeignRecordError. */
  async #hashConflict(node: string, records: IngestRecord[]): Promise<StorageConflictError> {
    const held = await this.#rows(
      "SELECT node, seq, hash FROM records WHERE hash = ANY($1::text[]) AND NOT copied AND node <> $2",
      [records.map((r) => r.hash), node],
    );
    const holders = new Map(held.map((h) => [h.hash as string, h]));
    const copied = records.find((r) => holders.has(r.hash));
    if (copied === undefined) return recordSeqConflict(node, records);
    const holder = holders.get(copied.hash)!;
    return new ForeignRecordError(node, copied.seq, holder.node as string, holder.seq as number);
  }

  async #append(node: string, expected: LogHead, records: IngestRecord[]): Promise<LogHead> {
    return inTransaction(this.#pool, async (client) => {
      await client.query(
        "INSERT INTO log_heads (node, ack_seq, ack_hash, last_time) VALUES ($1, $2, $3, NULL) ON CONFLICT (node) DO NOTHING",
        [node, rows.EMPTY_HEAD.ackSeq, rows.EMPTY_HEAD.ackHash],
      );
      const locked = await client.query("SELECT ack_seq, ack_hash, last_time FROM log_heads WHERE node = $1 FOR UPDATE", [node]);
      const current = rows.head(locked.rows[0] as Row | undefined);
      checkHeadUnchanged(node, current, expected);
      try {
        // One statement for the whole batch (up to 10,000 records), not one round trip per record.
        await client.query(
          `INSERT INTO records (node, ${rows.RECORD_COLUMNS})
           SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])`,
          [node, records.map((r) => r.seq), records.map((r) => r.hash), records.map((r) => r.prev),
            records.map((r) => r.time), records.map((r) => r.line)],
        );
      } catch (err) {
        throw isUniqueViolation(err) && !isHashViolation(err) ? recordSeqConflict(node, records) : err;
      }
      const next = headAfter(current, records);
      await client.query(
        "UPDATE log_heads SET ack_seq = $2, ack_hash = $3, last_time = $4 WHERE node = $1",
        [node, next.ackSeq, next.ackHash, next.lastTime],
      );
      return next;
    });
  }

  async countRecords(node: string): Promise<number> {
    const [row] = await this.#rows("SELECT count(*) AS n FROM records WHERE node = $1", [checkText("node", node)]);
    return row!.n as number;
  }

  async addFindings(findings: Omit<Finding, "id">[]): Promise<Finding[]> {
    findings.forEach(checkFinding);
    if (findings.length === 0) return [];
    return inTransaction(this.#pool, async (client) => {
      const added: Finding[] = [];
      for (const f of findings) {
        const { rows: [row] } = await client.query(
          `INSERT INTO findings (node, kind, severity, seq_from, seq_to, explanation, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${rows.FINDING_COLUMNS}`,
          [f.node, f.kind, f.severity, f.seqFrom, f.seqTo, f.explanation, f.createdAt],
        );
        added.push(rows.finding(row as Row));
      }
      return added;
    });
  }

  async listFindings(q: FindingQuery): Promise<Finding[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    for (const [column, value] of [["node", q.node], ["severity", q.severity], ["kind", q.kind]] as const) {
      if (value === undefined) continue;
      params.push(checkText(column, value));
      where.push(`${column} = $${params.length}`);
    }
    params.push(checkLimit(q.limit));
    const sql = `SELECT ${rows.FINDING_COLUMNS} FROM findings
      ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY created_at DESC, id DESC LIMIT $${params.length}`;
    return (await this.#rows(sql, params)).map(rows.finding);
  }

  async close(): Promise<void> {
    this.#closed ??= this.#pool.end();
    await this.#closed;
  }
}
