import type { TextMatcher } from "./types.ts";

/**
 * Matchers for the attributes Istio reads out of the caller's SPIFFE ID: `namespaces`, `serviceAccounts` and
 * `trustDomains` (and their `source.*` conditions). Each tests the principal in Istio form (`td/ns/x/sa/y`, no
 * `spiffe://`) the way pilot's generated regex tests the certificate's URI SAN, but with string searches only:
 * no backtracking, whatever the principal looks like.
 */

/**
 * `namespaces`: Istio matches `.*\/ns/<pattern>/.*` with every `*` of the pattern read as `.*`, so the namespace
 * may sit anywhere in the principal (not only right after the trust domain), must be followed by a `/`, and a
 * wildcard may run across segments.
 */
export class NamespaceMatcher implements TextMatcher {
  /** Per pattern, the literal pieces that must appear in order; the first one starts with "/ns/". */
  readonly #pieces: readonly (readonly string[])[];

  constructor(patterns: readonly string[]) {
    this.#pieces = patterns.map((p) => {
      const parts = p.split("*");
      parts[0] = `/ns/${parts[0]}`;
      parts[parts.length - 1] = `${parts[parts.length - 1]}/`;
      return parts.filter((part, i) => i === 0 || part !== "");
    });
  }

  test(principal: string): boolean {
    for (const pieces of this.#pieces) if (inOrder(principal, pieces)) return true;
    return false;
  }
}

/**
 * Whether the pieces occur in this order without overlapping. The leftmost occurrence of each piece leaves the most
 * room for the next, so a greedy scan decides what the regex `.*p0.*p1….*` would. In the SAN the principal follows
 * "spiffe://", whose last "/" may begin the first piece: a principal starting with "ns/…" counts.
 */
function inOrder(principal: string, pieces: readonly string[]): boolean {
  const first = pieces[0] as string;
  let at: number;
  if (principal.startsWith(first.slice(1))) at = first.length - 1;
  else {
    const i = principal.indexOf(first);
    if (i === -1) return false;
    at = i + first.length;
  }
  for (let k = 1; k < pieces.length; k++) {
    const piece = pieces[k] as string;
    const i = principal.indexOf(piece, at);
    if (i === -1) return false;
    at = i + piece.length;
  }
  return true;
}

/**
 * `serviceAccounts`: `<namespace>/<name>`, or `<name>` in the policy's own namespace. Istio matches
 * `spiffe://.+/ns/<ns>/(.+/|)sa/<name>(/.+)?`: a trust domain, the namespace segment, optionally more segments,
 * then `sa/<name>` ending the principal or followed by more segments.
 */
export class ServiceAccountMatcher implements TextMatcher {
  readonly #accounts: readonly { readonly ns: string; readonly sa: string }[];

  /** Values must already have passed `serviceAccountProblem`. */
  constructor(values: readonly string[], policyNamespace: string) {
    this.#accounts = values.map((v) => {
      const slash = v.indexOf("/");
      return slash === -1 ? { ns: `/ns/${policyNamespace}/`, sa: `sa/${v}` } : { ns: `/ns/${v.slice(0, slash)}/`, sa: `sa/${v.slice(slash + 1)}` };
    });
  }

  test(principal: string): boolean {
    for (const { ns, sa } of this.#accounts) {
      // The trust domain (".+") takes at least one character before the namespace segment.
      for (let i = principal.indexOf(ns, 1); i !== -1; i = principal.indexOf(ns, i + 1)) {
        if (accountAfter(principal, i + ns.length, sa)) return true;
      }
    }
    return false;
  }
}

function accountAfter(principal: string, from: number, sa: string): boolean {
  for (let j = principal.indexOf(sa, from); j !== -1; j = principal.indexOf(sa, j + 1)) {
    // "(.+/|)": right after the namespace segment, or after at least one more character and a "/".
    if (j !== from && !(j - from >= 2 && principal[j - 1] === "/")) continue;
    const end = j + sa.length;
    // "(/.+)?": the end of the principal, or a "/" and at least one more character.
    if (end === principal.length || (principal[end] === "/" && principal.length - end >= 2)) return true;
  }
  return false;
}

/** Why a `serviceAccounts` value is refused (Istio's own checks), or null. */
export function serviceAccountProblem(value: string): string | null {
  if (value.includes("*")) return `"${value}": no wildcard is allowed in a service account`;
  if (value.length > 320) return `"${value.slice(0, 32)}…" is longer than 320 characters`;
  const parts = value.split("/");
  if (parts.length > 2 || parts.some((p) => p === "")) return `"${value}" is not <namespace>/<serviceaccount> or <serviceaccount>`;
  return null;
}

/**
 * `trustDomains`: exact, `prefix*`, `*suffix`, or `*` (any authenticated caller), compared with the start of the
 * principal, case-sensitively, as Istio's `spiffe://<exact>/`, `spiffe://<prefix>[^/]*\/` and
 * `spiffe://[^/]*<suffix>/` matchers do: the trust domain must be followed by a "/".
 */
export class TrustDomainMatcher implements TextMatcher {
  readonly #any: boolean;
  readonly #exact: readonly string[];
  readonly #prefixes: readonly string[];
  readonly #suffixes: readonly string[];

  /** Values must already have passed `trustDomainProblem`. */
  constructor(values: readonly string[]) {
    this.#any = values.includes("*");
    this.#exact = values.filter((v) => !v.includes("*")).map((v) => `${v}/`);
    this.#prefixes = values.filter((v) => v !== "*" && v.endsWith("*")).map((v) => v.slice(0, -1));
    this.#suffixes = values.filter((v) => v !== "*" && v.startsWith("*")).map((v) => `${v.slice(1)}/`);
  }

  test(principal: string): boolean {
    if (this.#any) return true;
    for (const e of this.#exact) if (principal.startsWith(e)) return true;
    for (const p of this.#prefixes) if (principal.startsWith(p) && principal.includes("/", p.length)) return true;
    const slash = principal.indexOf("/");
    if (slash === -1) return false;
    // "[^/]*<suffix>/": the suffix starts at or before the first "/".
    for (const s of this.#suffixes) {
      for (let k = 0; k <= slash; k++) if (principal.startsWith(s, k)) return true;
    }
    return false;
  }
}

/**
 * Why a trust domain value is refused (Istio's own checks), or null: one "*" at most, at the start or the end; in
 * `from.source.trustDomains` (not in the `source.trustDomain` condition) no "/".
 */
export function trustDomainProblem(value: string, source: boolean): string | null {
  if (source && value.includes("/")) return `"${value}": a trust domain has no "/"`;
  const stars = value.split("*").length - 1;
  if (stars > 1 || (stars === 1 && value !== "*" && !value.startsWith("*") && !value.endsWith("*"))) {
    return `"${value}": one "*" at most, at the start or the end`;
  }
  return null;
}
