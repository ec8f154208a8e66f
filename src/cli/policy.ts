import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import type { CliIO } from "./io.ts";
import { isIP } from "node:net";
import {
  decideRequest,
  inertPolicies,
  mergePolicySets,
  parseCases,
  parsePolicies,
  PATH_NORMALIZATIONS,
  PolicyError,
  readPolicyFile,
  runCases,
} from "../policy/index.ts";
import type { Decision, PathNormalization, PolicySet, RequestSpec, Workload } from "../policy/index.ts";

const USAGE = `usage:
  edgeward policy check FILE... [--namespace NS] [--label K=V]... [--mesh-root-namespace NS]
  edgeward policy explain FILE... --method M --path P [--principal ID] [--model NAME]
                          [--header K=V]... [--body JSON] [--host H] [--port N] [--source-ip IP]
                          [--remote-ip IP] [--destination-ip IP] [--sni NAME]
                          [--namespace NS] [--label K=V]... [--mesh-root-namespace NS]
                          [--path-normalization NONE|BASE|MERGE_SLASHES|DECODE_AND_MERGE_SLASHES]
                          [--output text|json]
  edgeward policy test FILE... --cases CASES.yaml [--mesh-root-namespace NS] [--path-normalization MODE]
`;

class UsageError extends Error {}

export async function run(argv: string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "check":
        return await check(rest, io);
      case "explain":
        return await explain(rest, io);
      case "test":
        return await test(rest, io);
      case "help":
      case "--help":
      case "-h":
        io.stdout(USAGE);
        return 0;
      default:
        throw new UsageError(command === undefined ? "missing command" : `unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`policy: ${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    if (err instanceof PolicyError) {
      io.stderr(`${err.message}\n`);
      return 1;
    }
    io.stderr(`policy: ${(err as Error).message}\n`);
    return 1;
  }
}

async function load(files: readonly string[], io: CliIO): Promise<PolicySet> {
  if (files.length === 0) throw new UsageError("at least one policy FILE is required");
  const sets: PolicySet[] = [];
  for (const f of files) sets.push(parsePolicies(await readPolicyFile(resolve(io.cwd, f), f), f));
  return mergePolicySets(sets);
}

/** The options naming the gateway's workload, shared by check and explain. */
const WORKLOAD_OPTIONS = {
  namespace: { type: "string" },
  label: { type: "string", multiple: true },
  "mesh-root-namespace": { type: "string" },
} as const;

function workloadOf(values: { namespace?: string | undefined; label?: string[] | undefined; "mesh-root-namespace"?: string | undefined }): Workload {
  return {
    labels: keyValues(values.label, "label"),
    ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
    ...(values["mesh-root-namespace"] !== undefined ? { rootNamespace: values["mesh-root-namespace"] } : {}),
  };
}

function pathNormalizationOf(value: string | undefined): PathNormalization {
  if (value === undefined) return "BASE";
  if (!(PATH_NORMALIZATIONS as readonly string[]).includes(value)) throw new UsageError(`--path-normalization must be one of ${PATH_NORMALIZATIONS.join(", ")}`);
  return value as PathNormalization;
}

async function check(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: WORKLOAD_OPTIONS });
  if (positionals.length === 0) throw new UsageError("at least one policy FILE is required");
  let failed = false;
  const sets: PolicySet[] = [];
  for (const f of positionals) {
    try {
      const set = parsePolicies(await readPolicyFile(resolve(io.cwd, f), f), f);
      sets.push(set);
      io.stdout(`ok: ${set.policies.length} ${set.policies.length === 1 ? "policy" : "policies"} in ${f}\n`);
    } catch (err) {
      if (!(err instanceof PolicyError)) throw err;
      io.stderr(`${err.message}\n`);
      failed = true;
    }
  }
  if (failed) return 1;
  // Only what was stated is checked: the namespace when --namespace is given, selectors when --label is.
  const set = mergePolicySets(sets);
  for (const { policy, reason } of inertPolicies(set, workloadOf(values), values.label !== undefined)) {
    io.stdout(`warning: ${policy.file}:${policy.line}: policy ${policy.id} never applies to this gateway: ${reason}\n`);
  }
  return 0;
}

