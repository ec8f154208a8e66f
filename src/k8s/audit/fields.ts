/**
 * Defensive reads over manifests: audit takes any YAML a user hands it, so no field
 * is trusted to have the type its schema promises. Each helper returns undefined (or
 * an empty value) rather than throwing on the wrong shape.
 */

export type Json = Record<string, unknown>;

export function asObject(v: unknown): Json | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : undefined;
}

export function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

export function asString(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** Strings in a list, skipping anything else. */
export function asStrings(v: unknown): string[] {
  return asArray(v).filter((x): x is string => typeof x === "string");
}

/** A string → string map (labels, matchLabels); non-string values are stringified as the API server would reject them anyway. */
export function asStringMap(v: unknown): Record<string, string> {
  const o = asObject(v);
  const out: Record<string, string> = {};
  if (o === undefined) return out;
  for (const [k, val] of Object.entries(o)) {
    if (typeof val === "string") out[k] = val;
    else if (typeof val === "number" || typeof val === "boolean") out[k] = String(val);
  }
  return out;
}

/** Follows a chain of keys through nested objects. */
export function dig(v: unknown, ...keys: string[]): unknown {
  let cur: unknown = v;
  for (const k of keys) {
    const o = asObject(cur);
    if (o === undefined) return undefined;
    cur = o[k];
  }
  return cur;
}

/** A port given as a number or a numeric string; undefined for names and garbage. */
export function asPortNumber(v: unknown): number | undefined {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "string" && /^\d{1,5}$/.test(v)) return Number(v);
  return undefined;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * Appends segments to a JSON path in the dotted form people write
 * (`spec.template.spec.containers[0].securityContext`); keys that are not plain
 * identifiers are bracketed and quoted (`resources.limits["nvidia.com/gpu"]`).
 */
export function jsonPath(base: string, ...segments: (string | number)[]): string {
  let out = base;
  for (const s of segments) {
    if (typeof s === "number") out += `[${s}]`;
    else if (IDENTIFIER.test(s)) out += out === "" ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}
