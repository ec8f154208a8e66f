import { z } from "zod";
import { parseSpiffeId, SpiffeIdError } from "../identity/index.ts";
import { BundleError } from "./errors.ts";
import { parseTimestamp } from "./manifest.ts";

/** Hex, optionally in colon-separated octets as openssl prints it; 64 digits is twice what RFC 5280 allows. */
const SERIAL = /^(?:[0-9a-fA-F]{1,64}|[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){0,31})$/;

/** A certificate serial number in one spelling: lowercase hex, no colons, no leading zeros ("0" for zero). */
export function normalizeSerial(hex: string): string {
  return hex.replaceAll(":", "").toLowerCase().replace(/^0+(?=.)/, "");
}

const revokedAt = z.string().refine((s) => parseTimestamp(s) !== null, {
  message: "must be an RFC 3339 UTC time in whole seconds, e.g. 2026-11-23T00:00:00Z",
});
const schema = z.strictObject({
  spiffeIds: z.array(z.strictObject({ id: z.string(), revokedAt })).default([]),
  serials: z.array(z.strictObject({ serial: z.string().regex(SERIAL, "must be hex (optionally colon-separated octets)"), revokedAt })).default([]),
});

export interface Revocation {
  kind: "spiffe-id" | "serial";
  revokedAt: string;
}

function malformed(message: string): BundleError {
  return new BundleError("malformed-revocations", `revocations.json: ${message}`);
}

/** The SPIFFE IDs and certificate serials a bundle revokes. */
export class RevocationList {
  static readonly EMPTY: RevocationList = new RevocationList(new Map(), new Map());

  readonly #spiffeIds: ReadonlyMap<string, Revocation>;
  readonly #serials: ReadonlyMap<string, Revocation>;

  private constructor(spiffeIds: ReadonlyMap<string, Revocation>, serials: ReadonlyMap<string, Revocation>) {
    this.#spiffeIds = spiffeIds;
    this.#serials = serials;
  }

  /** Parses revocations.json; an entry listed twice is refused, as is anything outside the schema. */
  static parse(text: string): RevocationList {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw malformed(`not JSON (${(error as Error).message})`);
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw malformed(`${issue.path.length === 0 ? "" : `${issue.path.join(".")}: `}${issue.message}`);
    }
    const spiffeIds = new Map<string, Revocation>();
    parsed.data.spiffeIds.forEach((entry, i) => {
      try {
        parseSpiffeId(entry.id);
      } catch (error) {
        if (error instanceof SpiffeIdError) throw malformed(`spiffeIds.${i}.id: ${error.message}`);
        throw error;
      }
      if (spiffeIds.has(entry.id)) throw malformed(`spiffeIds.${i}: ${entry.id} is listed twice`);
      spiffeIds.set(entry.id, Object.freeze({ kind: "spiffe-id", revokedAt: entry.revokedAt }));
    });
    const serials = new Map<string, Revocation>();
    parsed.data.serials.forEach((entry, i) => {
      const serial = normalizeSerial(entry.serial);
      if (serials.has(serial)) throw malformed(`serials.${i}: serial ${serial} is listed twice`);
      serials.set(serial, Object.freeze({ kind: "serial", revokedAt: entry.revokedAt }));
    });
    return new RevocationList(spiffeIds, serials);
  }

  /** Whether a peer is revoked, by its SPIFFE ID or by its certificate's serial (in any hex spelling). */
  isRevoked(p: { spiffeId?: string | null; serial?: string | null }): Revocation | null {
    if (p.spiffeId != null) {
      const byId = this.#spiffeIds.get(p.spiffeId);
      if (byId !== undefined) return byId;
    }
    if (p.serial != null && this.#serials.size > 0) return this.#serials.get(normalizeSerial(p.serial)) ?? null;
    return null;
  }

  get size(): number {
    return this.#spiffeIds.size + this.#serials.size;
  }

  get counts(): { spiffeIds: number; serials: number } {
    return { spiffeIds: this.#spiffeIds.size, serials: this.#serials.size };
  }
}
