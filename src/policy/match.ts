import { BlockList, isIP } from "node:net";

/**
 * Istio's string matching: "exact", "prefix*", "*suffix", and "*" (any non-empty value, or, for headers and hosts,
 * any value at all). Compiled once at load so the hot path only does Set lookups and startsWith/endsWith.
 */
export interface StringMatcher {
  test(value: string): boolean;
  /** The values matched, when the patterns are all exact and case-sensitive; null otherwise. */
  readonly exactValues: ReadonlySet<string> | null;
}

export interface StringMatcherOptions {
  /** Lowercase patterns and values (hosts). */
  readonly caseInsensitive?: boolean;
  /** Rewrite each pattern before compiling (e.g. strip "spiffe://" from principals). */
  readonly normalize?: (pattern: string) => string;
  /** Accept Istio's `{*}` / `{**}` path templates. */
  readonly pathTemplates?: boolean;
  /**
   * `"*"` matches an empty value too. Istio writes `"*"` on a header (hosts included) as Envoy's `present_match`, so
   * a header sent empty is present; elsewhere `"*"` is the regex `.+`.
   */
  readonly presence?: boolean;
}

class ValueSet implements StringMatcher {
  readonly any: boolean;
  readonly exact: ReadonlySet<string>;
  readonly prefixes: readonly string[];
  readonly suffixes: readonly string[];
  readonly templates: readonly RegExp[];
  readonly caseInsensitive: boolean;
  readonly presence: boolean;
  readonly exactValues: ReadonlySet<string> | null;

  constructor(patterns: readonly string[], options: StringMatcherOptions) {
    let any = false;
    const exact = new Set<string>();
    const prefixes: string[] = [];
    const suffixes: string[] = [];
    const templates: RegExp[] = [];
    for (const raw of patterns) {
      let p = options.normalize ? options.normalize(raw) : raw;
      if (options.caseInsensitive) p = p.toLowerCase();
      if (p === "*") any = true;
      else if (options.pathTemplates && isPathTemplate(p)) templates.push(compilePathTemplate(p));
      else if (p.endsWith("*")) prefixes.push(p.slice(0, -1));
      else if (p.startsWith("*")) suffixes.push(p.slice(1));
      else exact.add(p);
    }
    this.any = any;
    this.exact = exact;
    this.prefixes = prefixes;
    this.suffixes = suffixes;
    this.templates = templates;
    this.caseInsensitive = options.caseInsensitive === true;
    this.presence = options.presence === true;
    const onlyExact = !any && prefixes.length === 0 && suffixes.length === 0 && templates.length === 0;
    this.exactValues = onlyExact && !this.caseInsensitive ? exact : null;
  }

  test(input: string): boolean {
    if (this.any) return input !== "" || this.presence;
    if (input === "") return false;
    const value = this.caseInsensitive ? input.toLowerCase() : input;
    if (this.exact.has(value)) return true;
    for (const p of this.prefixes) if (value.startsWith(p)) return true;
    for (const s of this.suffixes) if (value.endsWith(s)) return true;
    for (const t of this.templates) if (t.test(value)) return true;
    return false;
  }
}

export function compileStringMatcher(patterns: readonly string[], options: StringMatcherOptions = {}): StringMatcher {
  return new ValueSet(patterns, options);
}

export function isPathTemplate(pattern: string): boolean {
  return pattern.includes("{*}") || pattern.includes("{**}");
}

// RFC 3986 pchar without "*" (and with "="), the characters Envoy's URI template operators match and Istio
// accepts in a template's literal segments.
const PCHAR = "a-zA-Z0-9\\-._~%!$&'()+,;:@=";
const LITERAL = new RegExp(`^[${PCHAR}]+$`);

/**
 * Returns why a path template is invalid, or null. As Istio validates it (and Envoy's URI template parser): each
 * operator fills a whole segment, `{**}` is the last operator (literal segments may follow it), every other segment
 * is literal pchar text, and only the last segment may be empty (a trailing "/").
 */
export function pathTemplateProblem(pattern: string): string | null {
  if (!pattern.startsWith("/")) return "a path template must start with \"/\"";
  const segments = pattern.slice(1).split("/");
  let textGlob = false;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] as string;
    if (seg === "{*}" || seg === "{**}") {
      if (textGlob) return "\"{**}\" must be the last operator in a path template";
      textGlob = seg === "{**}";
    } else if (seg === "") {
      if (i !== segments.length - 1) return "a path template must not have an empty segment (\"//\")";
    } else if (!LITERAL.test(seg)) {
      return `path template segment "${seg}" must be "{*}", "{**}" or literal text (letters, digits, and -._~%!$&'()+,;:@=)`;
    }
  }
  return null;
}

/**
 * Envoy's URI template regex: `{*}` is one or more pchar (one segment, never empty), `{**}` zero or more pchar or
 * "/" — so `/admin/{**}` covers `/admin/` and `/store/{**}/cart` covers `/store//cart`.
 */
function compilePathTemplate(pattern: string): RegExp {
  const segments = pattern.slice(1).split("/").map((seg) => {
    if (seg === "{*}") return `[${PCHAR}]+`;
    if (seg === "{**}") return `[${PCHAR}/]*`;
    return seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  });
  return new RegExp(`^/${segments.join("/")}$`);
}

/** Returns why an ipBlocks entry is invalid, or null. Accepts an address or a CIDR. */
export function cidrProblem(entry: string): string | null {
  const slash = entry.indexOf("/");
  const addr = slash === -1 ? entry : entry.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) return `"${entry}" is not an IP address or CIDR`;
  if (slash === -1) return null;
  const bits = entry.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `"${entry}" has an invalid prefix length (0-${max})`;
  return null;
}

/** An IP block list (node:net BlockList) built once at load. */
export class IpMatcher {
  readonly list: BlockList;

  /** Entries must already have passed `cidrProblem`. */
  constructor(entries: readonly string[]) {
    this.list = new BlockList();
    for (const entry of entries) {
      const slash = entry.indexOf("/");
      const addr = slash === -1 ? entry : entry.slice(0, slash);
      const family = isIP(addr) === 6 ? "ipv6" : "ipv4";
      if (slash === -1) this.list.addAddress(addr, family);
      else this.list.addSubnet(addr, Number(entry.slice(slash + 1)), family);
    }
  }

  test(ip: string): boolean {
    // Dual-stack sockets report IPv4 peers as "::ffff:a.b.c.d"; policies name them as IPv4.
    const addr = ip.startsWith("::ffff:") && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
    const family = isIP(addr);
    if (family === 0) return false;
    return this.list.check(addr, family === 6 ? "ipv6" : "ipv4");
  }
}

export class PortMatcher {
  readonly ports: ReadonlySet<number>;

  constructor(ports: readonly number[]) {
    this.ports = new Set(ports);
  }

  test(port: number): boolean {
    return this.ports.has(port);
  }
}

/**
 * Istio semantics for one attribute: every present list must agree. An absent attribute
 * never matches a positive list and always satisfies a `not` list (so `notPrincipals: ["*"]`
 * selects unauthenticated callers, as in Istio).
 */
export function fieldMatches<T>(
  field: { readonly values: { test(v: T): boolean } | null; readonly notValues: { test(v: T): boolean } | null },
  value: T | undefined,
): boolean {
  if (field.values !== null && (value === undefined || !field.values.test(value))) return false;
  if (field.notValues !== null && value !== undefined && field.notValues.test(value)) return false;
  return true;
}
