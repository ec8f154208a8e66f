import {
  buildBundle,
  formatTimestamp,
  MANIFEST_FILE,
  normalizeSerial,
  parseManifest,
  parseTimestamp,
  REVOCATIONS_FILE,
  SIGNATURE_FILE,
  unpackArchive,
  type SigningKey,
} from "../bundle/index.ts";
import { parseSpiffeId, SpiffeIdError } from "../identity/index.ts";
import { ApiError } from "./errors.ts";
import type { StoredBundle, StoredRevocation } from "./storage/index.ts";

export type RevocationRequest = Pick<StoredRevocation, "kind" | "value" | "reason">;

/** A reason is a sentence for the audit trail, not a document. */
export const MAX_REASON_BYTES = 1024;
const SERIAL = /^(?:[0-9a-fA-F]{1,64}|[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){0,31})$/;

function bad(message: string): ApiError {
  return new ApiError(400, "bad_request", message);
}

/** `{"spiffeId"} | {"serial"}` plus `"reason"`: exactly one subject, a SPIFFE ID that parses or a hex serial. */
export function parseRevocationRequest(body: unknown): RevocationRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw bad("expected a JSON object");
  const { spiffeId, serial, reason, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) throw bad(`unknown field(s) ${unknown.map((k) => JSON.stringify(k.slice(0, 64))).join(", ")}`);
  if (typeof reason !== "string" || reason.trim() === "") throw bad("reason is required (a non-empty string)");
  if (Buffer.byteLength(reason) > MAX_REASON_BYTES) throw bad(`reason is longer than ${MAX_REASON_BYTES} bytes`);
  if ((spiffeId === undefined) === (serial === undefined)) throw bad("give exactly one of spiffeId and serial");
  if (spiffeId !== undefined) {
    if (typeof spiffeId !== "string") throw bad("spiffeId must be a string");
    try {
      return { kind: "spiffe-id", value: parseSpiffeId(spiffeId).uri, reason };
    } catch (error) {
      if (error instanceof SpiffeIdError) throw bad(`spiffeId: ${error.message}`);
      throw error;
    }
  }
  if (typeof serial !== "string" || !SERIAL.test(serial)) throw bad("serial must be hex, optionally colon-separated octets");
  return { kind: "serial", value: normalizeSerial(serial), reason };
}

interface ListEntry {
  key: string;
  revokedAt: string;
}

/**
 * revocations.json for a new revision: what the bundle already revoked (the release pipeline's own list is never
 * dropped) and every revocation the control plane recorded, each once, at its earliest time, in whole seconds.
 */
export function mergeRevocations(existing: Uint8Array | undefined, recorded: readonly StoredRevocation[]): string {
  const ids = new Map<string, ListEntry>();
  const serials = new Map<string, ListEntry>();
  const add = (map: Map<string, ListEntry>, key: string, revokedAtMs: number) => {
    const at = formatTimestamp(revokedAtMs);
    const earlier = map.get(key);
    if (earlier === undefined || at < earlier.revokedAt) map.set(key, { key, revokedAt: at });
  };
  if (existing !== undefined) {
    // The list was verified with the bundle it came in, so its shape is known.
    const list = JSON.parse(Buffer.from(existing).toString("utf8")) as { spiffeIds?: { id: string; revokedAt: string }[]; serials?: { serial: string; revokedAt: string }[] };
    for (const e of list.spiffeIds ?? []) add(ids, e.id, parseTimestamp(e.revokedAt)!);
    for (const e of list.serials ?? []) add(serials, normalizeSerial(e.serial), parseTimestamp(e.revokedAt)!);
  }
  for (const r of recorded) add(r.kind === "spiffe-id" ? ids : serials, r.value, Date.parse(r.revokedAt));
  const sorted = (map: Map<string, ListEntry>) => [...map.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  return `${JSON.stringify({
    spiffeIds: sorted(ids).map((e) => ({ id: e.key, revokedAt: e.revokedAt })),
    serials: sorted(serials).map((e) => ({ serial: e.key, revokedAt: e.revokedAt })),
  }, null, 2)}\n`;
}

/**
 * The revision a revocation triggers for a group: the latest bundle's policy files unchanged, its name and ladder,
 * revision + 1, the merged revocation list, signed with the release key. Valid for `validForSeconds`, or as long as
 * the bundle it extends was.
 */
export async function revocationRevision(latest: StoredBundle, recorded: readonly StoredRevocation[], releaseKey: SigningKey, nowMs: number, validForSeconds: number | null): Promise<Buffer> {
  const files = new Map(unpackArchive(latest.archive));
  const manifest = parseManifest(files.get(MANIFEST_FILE)!);
  const revocations = mergeRevocations(files.get(REVOCATIONS_FILE), recorded);
  files.delete(MANIFEST_FILE);
  files.delete(SIGNATURE_FILE);
  files.set(REVOCATIONS_FILE, Buffer.from(revocations));
  const window = (parseTimestamp(manifest.notAfter)! - parseTimestamp(manifest.notBefore)!) / 1000;
  const built = await buildBundle({
    files,
    name: manifest.name,
    revision: manifest.revision + 1,
    nowMs,
    validForSeconds: validForSeconds ?? Math.max(1, window),
    graceSeconds: manifest.degradation.graceSeconds,
    restrictedSeconds: manifest.degradation.restrictedSeconds,
    keys: [releaseKey],
  });
  return built.archive;
}
