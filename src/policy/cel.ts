import { celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import type { CelInput } from "@bufbuild/cel";
import type { PolicyInput } from "./types.ts";

type CelExpr = ReturnType<typeof parse>["expr"];
type CelProgram = (vars: Record<string, CelInput>) => unknown;

/** Longer expressions are refused: policies are written by people, not generated. */
export const MAX_CEL_LENGTH = 4096;
/** Nested macros (all/exists/map/filter) multiply their cost; three levels is plenty for a policy. */
export const MAX_CEL_NESTING = 3;

const REQUEST_FIELDS = new Set(["method", "path", "host", "headers", "model", "max_tokens", "stream", "prompt_tokens"]);
const SOURCE_FIELDS = new Set(["principal", "trust_domain", "namespace", "service_account"]);
const ROOTS: ReadonlyMap<string, ReadonlySet<string>> = new Map([
  ["request", REQUEST_FIELDS],
  ["source", SOURCE_FIELDS],
]);

const env = celEnv();

/** Compiled once at load; evaluated per request. */
export interface CelCondition {
  readonly expression: string;
  /** true/false, or the error text when the expression failed or did not yield a bool. */
  evaluate(vars: Record<string, CelInput>): boolean | string;
}

/** Thrown by compileCel; the caller turns it into a PolicyError with the file position. */
export class CelCompileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CelCompileError";
  }
}

export function compileCel(expression: string): CelCondition {
  if (expression.trim() === "") throw new CelCompileError("CEL expression is empty");
  if (expression.length > MAX_CEL_LENGTH) {
    throw new CelCompileError(`CEL expression is ${expression.length} characters (limit ${MAX_CEL_LENGTH})`);
  }
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(expression);
  } catch (err) {
    // Deeply nested input can exhaust the parser's stack; report it as a syntax problem.
    const text = err instanceof RangeError ? "expression is nested too deeply" : (err as Error).message;
    throw new CelCompileError(`CEL syntax error: ${text.replace(/^<input>:/, "")}`);
  }
  checkReferences(parsed.expr, new Set(), 0);
  const program = plan(env, parsed) as CelProgram;
  // There is no full type checker in the library, so run once over a representative input:
  // an operator/type mismatch there ("no matching overload") is an error in the policy itself.
  const probe = program(celBindings(PROBE_INPUT));
  if (isCelError(probe) && /no matching overload|no such overload/.test(probe.message)) {
    throw new CelCompileError(`CEL type error: ${probe.message}`);
  }
  if (!isCelError(probe) && typeof probe !== "boolean") {
    throw new CelCompileError(`CEL expression must yield a bool, got ${describe(probe)}`);
  }
  return {
    expression,
    evaluate(vars) {
      let result: unknown;
      try {
        result = program(vars);
      } catch (err) {
        return `CEL evaluation failed: ${(err as Error).message}`;
      }
      if (typeof result === "boolean") return result;
      if (isCelError(result)) return `CEL evaluation failed: ${result.message}`;
      return `CEL result is ${describe(result)}, not bool`;
    },
  };
}

function describe(value: unknown): string {
  if (typeof value === "bigint") return "int";
  if (typeof value === "number") return "double";
  if (value === null) return "null";
  if (typeof value === "object") return value instanceof Uint8Array ? "bytes" : "a list or map";
  return typeof value;
}

/** Only `request`, `source` and comprehension variables exist; only the documented fields of each. */
function checkReferences(expr: CelExpr | undefined, bound: ReadonlySet<string>, nesting: number): void {
  if (expr === undefined) return;
  const k = expr.exprKind;
  switch (k.case) {
    case "identExpr":
      if (!ROOTS.has(k.value.name) && !bound.has(k.value.name)) {
        throw new CelCompileError(`CEL expression refers to unknown variable "${k.value.name}" (known: request, source)`);
      }
      return;
    case "selectExpr": {
      const operand = k.value.operand;
      if (operand?.exprKind.case === "identExpr" && !bound.has(operand.exprKind.value.name)) {
        const root = operand.exprKind.value.name;
        const fields = ROOTS.get(root);
        if (fields !== undefined && !fields.has(k.value.field)) {
          throw new CelCompileError(
            `CEL expression refers to unknown field "${root}.${k.value.field}" (known: ${[...fields].map((f) => `${root}.${f}`).join(", ")})`,
          );
        }
      }
      checkReferences(operand, bound, nesting);
      return;
    }
    case "callExpr":
      checkReferences(k.value.target, bound, nesting);
      for (const a of k.value.args) checkReferences(a, bound, nesting);
      return;
    case "listExpr":
      for (const e of k.value.elements) checkReferences(e, bound, nesting);
      return;
    case "structExpr":
      for (const e of k.value.entries) {
        if (e.keyKind.case === "mapKey") checkReferences(e.keyKind.value, bound, nesting);
        checkReferences(e.value, bound, nesting);
      }
      return;
    case "comprehensionExpr": {
      if (nesting >= MAX_CEL_NESTING) {
        throw new CelCompileError(`CEL macros (all, exists, map, filter) are nested more than ${MAX_CEL_NESTING} deep`);
      }
      const c = k.value;
      checkReferences(c.iterRange, bound, nesting);
      checkReferences(c.accuInit, bound, nesting);
      const inner = new Set(bound);
      for (const v of [c.iterVar, c.iterVar2, c.accuVar]) if (v) inner.add(v);
      checkReferences(c.loopCondition, inner, nesting + 1);
      checkReferences(c.loopStep, inner, nesting + 1);
      checkReferences(c.result, inner, nesting + 1);
      return;
    }
    default:
      return;
  }
}

