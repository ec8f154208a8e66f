export { openPostgresStorage } from "./postgres.ts";
export { openSqliteStorage } from "./sqlite.ts";
export { DEFAULT_LIMIT, MAX_LIMIT } from "./checks.ts";
export { ForeignRecordError, StorageConflictError, StorageError } from "./types.ts";
export type {
  ConflictCheck, Finding, FindingQuery, IngestRecord, LogHead, NodeClaims, NodeRecord, NodeTouch, Severity, Storage, StorageCheck,
  StoredBundle, StoredRevocation,
} from "./types.ts";
