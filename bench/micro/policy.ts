/**
 * Policy decision time: Edgeward's `evaluate` against cedar-wasm on an equivalent policy set, for 10,
 * 100 and 1,000 rules, with and without a max_tokens condition (CEL in Edgeward), over a mix of
 * requests decided at different depths. Both engines are first checked to agree on every request.
 *
 *   ./node_modules/.bin/node bench/micro/policy.ts [--quick]
 */
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { evaluate, parsePolicies } from "../../src/policy/index.ts";
import type { Decision, PolicyInput, PolicySet } from "../../src/policy/index.ts";
import { cedarRequest, generatePolicies } from "./policies.ts";
import type { BenchRequest, GeneratedPolicies, PolicyShape } from "./policies.ts";
import { printResult, quantile } from "./result.ts";
import type { MicroResult } from "./result.ts";

/** The part of cedar-wasm's Node entry used here (its own types live in bench/peers). */
interface CedarAnswer {
  type: "success" | "failure";
  response?: { decision: "allow" | "deny"; diagnostics: { reason: string[]; errors: unknown[] } };
  errors?: { message: string }[];
}
interface Cedar {
  getCedarVersion(): string;
  preparsePolicySet(id: string, policies: { staticPolicies: Record<string, string> }): { type: string; errors?: { message: string }[] };
  statefulIsAuthorized(call: ReturnType<typeof cedarRequest> & { preparsedPolicySetId: string; entities: [] }): CedarAnswer;
}

const SIZES = [10, 100, 1000] as const;
const BATCH = 1000;
const MAX_SAMPLES = 1 << 21;

interface Budget {
  warmupMs: number;
  samplesMs: number;
  batchesMs: number;
}

const FULL: Budget = { warmupMs: 300, samplesMs: 1000, batchesMs: 500 };
const QUICK: Budget = { warmupMs: 15, samplesMs: 60, batchesMs: 30 };

function loadCedar(): Cedar | string {
  try {
    const require = createRequire(new URL("../peers/package.json", import.meta.url));
    return require("@cedar-policy/cedar-wasm/nodejs") as Cedar;
  } catch (err) {
    return `cedar-wasm not installed in bench/peers (${(err as Error).message.split("\n")[0]}); run bench/setup.sh`;
  }
}

function edgewardInput(r: BenchRequest): PolicyInput {
  return {
    source: { principal: r.principal, ip: "10.0.3.17" },
    request: {
      method: r.method,
      path: r.path,
      host: "gateway.edge.example.org:8443",
      port: 8443,
      headers: { "content-type": "application/json", "user-agent": "OpenAI/JS 6.9.0", "x-request-id": "req-7f3a9c" },
      model: r.model,
      maxTokens: r.maxTokens,
      stream: false,
      promptTokens: 42,
    },
  };
}

/** An engine prepared for one policy set: `decide(i)` decides request i of the mix. */
interface Engine {
  name: string;
  decide(i: number): unknown;
}

function edgewardEngine(generated: GeneratedPolicies): Engine & { check(): void } {
  const set: PolicySet = parsePolicies(generated.edgeward, "bench.yaml");
  const inputs = generated.requests.map((r) => edgewardInput(r.request));
  return {
    name: generated.shape.principals === "suffix" ? "edgeward, suffix principals" : "edgeward",
    decide: (i) => evaluate(set, inputs[i] as PolicyInput),
    check() {
      generated.requests.forEach(({ request, expected }, i) => {
        const got = evaluate(set, inputs[i] as PolicyInput);
        if (got.decision !== expected.decision || got.policy !== expected.policy || got.rule !== expected.rule) {
          throw new Error(`edgeward disagrees on ${describe(request)}: got ${summary(got)}, want ${JSON.stringify(expected)}`);
        }
      });
    },
  };
}