const PROBE_INPUT: PolicyInput = {
  source: { principal: "spiffe://example.org/ns/default/sa/probe" },
  request: {
    method: "POST",
    path: "/v1/chat/completions",
    host: "localhost",
    headers: { "content-type": "application/json" },
    model: "probe",
    maxTokens: 16,
    stream: false,
    promptTokens: 16,
  },
};

/**
 * The CEL variables for one request. Every field is always present (empty string, 0, false)
 * so a policy never fails on a missing field; header lookups of absent names do fail —
 * use `"name" in request.headers` first.
 */
export function celBindings(input: PolicyInput): Record<string, CelInput> {
  const principal = input.source.principal ?? "";
  const id = splitPrincipal(principal);
  const req = input.request;
  const headers = new Map<string, string>();
  for (const k of Object.keys(req.headers)) headers.set(k.toLowerCase(), req.headers[k] as string);
  // Built with set() rather than from entry arrays: this runs once per request with a CEL condition.
  const request = new Map<string, CelInput>()
    .set("method", req.method)
    .set("path", req.path)
    .set("host", req.host ?? "")
    .set("headers", headers)
    .set("model", req.model ?? "")
    .set("max_tokens", toInt(req.maxTokens))
    .set("stream", req.stream === true)
    .set("prompt_tokens", toInt(req.promptTokens));
  const source = new Map<string, CelInput>()
    .set("principal", principal)
    .set("trust_domain", id.trustDomain)
    .set("namespace", id.namespace)
    .set("service_account", id.serviceAccount);
  return { request, source };
}

function toInt(n: number | undefined): bigint {
  return n !== undefined && Number.isFinite(n) ? BigInt(Math.trunc(n)) : 0n;
}

/**
 * Trust domain, namespace and service account of a SPIFFE ID ("" where absent), read as Istio's matchers read them:
 * the namespace is the first segment after a "/ns/" that is followed by a "/" (where `namespaces: [<it>]` matches),
 * and the service account the segment after the first "sa/" segment behind it (where `serviceAccounts` matches).
 * Istio matches a namespace or service account anywhere in the principal; CEL sees the first.
 */
export function splitPrincipal(principal: string): { trustDomain: string; namespace: string; serviceAccount: string } {
  const bare = principal.startsWith("spiffe://") ? principal.slice(9) : principal;
  const slash = bare.indexOf("/");
  const trustDomain = slash === -1 ? bare : bare.slice(0, slash);
  // In the SAN the ID follows "spiffe://", whose last "/" may begin the "/ns/" (a trust domain named "ns").
  const id = `/${bare}`;
  for (let i = id.indexOf("/ns/"); i !== -1; i = id.indexOf("/ns/", i + 1)) {
    const start = i + 4;
    const end = id.indexOf("/", start);
    if (end === -1) break;
    if (end > start) return { trustDomain, namespace: id.slice(start, end), serviceAccount: accountAfter(id, end + 1) };
  }
  return { trustDomain, namespace: "", serviceAccount: "" };
}

/** The segment after the first "sa" segment at or behind `from` (Istio's `(.+/|)sa/<sa>(/.+)?`), or "". */
function accountAfter(bare: string, from: number): string {
  for (let j = bare.indexOf("sa/", from); j !== -1; j = bare.indexOf("sa/", j + 1)) {
    if (j !== from && !(j - from >= 2 && bare[j - 1] === "/")) continue;
    const end = bare.indexOf("/", j + 3);
    if (end === j + 3 || end === bare.length - 1) continue;
    return end === -1 ? bare.slice(j + 3) : bare.slice(j + 3, end);
  }
  return "";
}