function keyValues(values: readonly string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of values ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new UsageError(`--${flag} wants K=V, got "${kv}"`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

async function explain(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      principal: { type: "string" },
      method: { type: "string" },
      path: { type: "string" },
      model: { type: "string" },
      header: { type: "string", multiple: true },
      body: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      "source-ip": { type: "string" },
      "remote-ip": { type: "string" },
      "destination-ip": { type: "string" },
      sni: { type: "string" },
      "path-normalization": { type: "string" },
      ...WORKLOAD_OPTIONS,
      output: { type: "string", default: "text" },
    },
  });
  if (values.method === undefined || values.path === undefined) throw new UsageError("--method and --path are required");
  if (values.output !== "text" && values.output !== "json") throw new UsageError(`--output must be text or json`);
  let body: unknown;
  if (values.body !== undefined) {
    try {
      body = JSON.parse(values.body);
    } catch {
      throw new UsageError("--body is not valid JSON");
    }
  }
  const spec: RequestSpec = {
    principal: values.principal ?? null,
    method: values.method,
    path: values.path,
    headers: keyValues(values.header, "header"),
    ...(values.model !== undefined ? { model: values.model } : {}),
    ...(body !== undefined ? { body } : {}),
    ...(values.host !== undefined ? { host: values.host } : {}),
    ...(values.sni !== undefined ? { sni: values.sni } : {}),
  };
  if (values.port !== undefined) {
    const port = /^\d{1,5}$/.test(values.port) ? Number(values.port) : NaN;
    if (!(port >= 1 && port <= 65535)) throw new UsageError(`--port must be a port number (1-65535), got "${values.port}"`);
    spec.port = port;
  }
  for (const [flag, key] of [["source-ip", "sourceIp"], ["remote-ip", "remoteIp"], ["destination-ip", "destinationIp"]] as const) {
    const ip = values[flag];
    if (ip === undefined) continue;
    if (isIP(ip) === 0) throw new UsageError(`--${flag} must be an IP address, got "${ip}"`);
    spec[key] = ip;
  }
  const pathNormalization = pathNormalizationOf(values["path-normalization"]);
  const set = await load(positionals, io);
  const d = decideRequest(set, spec, { workload: workloadOf(values), pathNormalization });
  if (values.output === "json") {
    io.stdout(`${JSON.stringify({ decision: d.decision, policy: d.policy, rule: d.rule, reason: d.reason, limits: d.limits })}\n`);
  } else {
    io.stdout(formatDecision(d));
  }
  return 0;
}

function formatDecision(d: Decision): string {
  const limits = Object.entries(d.limits).map(([k, v]) => `${k}=${v}`).join(" ");
  return [
    `decision: ${d.decision}`,
    `policy:   ${d.policy ?? "(none)"}`,
    `rule:     ${d.rule ?? "(none)"}`,
    `reason:   ${d.reason}`,
    ...(limits ? [`limits:   ${limits}`] : []),
    ...(d.audit ? ["audit:    yes"] : []),
    "",
  ].join("\n");
}

async function test(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: { cases: { type: "string" }, "mesh-root-namespace": { type: "string" }, "path-normalization": { type: "string" } },
  });
  if (values.cases === undefined) throw new UsageError("--cases CASES.yaml is required");
  const pathNormalization = pathNormalizationOf(values["path-normalization"]);
  const set = await load(positionals, io);
  let text: string;
  try {
    text = await readFile(resolve(io.cwd, values.cases), "utf8");
  } catch (err) {
    throw new PolicyError("read", values.cases, 0, `cannot read cases file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const root = values["mesh-root-namespace"];
  const results = runCases(set, parseCases(text, values.cases), { pathNormalization, ...(root !== undefined ? { rootNamespace: root } : {}) });
  let failed = 0;
  for (const r of results) {
    const got = describe(r.got.decision, r.got.policy, r.got.rule);
    if (r.passed) {
      io.stdout(`PASS ${r.case.name}: ${got}\n`);
    } else {
      failed++;
      const e = r.case.expect;
      io.stdout(`FAIL ${r.case.name} (${values.cases}:${r.case.line}): got ${got}, want ${describe(e.decision, e.policy, e.rule)}\n`);
      io.stdout(`     reason: ${r.got.reason}\n`);
    }
  }
  io.stdout(`${results.length - failed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

function describe(decision: string, policy: string | null | undefined, rule: number | null | undefined): string {
  let s = decision;
  if (policy !== undefined) s += policy === null ? " (no policy matched)" : ` by ${policy}`;
  if (rule !== undefined && rule !== null) s += ` rule ${rule}`;
  return s;
}
