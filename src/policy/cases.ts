import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Node } from "yaml";
import { PolicyError } from "./error.ts";
import { evaluate } from "./evaluate.ts";
import { cidrProblem } from "./match.ts";
import { normalizePath } from "./normalize.ts";
import type { PathNormalization } from "./normalize.ts";
import { openAIRequestFields } from "./openai.ts";
import type { Decision, PolicyInput, PolicySet, Workload } from "./types.ts";

/** What a person states about a request in `policy explain` or a test case. */
export interface RequestSpec {
  /** SPIFFE ID with or without "spiffe://"; null or absent for an unauthenticated caller. */
  principal?: string | null;
  method: string;
  path: string;
  model?: string;
  headers?: Readonly<Record<string, string>>;
  /** A parsed OpenAI request body; model, max_tokens, stream and the prompt size come from it. */
  body?: unknown;
  /** The Host header (`hosts`). */
  host?: string;
  /** The port the request arrived on (`ports`, `destination.port`). */
  port?: number;
  /** The peer address (`ipBlocks`, `source.ip`). */
  sourceIp?: string;
  /** The original client address (`remoteIpBlocks`, `remote.ip`); the peer address when absent. */
  remoteIp?: string;
  /** The address the request arrived on (`destination.ip`). */
  destinationIp?: string;
  /** The TLS server name (`connection.sni`). */
  sni?: string;
}

export interface Expectation {
  decision: "ALLOW" | "DENY";
  policy?: string | null;
  rule?: number | null;
}

export interface PolicyCase {
  name: string;
  line: number;
  request: RequestSpec;
  labels: Readonly<Record<string, string>>;
  /** The gateway's namespace; absent: every policy applies whatever its namespace. */
  namespace?: string;
  expect: Expectation;
}

export interface CaseResult {
  case: PolicyCase;
  got: Decision;
  passed: boolean;
}

export function requestInput(spec: RequestSpec): PolicyInput {
  const fields = spec.body === undefined ? {} : openAIRequestFields(spec.body);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.headers ?? {})) headers[k.toLowerCase()] = v;
  const p = spec.principal;
  return {
    source: {
      principal: p ? (p.startsWith("spiffe://") ? p : `spiffe://${p}`) : null,
      ...(spec.sourceIp !== undefined ? { ip: spec.sourceIp } : {}),
      ...(spec.remoteIp !== undefined ? { remoteIp: spec.remoteIp } : {}),
    },
    request: {
      method: spec.method,
      path: spec.path,
      headers,
      ...fields,
      ...(spec.model !== undefined ? { model: spec.model } : {}),
      ...(spec.host !== undefined ? { host: spec.host } : {}),
      ...(spec.port !== undefined ? { port: spec.port } : {}),
      ...(spec.destinationIp !== undefined ? { destinationIp: spec.destinationIp } : {}),
      ...(spec.sni !== undefined ? { sni: spec.sni } : {}),
    },
  };
}

/** How the CLI decides a stated request as the mesh would. */
export interface DecideOptions {
  readonly workload?: Workload;
  /** The mesh's path normalization, applied before the policy sees the path; BASE when absent (Istio's default). */
  readonly pathNormalization?: PathNormalization;
}

/**
 * Decides a stated request as the mesh does: the path normalized first (Envoy does it before Istio's policy runs; a
 * path Envoy refuses outright is a DENY that no policy decided), then the policy of the gateway's workload.
 */
export function decideRequest(set: PolicySet, spec: RequestSpec, options: DecideOptions = {}): Decision {
  const path = normalizePath(spec.path, options.pathNormalization ?? "BASE");
  if (path === null) {
    const reason = "the mesh refuses the path before any policy: Envoy answers 400 to a path with a NUL byte (raw or %00)";
    return { decision: "DENY", policy: null, rule: null, reason, limits: {}, audit: false };
  }
  return evaluate(set, requestInput({ ...spec, path }), options.workload === undefined ? {} : { workload: options.workload });
}

const CASE_FIELDS = new Set([
  "name", "principal", "method", "path", "model", "headers", "body", "host", "port", "sourceIp", "remoteIp", "destinationIp", "sni",
  "namespace", "labels", "expect",
]);
const MAX_CASES_BYTES = 4 * 1024 * 1024;

