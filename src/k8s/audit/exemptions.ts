import { isMap, isSeq, LineCounter, parseDocument } from "yaml";
import type { Node } from "yaml";
import { asObject, asStringMap } from "./fields.ts";
import { ALL_CHECKS } from "./profiles.ts";

/** Annotation on an object or its pod template: `edgeward.dev/skip: pss.run-as-non-root,zt.image-digest`. */
export const SKIP_ANNOTATION = "edgeward.dev/skip";

/** An exceptions file that cannot be used; the message starts with "source:line: ". */
export class ExceptionsError extends Error {
  readonly source: string;
  readonly line: number;

  constructor(source: string, line: number, detail: string) {
    super(`${source}:${line}: ${detail}`);
    this.name = "ExceptionsError";
    this.source = source;
    this.line = line;
  }
}

export interface ObjectPattern {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

/** One accepted risk: a check id (or glob) on an object pattern, why, and until when (inclusive, UTC). */
export interface Exception {
  readonly id: string;
  readonly object: ObjectPattern;
  readonly reason: string;
  /** YYYY-MM-DD */
  readonly expires: string;
  readonly source: string;
  readonly line: number;
}

/** `*` matches any run of characters; everything else literally. */
export function globMatch(pattern: string, value: string): boolean {
  if (!pattern.includes("*")) return pattern === value;
  const re = new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
  return re.test(value);
}

function isoDate(v: unknown): string | undefined {
  if (v instanceof Date && !Number.isNaN(v.getTime())) return v.toISOString().slice(0, 10);
  if (typeof v === "string" && /^\d{4}-\d{2}-\d{2}$/.test(v) && !Number.isNaN(Date.parse(`${v}T00:00:00Z`))) return v;
  return undefined;
}

function objectPattern(v: unknown): ObjectPattern | string {
  if (typeof v === "string") {
    const parts = v.split("/");
    if (parts.length !== 3 || parts[0] === "" || parts[2] === "") return 'object must be "Kind/namespace/name" or a mapping with kind, namespace and name';
    return { kind: parts[0] as string, namespace: parts[1] as string, name: parts[2] as string };
  }
  const o = asObject(v);
  if (o === undefined) return "object is required (kind, namespace, name; * matches anything)";
  const field = (k: string, fallback?: string): string | undefined => {
    const x = o[k];
    if (x === undefined || x === null) return fallback;
    return typeof x === "string" && x !== "" ? x : undefined;
  };
  const kind = field("kind");
  const name = field("name");
  const namespace = field("namespace", "*");
  if (kind === undefined) return "object.kind is required (use * for any kind)";
  if (name === undefined) return "object.name is required (use * for any name)";
  if (namespace === undefined) return "object.namespace must be a non-empty string";
  return { kind, namespace, name };
}

/**
 * Reads an exceptions file:
 *
 *     exceptions:
 *       - id: zt.image-digest                                 # a check id, or a glob (pss.*)
 *         object: {kind: Deployment, namespace: llm, name: vllm}   # or "Deployment/llm/vllm"; * allowed
 *         reason: the registry enforces immutable tags
 *         expires: 2026-06-30                                 # inclusive, UTC
 *
 * Every entry needs all four; an entry without a reason, with an unknown id, or past
 * its expiry date is an error, so accepted risks are reviewed rather than forgotten.
 */
export function parseExceptions(text: string, source: string, now: Date): Exception[] {
  const lines = new LineCounter();
  const doc = parseDocument(text, { version: "1.1", lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const lineOf = (node: Node | null | undefined) => (node?.range ? lines.linePos(node.range[0]).line : 1);
  const first = doc.errors[0];
  if (first !== undefined) throw new ExceptionsError(source, lines.linePos(first.pos[0]).line, `invalid YAML: ${first.message.split("\n")[0]}`);
  const root = doc.contents as Node | null;
  if (root === null) return [];
  const listNode = isMap(root) ? (root.get("exceptions", true) as Node | undefined) : root;
  if (listNode === undefined || listNode === null) throw new ExceptionsError(source, lineOf(root), "expected a list under `exceptions:`");
  if (!isSeq(listNode)) throw new ExceptionsError(source, lineOf(listNode), "`exceptions` must be a list");
  const today = now.toISOString().slice(0, 10);
  const known = ALL_CHECKS.map((c) => c.id);
  const values = listNode.toJS(doc) as unknown[];
  return values.map((v, i) => {
    const line = lineOf(listNode.items[i] as Node);
    const fail = (detail: string): never => {
      throw new ExceptionsError(source, line, detail);
    };
    const entry = asObject(v) ?? fail("each exception must be a mapping with id, object, reason and expires");
    const id = typeof entry["id"] === "string" && entry["id"] !== "" ? entry["id"] : fail("id is required");
    if (!known.some((k) => globMatch(id, k))) fail(`id ${JSON.stringify(id)} matches no check (see \`edgeward audit --list-checks\`)`);
    const object = objectPattern(entry["object"]);
    if (typeof object === "string") fail(object);
    const reason = typeof entry["reason"] === "string" ? entry["reason"].trim() : "";
    if (reason === "") fail(`exception for ${id} has no reason: say why the risk is accepted`);
    const expires = isoDate(entry["expires"]) ?? fail("expires is required, as a date (YYYY-MM-DD)");
    if (expires < today) fail(`exception for ${id} expired on ${expires}: renew it with a new date or fix the finding`);
    return { id, object: object as ObjectPattern, reason, expires, source, line };
  });
}

/** The check ids (or globs) an object, or its pod template, asks to skip. */
export function skippedIds(...annotationSets: unknown[]): string[] {
  const out: string[] = [];
  for (const a of annotationSets) {
    const value = asStringMap(a)[SKIP_ANNOTATION];
    if (value === undefined) continue;
    out.push(...value.split(",").map((s) => s.trim()).filter(Boolean));
  }
  return out;
}

/**
 * Whether an exception covers a finding. `namespaces` are the names the object may be
 * written with: as in the manifest ("" when it has none, as objectKey writes it) and
 * as applied ("default" for a namespaced object without one).
 */
export function exceptionMatches(e: Exception, checkId: string, object: { kind: string; namespaces: readonly string[]; name: string }): boolean {
  return (
    globMatch(e.id, checkId) &&
    globMatch(e.object.kind, object.kind) &&
    object.namespaces.some((ns) => globMatch(e.object.namespace, ns)) &&
    globMatch(e.object.name, object.name)
  );
}
