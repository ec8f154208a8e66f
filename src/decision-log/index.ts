export { GENESIS_HASH, MAX_RECORD_BYTES, sealRecord, serializeRecord, verifyRecords } from "./chain.ts";
export type { DecisionEntry, DecisionRecord, LogAnchor, VerifyCheck, VerifyResult } from "./chain.ts";
export { anchorPath } from "./anchor.ts";
export { DecisionLog, verifyLogFile } from "./decision-log.ts";
export type { DecisionLogHealth, DecisionLogOptions, DecisionLogStats } from "./decision-log.ts";
export type { RecordBatch } from "./log-reader.ts";
export { DecisionLogError } from "./errors.ts";
