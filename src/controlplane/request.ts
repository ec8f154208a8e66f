import type { FastifyRequest } from "fastify";
import { ApiError } from "./errors.ts";
import { MAX_LIMIT } from "./storage/index.ts";

/** What the control plane reads from a request beyond its route: headers, query values, body framing. */

/** The longest long-poll a node may ask for; larger waits are clamped. */
export const MAX_WAIT_SECONDS = 300;
const STAGES = new Set(["fresh", "grace", "restricted", "locked"]);

/** `Prefer: wait=N` → N seconds (clamped), or null. */
export function preferredWait(request: FastifyRequest): number | null {
  const header = [request.headers.prefer ?? []].flat().join(", ");
  const match = /(?:^|[\s,;])wait=(\d{1,9})(?=$|[\s,;])/i.exec(header);
  return match === null ? null : Math.min(Number(match[1]), MAX_WAIT_SECONDS);
}

/** Whether If-None-Match names `etag` (its quoted form), weak or strong, or is "*". */
export function etagMatches(request: FastifyRequest, etag: string): boolean {
  const header = request.headers["if-none-match"];
  if (header === undefined) return false;
  return header.split(",").some((tag) => {
    const t = tag.trim().replace(/^W\//, "");
    return t === "*" || t === `"${etag}"`;
  });
}

function integerHeader(request: FastifyRequest, name: string): number | undefined {
  const value = request.headers[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !/^\d{1,15}$/.test(value)) throw new ApiError(400, "bad_request", `${name} must be a non-negative integer`);
  return Number(value);
}

/**
 * The node's own report, from the x-edgeward-* headers it sends on every call: its claims, kept and checked as such,
 * never taken for facts. A malformed one is refused.
 */
export function nodeReport(request: FastifyRequest): { bundleRevision?: number; stage?: string; logSeq?: number } {
  const stage = request.headers["x-edgeward-stage"];
  if (stage !== undefined && (typeof stage !== "string" || !STAGES.has(stage))) {
    throw new ApiError(400, "bad_request", "x-edgeward-stage must be fresh, grace, restricted or locked");
  }
  const bundleRevision = integerHeader(request, "x-edgeward-bundle-revision");
  const logSeq = integerHeader(request, "x-edgeward-log-seq");
  return {
    ...(bundleRevision === undefined ? {} : { bundleRevision }),
    ...(stage === undefined ? {} : { stage }),
    ...(logSeq === undefined ? {} : { logSeq }),
  };
}

/** A route hook refusing a body of the wrong media type or encoding before a byte of it is read. */
export function requireBody(type: string, encoding: "gzip" | null) {
  return async (request: FastifyRequest): Promise<void> => {
    const media = (request.headers["content-type"] ?? "").split(";", 1)[0]!.trim().toLowerCase();
    const sent = String(request.headers["content-encoding"] ?? "identity").trim().toLowerCase();
    if (media !== type || sent !== (encoding ?? "identity")) {
      const expected = encoding === null ? type : `${type} with Content-Encoding: ${encoding}`;
      throw new ApiError(415, "unsupported_media_type", `the body must be ${expected}`);
    }
  };
}

export type Query = Record<string, string | undefined>;

export function queryOf(request: FastifyRequest): Query {
  return request.query as Query;
}

/** `?limit=N`: 1 or more, clamped to what storage returns at most. */
export function limitParam(query: Query): number | undefined {
  const value = query.limit;
  if (value === undefined) return undefined;
  if (!/^\d{1,6}$/.test(value) || Number(value) < 1) throw new ApiError(400, "bad_request", `limit must be an integer from 1 to ${MAX_LIMIT}`);
  return Math.min(Number(value), MAX_LIMIT);
}
