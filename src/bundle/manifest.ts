import { createHash } from "node:crypto";
import { z } from "zod";
import { BundleError } from "./errors.ts";

export const MANIFEST_FILE = "manifest.json";
export const SIGNATURE_FILE = "manifest.json.sig";
export const REVOCATIONS_FILE = "revocations.json";
export const API_VERSION = "edgeward.dev/v1alpha1";
export const KIND = "PolicyBundle";

/** path -> bytes: a bundle's content, manifest.json and manifest.json.sig included. */
export type BundleFiles = ReadonlyMap<string, Uint8Array>;

export interface BundleManifest {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  name: string;
  revision: number;
  createdAt: string;
  notBefore: string;
  notAfter: string;
  degradation: { graceSeconds: number; restrictedSeconds: number };
  /** path -> sha256 hex of the file's bytes, for every file but manifest.json and manifest.json.sig */
  files: Record<string, string>;
}

/**
 * Paths are limited to a portable alphabet: no separators but "/", no spaces, no Unicode that two file systems
 * could normalise differently, so a path means the same file in a tarball, on disk and in the manifest.
 */
const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;
export const MAX_PATH_LENGTH = 255;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
/** Ten years: long enough for any real ladder, short enough that every sum of times stays an exact integer. */
export const MAX_PERIOD_SECONDS = 10 * 366 * 86400;

/** Why `path` cannot name a file in a bundle, or null when it can. */
export function bundlePathProblem(path: string): string | null {
  if (path === "") return "is empty";
  if (path.length > MAX_PATH_LENGTH) return `is longer than ${MAX_PATH_LENGTH} characters`;
  if (path.startsWith("/")) return "is absolute";
  for (const segment of path.split("/")) {
    if (segment === "") return "has an empty segment";
    if (segment === "." || segment === "..") return `has a "${segment}" segment`;
    if (!PATH_SEGMENT.test(segment)) return "has a character outside A-Z a-z 0-9 . _ -";
  }
  return null;
}

/** Policy files are the .yaml/.yml files; everything else is data beside them (revocations.json). */
export function isPolicyFile(path: string): boolean {
  return path.endsWith(".yaml") || path.endsWith(".yml");
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** RFC 3339 UTC in whole seconds ("2026-11-23T00:00:00Z") → epoch ms, or null for anything else (Feb 30 included). */
export function parseTimestamp(text: string): number | null {
  if (!TIMESTAMP.test(text)) return null;
  const ms = Date.parse(text);
  if (!Number.isFinite(ms) || formatTimestamp(ms) !== text) return null;
  return ms;
}

export function formatTimestamp(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}Z`;
}

const timestamp = z.string().refine((s) => parseTimestamp(s) !== null, {
  message: "must be an RFC 3339 UTC time in whole seconds, e.g. 2026-11-23T00:00:00Z",
});
const period = z.number().int().min(0).max(MAX_PERIOD_SECONDS);

// `files` is checked by hand: a record schema would silently drop a "__proto__" key.
const manifestSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(KIND),
  name: z.string().regex(NAME, "must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"),
  revision: z.number().int().min(1),
  createdAt: timestamp,
  notBefore: timestamp,
  notAfter: timestamp,
  degradation: z.strictObject({ graceSeconds: period, restrictedSeconds: period }),
  files: z.record(z.string(), z.unknown()),
});

function malformed(message: string): BundleError {
  return new BundleError("malformed-manifest", message);
}

function checkFiles(files: Record<string, unknown>): Record<string, string> {
  const checked: [string, string][] = [];
  for (const [path, digest] of Object.entries(files)) {
    const problem = bundlePathProblem(path);
    if (problem !== null) throw malformed(`files: path ${JSON.stringify(path.slice(0, 64))} ${problem}`);
    if (path === MANIFEST_FILE || path === SIGNATURE_FILE) throw malformed(`files: ${path} cannot list itself`);
    if (typeof digest !== "string" || !SHA256_HEX.test(digest)) throw malformed(`files.${path}: must be a lowercase sha256 hex digest`);
    checked.push([path, digest]);
  }
  if (!checked.some(([path]) => isPolicyFile(path))) throw malformed("files: lists no policy file (.yaml or .yml)");
  return Object.fromEntries(checked);
}

/** Checks a manifest object against the schema and the rules across its fields; returns a fresh, plain copy. */
export function checkManifest(value: unknown): BundleManifest {
  const parsed = manifestSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length === 0 ? "" : `${issue.path.join(".")}: `;
    throw malformed(`${where}${issue.message}`);
  }
  const m = parsed.data;
  const files = checkFiles((value as { files: Record<string, unknown> }).files);
  if (parseTimestamp(m.notAfter)! < parseTimestamp(m.notBefore)!) {
    throw malformed(`notAfter ${m.notAfter} is before notBefore ${m.notBefore}`);
  }
  return inSchemaOrder(m, files);
}

/** The manifest's fields, nothing else, in the schema's key order (the canonical order of manifest.json). */
function inSchemaOrder(m: Omit<BundleManifest, "files">, files: Record<string, string>): BundleManifest {
  return {
    apiVersion: m.apiVersion,
    kind: m.kind,
    name: m.name,
    revision: m.revision,
    createdAt: m.createdAt,
    notBefore: m.notBefore,
    notAfter: m.notAfter,
    degradation: { graceSeconds: m.degradation.graceSeconds, restrictedSeconds: m.degradation.restrictedSeconds },
    files,
  };
}

/** manifest.json bytes → the manifest. Only for bytes whose signature has verified, or to display (inspect). */
export function parseManifest(bytes: Uint8Array): BundleManifest {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw malformed(`${MANIFEST_FILE} is not UTF-8 JSON (${(error as Error).message})`);
  }
  return checkManifest(value);
}

/** The canonical manifest.json: keys in schema order, files sorted by path, 2-space indent, trailing newline. */
export function encodeManifest(m: BundleManifest): Uint8Array {
  const files = Object.fromEntries(Object.entries(m.files).sort(([a], [b]) => (a < b ? -1 : 1)));
  return Buffer.from(`${JSON.stringify(inSchemaOrder(m, files), null, 2)}\n`);
}
