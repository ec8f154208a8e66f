export { loadControlPlaneConfig, parseControlPlaneConfig, type ControlPlaneConfig, type ControlPlaneConfigInput, type StorageConfig } from "./config.ts";
export { ControlPlane, MAX_BUNDLE_BYTES, type ControlPlaneOptions } from "./server.ts";
export { LogIngestion, MAX_INFLATED_BYTES, MAX_UPLOAD_BYTES, type UploadResult } from "./ingestion.ts";
export { MAX_WAIT_SECONDS } from "./request.ts";
export { ApiError } from "./errors.ts";
export { analyze, claimFindings, refusalFinding, type AnalysisInput, type ClaimInput, type NewFinding } from "./analysis.ts";
export {
  BatchChecker, checkBatch, MAX_BATCH_LINES, overlap, planIngest, splitBatch, toIngestRecord,
  type CheckedBatch, type CheckedRecord, type IngestPlan, type IngestRefusal, type RefusalCode,
} from "./ingest.ts";
export { LongPoll, type WaitOutcome } from "./long-poll.ts";
export { mergeRevocations, parseRevocationRequest, revocationRevision, type RevocationRequest } from "./revocation.ts";
export { OPENAPI_DOCUMENT } from "./openapi.ts";