function cedarEngine(cedar: Cedar, generated: GeneratedPolicies): Engine & { check(): void } {
  const id = `bench-${generated.shape.rules}-${generated.shape.cel ? "cel" : "plain"}`;
  const parsed = cedar.preparsePolicySet(id, { staticPolicies: generated.cedar });
  if (parsed.type !== "success") throw new Error(`cedar rejected the policies: ${JSON.stringify(parsed.errors)}`);
  const calls = generated.requests.map((r) => ({ ...cedarRequest(r.request), preparsedPolicySetId: id, entities: [] as [] }));
  const decide = (i: number) => cedar.statefulIsAuthorized(calls[i] as (typeof calls)[number]);
  return {
    name: "cedar-wasm",
    decide,
    check() {
      generated.requests.forEach(({ request, expected }, i) => {
        const answer = decide(i);
        const response = answer.response;
        const want = expected.cedarId === null ? [] : [expected.cedarId];
        if (
          answer.type !== "success" || response === undefined || response.diagnostics.errors.length > 0 ||
          response.decision !== expected.decision.toLowerCase() ||
          JSON.stringify([...response.diagnostics.reason].sort()) !== JSON.stringify(want)
        ) {
          throw new Error(`cedar disagrees on ${describe(request)}: got ${JSON.stringify(answer)}, want ${JSON.stringify(expected)}`);
        }
      });
    },
  };
}

function describe(r: BenchRequest): string {
  return `${r.kind} ${r.principal ?? "(unauthenticated)"} ${r.method} ${r.path} ${r.model} max_tokens=${r.maxTokens}`;
}

function summary(d: Decision): string {
  return `${d.decision} ${d.policy ?? "-"} rule ${d.rule ?? "-"} (${d.reason})`;
}

interface Timing {
  p50: number;
  p99: number;
  /** Mean µs per decision from timed batches of BATCH decisions. */
  mean: number;
  /** p50 µs per request kind. */
  byKind: Map<string, number>;
}

/** Runs `fn` over the mix until `ms` have passed (checking the clock once per pass). */
function runFor(ms: number, n: number, fn: (i: number) => void): void {
  const end = process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));
  while (process.hrtime.bigint() < end) for (let i = 0; i < n; i++) fn(i);
}

function time(engine: Engine, kinds: readonly string[], budget: Budget): Timing {
  const n = kinds.length;
  runFor(budget.warmupMs, n, (i) => engine.decide(i));

  // Single decisions, each between two clock reads: the distribution (p50/p99).
  const samples = new Float64Array(MAX_SAMPLES);
  const sampleKind = new Uint16Array(MAX_SAMPLES);
  let count = 0;
  const end = process.hrtime.bigint() + BigInt(budget.samplesMs * 1e6);
  while (count + n <= MAX_SAMPLES && process.hrtime.bigint() < end) {
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      engine.decide(i);
      samples[count] = Number(process.hrtime.bigint() - t0) / 1e3;
      sampleKind[count++] = i;
    }
  }

  // Batches of decisions between two clock reads: the mean, free of the clock's own cost. A batch is
  // BATCH decisions, or fewer for a slow engine so that several batches fit in the budget.
  const all = samples.slice(0, count).sort();
  const batch = Math.max(n, Math.min(BATCH, Math.floor((budget.batchesMs * 1e3) / 4 / quantile(all, 0.5))));
  let decisions = 0;
  let ns = 0n;
  const batchEnd = process.hrtime.bigint() + BigInt(budget.batchesMs * 1e6);
  while (process.hrtime.bigint() < batchEnd) {
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < batch; k++) engine.decide(k % n);
    ns += process.hrtime.bigint() - t0;
    decisions += batch;
  }

  const byKind = new Map<string, number>();
  for (const kind of new Set(kinds)) {
    const mine: number[] = [];
    for (let s = 0; s < count; s++) if (kinds[sampleKind[s] as number] === kind) mine.push(samples[s] as number);
    byKind.set(kind, quantile(mine.sort((a, b) => a - b), 0.5));
  }
  return { p50: quantile(all, 0.5), p99: quantile(all, 0.99), mean: Number(ns) / 1e3 / decisions, byKind };
}

/** The cost of the two clock reads around each single decision (included in p50/p99). */
function clockOverheadUs(): number {
  const samples = new Float64Array(100_000);
  for (let i = 0; i < samples.length; i++) {
    const t0 = process.hrtime.bigint();
    samples[i] = Number(process.hrtime.bigint() - t0) / 1e3;
  }
  return quantile(samples.sort(), 0.5);
}

