import { BundleError, sha256Hex, unpackArchive, verifyBundle, type TrustedKeys, type VerifiedBundle } from "../bundle/index.ts";
import { mergePolicySets, parsePolicies, PolicyError } from "../policy/index.ts";
import { ApiError } from "./errors.ts";
import { StorageConflictError, type Storage, type StoredBundle } from "./storage/index.ts";

/** Rollback and reuse are conflicts with the group's history, not defects of the bundle. */
const CONFLICT_CHECKS = new Set(["rollback", "revision-reused"]);

/** RFC 3339 UTC with milliseconds, the one spelling storage keeps. */
export function timestamp(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * A gateway compiles the policy files of every bundle it verifies and refuses the whole bundle on an error; refusing
 * it here keeps a broken bundle from reaching a fleet that would only refuse it.
 */
function compilePolicies(bundle: VerifiedBundle): void {
  const { name, revision } = bundle.manifest;
  try {
    mergePolicySets(bundle.policyFiles.map((f) => parsePolicies(f.text, `${name}@${revision}:${f.path}`)));
  } catch (error) {
    if (error instanceof PolicyError) throw new ApiError(400, "policy", error.message);
    throw error;
  }
}

/**
 * Verifies a bundle for `group` and stores it as the group's newest: signed by a trusted key (the control plane
 * never signs what the release pipeline did not), well-formed, valid now, and a higher revision than the group's
 * latest. The caller serializes publishes per group and wakes the group's long-polls.
 */
export async function publishBundle(storage: Storage, keys: TrustedKeys, group: string, archive: Buffer, nowMs: number): Promise<StoredBundle> {
  const latest = await storage.latestBundle(group);
  let verified: VerifiedBundle;
  try {
    verified = await verifyBundle(unpackArchive(archive), {
      keys,
      nowMs,
      // A null digest makes the same revision count as reused: a group's revisions only move forward.
      active: latest === null ? null : { revision: latest.revision, digest: null },
      requireFresh: true,
    });
  } catch (error) {
    if (error instanceof BundleError) {
      throw new ApiError(CONFLICT_CHECKS.has(error.check) ? 409 : 400, error.check, error.message.replace(/^bundle: /, ""));
    }
    throw error;
  }
  compilePolicies(verified);
  const { manifest } = verified;
  const stored: StoredBundle = {
    group,
    revision: manifest.revision,
    name: manifest.name,
    digest: verified.digest,
    etag: sha256Hex(archive),
    createdAt: timestamp(verified.createdAtMs),
    notAfter: timestamp(verified.notAfterMs),
    graceSeconds: manifest.degradation.graceSeconds,
    publishedAt: timestamp(nowMs),
    archive,
  };
  try {
    await storage.putBundle(stored);
  } catch (error) {
    // Another control plane on the same database published this revision first.
    if (error instanceof StorageConflictError) throw new ApiError(409, "revision-reused", `group ${group} already has revision ${manifest.revision}`);
    throw error;
  }
  return stored;
}
