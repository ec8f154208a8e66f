// The node's duties around its gateway: keeping the signed policy bundle current, and uploading the decision log.
// The gateway loads each file only when its config asks for it, so that a node that does not use one keeps it out
// of memory; this index is for everything else.
export { BundleSync, type BundleSyncOptions } from "./bundle-sync.ts";
export { LogUploader } from "./log-upload.ts";
export { CursorStore, type UploadCursor } from "./upload-cursor.ts";
