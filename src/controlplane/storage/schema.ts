/**
 * The schema, one migration per version for each database; a database records the versions
 * applied in `schema_version`, and opening applies the missing ones in order. Never edit a
 * migration that has shipped: add the next one. Both dialects keep the same tables and columns so
 * one set of row mappers serves both.
 *
 * Uniqueness the control plane relies on is the database's job, not the code's: one bundle per
 * (group, revision), one record per (node, seq), and one node per record hash (records_hash: a
 * record's hash covers its request id and time, so the same hash under a second node is a copy of
 * the first node's log). Only the copies stored before that index existed are exempt (`copied`).
 */

export const SCHEMA_VERSION_TABLE_SQLITE =
  "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL) STRICT";

export const SCHEMA_VERSION_TABLE_POSTGRES =
  "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)";

/** Timestamps are TEXT in the one fixed format, so comparing them as strings compares times. */
export const SQLITE_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE bundles (
    group_name    TEXT    NOT NULL,
    revision      INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    etag          TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    not_after     TEXT    NOT NULL,
    grace_seconds INTEGER NOT NULL,
    published_at  TEXT    NOT NULL,
    archive       BLOB    NOT NULL,
    PRIMARY KEY (group_name, revision)
  ) STRICT;

  CREATE TABLE revocations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('spiffe-id', 'serial')),
    value      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    revoked_at TEXT    NOT NULL
  ) STRICT;

  CREATE TABLE nodes (
    id              TEXT    PRIMARY KEY,
    group_name      TEXT    NOT NULL,
    first_seen      TEXT    NOT NULL,
    last_contact    TEXT    NOT NULL,
    bundle_revision INTEGER,
    stage           TEXT,
    log_seq         INTEGER
  ) STRICT;

  CREATE TABLE log_heads (
    node      TEXT    PRIMARY KEY,
    ack_seq   INTEGER NOT NULL,
    ack_hash  TEXT    NOT NULL,
    last_time TEXT
  ) STRICT;

  CREATE TABLE records (
    node TEXT    NOT NULL REFERENCES log_heads (node),
    seq  INTEGER NOT NULL CHECK (seq > 0),
    hash TEXT    NOT NULL,
    prev TEXT    NOT NULL,
    time TEXT    NOT NULL,
    line TEXT    NOT NULL,
    PRIMARY KEY (node, seq)
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE findings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    node        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    severity    TEXT    NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    seq_from    INTEGER,
    seq_to      INTEGER,
    explanation TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
  ) STRICT;
  CREATE INDEX findings_newest ON findings (created_at DESC, id DESC);
  CREATE INDEX findings_node_newest ON findings (node, created_at DESC, id DESC);
  `,
  // 2: what a node reports about itself is its claim; a record is stored under one node only.
  `
  ALTER TABLE nodes RENAME COLUMN bundle_revision TO claimed_bundle_revision;
  ALTER TABLE nodes RENAME COLUMN stage TO claimed_stage;
  ALTER TABLE nodes RENAME COLUMN log_seq TO claimed_log_seq;

  ALTER TABLE records ADD COLUMN copied INTEGER NOT NULL DEFAULT 0 CHECK (copied IN (0, 1));
  CREATE INDEX records_by_hash ON records (hash);
  UPDATE records SET copied = 1
    WHERE EXISTS (SELECT 1 FROM records AS o WHERE o.hash = records.hash AND o.node < records.node);
  ${copiesFound("strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", "1", "0")}
  DROP INDEX records_by_hash;
  CREATE UNIQUE INDEX records_hash ON records (hash) WHERE copied = 0;
  `,
];

/**
 * The findings on the copies a database held before records_hash existed (kept: a record is never deleted), one per
 * node and the node whose records it holds.
 */
function copiesFound(now: string, yes: string, no: string): string {
  return `
  INSERT INTO findings (node, kind, severity, seq_from, seq_to, explanation, created_at)
    SELECT c.node, 'upload-foreign-chain', 'critical', min(c.seq), max(c.seq),
      count(*) || ' records stored before uploads were bound to their node have the hashes of records stored under '
        || o.node || ': one of the two nodes uploaded the other''s log',
      ${now}
    FROM records AS c JOIN records AS o ON o.hash = c.hash AND o.copied = ${no}
    WHERE c.copied = ${yes}
    GROUP BY c.node, o.node;`;
}

export const POSTGRES_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE bundles (
    group_name    text        NOT NULL,
    revision      bigint      NOT NULL,
    name          text        NOT NULL,
    digest        text        NOT NULL,
    etag          text        NOT NULL,
    created_at    timestamptz NOT NULL,
    not_after     timestamptz NOT NULL,
    grace_seconds bigint      NOT NULL,
    published_at  timestamptz NOT NULL,
    archive       bytea       NOT NULL,
    PRIMARY KEY (group_name, revision)
  );

  CREATE TABLE revocations (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text        NOT NULL CHECK (kind IN ('spiffe-id', 'serial')),
    value      text        NOT NULL,
    reason     text        NOT NULL,
    revoked_at timestamptz NOT NULL
  );

  CREATE TABLE nodes (
    id              text        PRIMARY KEY,
    group_name      text        NOT NULL,
    first_seen      timestamptz NOT NULL,
    last_contact    timestamptz NOT NULL,
    bundle_revision bigint,
    stage           text,
    log_seq         bigint
  );

  CREATE TABLE log_heads (
    node      text        PRIMARY KEY,
    ack_seq   bigint      NOT NULL,
    ack_hash  text        NOT NULL,
    last_time timestamptz
  );

  CREATE TABLE records (
    node text        NOT NULL REFERENCES log_heads (node),
    seq  bigint      NOT NULL CHECK (seq > 0),
    hash text        NOT NULL,
    prev text        NOT NULL,
    time timestamptz NOT NULL,
    line text        NOT NULL,
    PRIMARY KEY (node, seq)
  );

  CREATE TABLE findings (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node        text        NOT NULL,
    kind        text        NOT NULL,
    severity    text        NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    seq_from    bigint,
    seq_to      bigint,
    explanation text        NOT NULL,
    created_at  timestamptz NOT NULL
  );
  CREATE INDEX findings_newest ON findings (created_at DESC, id DESC);
  CREATE INDEX findings_node_newest ON findings (node, created_at DESC, id DESC);
  `,
  // 2: what a node reports about itself is its claim; a record is stored under one node only.
  `
  ALTER TABLE nodes RENAME COLUMN bundle_revision TO claimed_bundle_revision;
  ALTER TABLE nodes RENAME COLUMN stage TO claimed_stage;
  ALTER TABLE nodes RENAME COLUMN log_seq TO claimed_log_seq;

  ALTER TABLE records ADD COLUMN copied boolean NOT NULL DEFAULT false;
  CREATE INDEX records_by_hash ON records (hash);
  UPDATE records AS r SET copied = true
    WHERE EXISTS (SELECT 1 FROM records AS o WHERE o.hash = r.hash AND o.node < r.node);
  ${copiesFound("date_trunc('milliseconds', now())", "true", "false")}
  DROP INDEX records_by_hash;
  CREATE UNIQUE INDEX records_hash ON records (hash) WHERE NOT copied;
  `,
];

/** Refuses a database that a newer edgeward migrated: its schema may mean things this one does not know. */
export function newerSchemaProblem(applied: number, known: number): string | null {
  return applied > known
    ? `the database has schema version ${applied}, newer than this edgeward knows (${known}): upgrade edgeward`
    : null;
}