/** Parses a `cases:` file (see docs/policy.md); errors are PolicyErrors with file:line. */
export function parseCases(text: string, file: string): PolicyCase[] {
  if (text.length > MAX_CASES_BYTES) throw new PolicyError("cases", file, 1, `cases file is larger than ${MAX_CASES_BYTES} bytes`);
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const lineOf = (n: unknown): number => {
    const range = (n as { range?: readonly number[] } | null)?.range;
    return range ? lines.linePos(range[0] ?? 0).line : 1;
  };
  const fail = (n: unknown, detail: string): never => {
    throw new PolicyError("cases", file, lineOf(n), detail);
  };
  const error = doc.errors[0];
  if (error) throw new PolicyError("cases", file, lines.linePos(error.pos[0]).line, `invalid YAML: ${error.message}`);
  const root = doc.contents;
  if (!isMap(root)) return fail(root, "a cases file must be a mapping with a \"cases\" list");
  const casesNode = root.get("cases", true);
  for (const pair of root.items) {
    if (!isScalar(pair.key) || pair.key.value !== "cases") fail(pair.key, `unknown field "${String((pair.key as { value?: unknown })?.value)}" (want cases)`);
  }
  if (!isSeq(casesNode) || casesNode.items.length === 0) return fail(casesNode ?? root, "cases must be a non-empty list");

  return casesNode.items.map((item, i) => {
    const where = `cases[${i}]`;
    if (!isMap(item)) return fail(item, `${where} must be a mapping`);
    for (const pair of item.items) {
      const key = isScalar(pair.key) ? pair.key.value : undefined;
      if (typeof key !== "string" || !CASE_FIELDS.has(key)) {
        fail(pair.key, `unknown field "${String(key)}" in ${where} (allowed: ${[...CASE_FIELDS].join(", ")})`);
      }
    }
    let value: Record<string, unknown>;
    try {
      value = item.toJS(doc, { maxAliasCount: 10 }) as Record<string, unknown>;
    } catch (err) {
      return fail(item, `${where}: ${(err as Error).message}`);
    }
    const at = (key: string): Node => (item.get(key, true) as Node | undefined) ?? item;
    const str = (key: string, required: boolean): string | undefined => {
      const v = value[key];
      if (v === undefined || v === null) return required ? fail(item, `${where}.${key} is required`) : undefined;
      if (typeof v !== "string") return fail(at(key), `${where}.${key} must be a string`);
      return v;
    };
    const strMap = (key: string): Record<string, string> => {
      const v = value[key];
      if (v === undefined || v === null) return {};
      if (typeof v !== "object" || Array.isArray(v) || Object.values(v).some((x) => typeof x !== "string")) {
        return fail(at(key), `${where}.${key} must be a mapping of strings`);
      }
      return v as Record<string, string>;
    };
    const name = str("name", true) as string;
    let body: unknown = value.body;
    if (typeof body === "string") {
      try {
        body = JSON.parse(body);
      } catch {
        fail(at("body"), `${where}.body is not valid JSON`);
      }
    }
    const ip = (key: string): string | undefined => {
      const v = str(key, false);
      if (v !== undefined && (v.includes("/") || cidrProblem(v) !== null)) fail(at(key), `${where}.${key}: "${v}" is not an IP address`);
      return v;
    };
    const port = value.port;
    if (port !== undefined && !(typeof port === "number" && Number.isInteger(port) && port >= 1 && port <= 65535)) {
      fail(at("port"), `${where}.port must be a port number (1-65535)`);
    }
    const stated: Partial<RequestSpec> = { model: str("model", false), host: str("host", false), sni: str("sni", false) };
    stated.sourceIp = ip("sourceIp");
    stated.remoteIp = ip("remoteIp");
    stated.destinationIp = ip("destinationIp");
    if (typeof port === "number") stated.port = port;
    const optional = Object.fromEntries(Object.entries(stated).filter(([, v]) => v !== undefined)) as Partial<RequestSpec>;
    const principal = str("principal", false);
    const namespace = str("namespace", false);
    const request: RequestSpec = {
      principal: principal ?? null,
      method: str("method", true) as string,
      path: str("path", true) as string,
      headers: strMap("headers"),
      ...optional,
      ...(body !== undefined ? { body } : {}),
    };
    return {
      name,
      line: lineOf(item),
      request,
      labels: strMap("labels"),
      ...(namespace !== undefined ? { namespace } : {}),
      expect: parseExpect(value.expect, at("expect"), `${where}.expect`, fail),
    };
  });
}

function parseExpect(v: unknown, node: Node, where: string, fail: (n: unknown, d: string) => never): Expectation {
  if (v === "ALLOW" || v === "DENY") return { decision: v };
  if (typeof v !== "object" || v === null || Array.isArray(v)) return fail(node, `${where} must be ALLOW, DENY or {decision, policy?, rule?}`);
  const e = v as Record<string, unknown>;
  for (const k of Object.keys(e)) if (!["decision", "policy", "rule"].includes(k)) fail(node, `unknown field "${k}" in ${where}`);
  if (e.decision !== "ALLOW" && e.decision !== "DENY") return fail(node, `${where}.decision must be ALLOW or DENY`);
  const out: Expectation = { decision: e.decision };
  if ("policy" in e) {
    if (e.policy !== null && typeof e.policy !== "string") fail(node, `${where}.policy must be "<namespace>/<name>" or null`);
    out.policy = e.policy as string | null;
  }
  if ("rule" in e) {
    if (e.rule !== null && !(typeof e.rule === "number" && Number.isSafeInteger(e.rule) && e.rule >= 0)) {
      fail(node, `${where}.rule must be a rule index or null`);
    }
    out.rule = e.rule as number | null;
  }
  return out;
}

/** Runs each case against its own workload: its `namespace` and `labels`, with the given root namespace. */
export function runCases(
  set: PolicySet,
  cases: readonly PolicyCase[],
  options: { readonly rootNamespace?: string; readonly pathNormalization?: PathNormalization } = {},
): CaseResult[] {
  return cases.map((c) => {
    const workload: Workload = {
      labels: c.labels,
      ...(c.namespace !== undefined ? { namespace: c.namespace } : {}),
      ...(options.rootNamespace !== undefined ? { rootNamespace: options.rootNamespace } : {}),
    };
    const got = decideRequest(set, c.request, {
      workload,
      ...(options.pathNormalization !== undefined ? { pathNormalization: options.pathNormalization } : {}),
    });
    const e = c.expect;
    const passed =
      got.decision === e.decision &&
      (e.policy === undefined || got.policy === e.policy) &&
      (e.rule === undefined || got.rule === e.rule);
    return { case: c, got, passed };
  });
}
