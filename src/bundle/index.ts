export { BundleError, type BundleCheck } from "./errors.ts";
export {
  API_VERSION,
  bundlePathProblem,
  formatTimestamp,
  isPolicyFile,
  KIND,
  MANIFEST_FILE,
  parseManifest,
  parseTimestamp,
  REVOCATIONS_FILE,
  sha256Hex,
  SIGNATURE_FILE,
  type BundleFiles,
  type BundleManifest,
} from "./manifest.ts";
export { generateSigningKey, keyId, parsePrivateKey, parsePublicKey, trustedKeys, type SigningKey, type TrustedKey, type TrustedKeys } from "./keys.ts";
export { readPublicKey, readSigningKey, writeSigningKey } from "./key-files.ts";
export { MAX_ARCHIVE_BYTES, MAX_ENTRIES, MAX_FILE_BYTES, MAX_TAR_BYTES, packArchive, unpackArchive } from "./archive.ts";
export { normalizeSerial, RevocationList, type Revocation } from "./revocations.ts";
export { buildBundle, type BuildOptions } from "./build.ts";
export { readSignatures, verifyBundle, type SignatureEntry, type VerifiedBundle, type VerifyOptions } from "./verify.ts";
export { readBundleFiles, readPolicyDirectory } from "./read.ts";
export { nextStageChangeMs, STAGES, stageAt, type LadderWindow, type Stage } from "./ladder.ts";
export { INITIAL_CLOCK, observeClock, raiseHighWater, type ClockState } from "./clock.ts";
export { BundleManager, type BundleManagerOptions, type BundleStatus, type OfferOptions, type OfferResult, type PersistedState } from "./manager.ts";
export { BUNDLE_FILE, BundleStore, STATE_FILE, type StoreLoad } from "./store.ts";