const round = (us: number) => (us >= 100 ? Math.round(us) : Number(us.toPrecision(3)));

export async function run(options: { quick?: boolean } = {}): Promise<MicroResult> {
  const budget = options.quick ? QUICK : FULL;
  const cedar = loadCedar();
  const rows: MicroResult["rows"] = [];
  const notes: string[] = [];
  const shapes: PolicyShape[] = [
    ...SIZES.flatMap((rules) => [false, true].map((cel) => ({ rules, cel }))),
    ...SIZES.slice(1).map((rules) => ({ rules, cel: true, principals: "suffix" as const })),
  ];
  // Cedar's p50 per rule count and condition, to compare every Edgeward row of that size with.
  const cedarP50 = new Map<string, number>();
  for (const shape of shapes) {
    const generated = generatePolicies(shape);
    const kinds = generated.requests.map((r) => r.request.kind);
    const engines: (Engine & { check(): void })[] = [edgewardEngine(generated)];
    if (typeof cedar !== "string" && shape.principals === undefined) engines.push(cedarEngine(cedar, generated));
    for (const engine of engines) engine.check();
    const timings = engines.map((engine) => time(engine, kinds, budget));
    const key = `${shape.rules}/${shape.cel}`;
    if (timings[1] !== undefined) cedarP50.set(key, timings[1].p50);
    const cedar50 = cedarP50.get(key);
    engines.forEach((engine, e) => {
      const t = timings[e] as Timing;
      const defaultDeny = [...t.byKind].filter(([k]) => k.startsWith("default-deny")).map(([, v]) => v);
      rows.push({
        engine: engine.name,
        rules: shape.rules,
        condition: shape.cel ? (engine.name === "cedar-wasm" ? "when" : "CEL") : "none",
        "p50 µs": round(t.p50),
        "p99 µs": round(t.p99),
        "mean µs": round(t.mean),
        "decisions/s": Math.round(1e6 / t.mean),
        "p50 allow µs": round(t.byKind.get("allow") ?? Number.NaN),
        "p50 default deny µs": round(Math.max(...defaultDeny)),
        "cedar p50 / this p50": cedar50 === undefined ? "-" : `${(cedar50 / t.p50).toFixed(1)}×`,
      });
    });
  }
  const mix = generatePolicies({ rules: 100, cel: true }).requests;
  notes.push(
    `Mix of ${mix.length} requests per policy set: allows decided by the first, 1/4, 1/2, 3/4 and last ALLOW rule, ` +
      "the same callers asking for an ungranted model or over their token limit, DENY-rule hits, unknown and " +
      "unauthenticated callers; ~5 % of the rules are DENY rules. Both engines agreed with the expected decision " +
      "and deciding rule on every request before timing.",
    `p50/p99: each decision timed alone between two process.hrtime.bigint() reads (they cost ~${round(clockOverheadUs())} µs, ` +
      `included); mean and decisions/s: timed batches of ${BATCH} decisions (fewer for cedar-wasm at 1,000 rules, so that several fit). "p50 default deny" is the slowest of the default-deny kinds.`,
    "Edgeward: parsePolicies once, then evaluate(set, input) per decision (CEL compiled at load). " +
      "\"suffix principals\": the same policies with each principal written as the pattern `*example.org/ns/…/sa/…`, " +
      "so no rule can be looked up by exact principal and every candidate rule is tried in turn (Edgeward's worst case; " +
      "Cedar entity ids have no such pattern).",
  );
  if (typeof cedar === "string") notes.push(cedar);
  else {
    notes.push(
      `cedar-wasm ${cedar.getCedarVersion()}: policies pre-parsed once with preparsePolicySet, then statefulIsAuthorized ` +
        "per decision (each call still converts the request object into Wasm and the answer back, as any caller must).",
    );
  }
  return { name: "Policy decision time", rows, notes };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { quick: { type: "boolean", default: false } } });
  printResult(await run({ quick: values.quick }));
}
