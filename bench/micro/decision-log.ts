/**
 * Durable decision-log appends per second: the real DecisionLog (hash-chained records, one write + one
 * fdatasync per batch of concurrent appends) at several numbers of outstanding appends. Each level
 * writes a fresh log, which is verified afterwards with `verifyLogFile`.
 *
 *   ./node_modules/.bin/node bench/micro/decision-log.ts [--quick] [--dir DIR]
 *
 * DIR (default: the OS temp directory) must be on the disk the gateway would log to: on tmpfs an
 * fsync costs nothing and the figures mean little.
 */
import { readFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { DecisionLog, verifyLogFile } from "../../src/decision-log/index.ts";
import type { DecisionEntry } from "../../src/decision-log/index.ts";
import { printResult, quantile } from "./result.ts";
import type { MicroResult } from "./result.ts";

const CONCURRENCY = [1, 32, 256, 1024] as const;
const DISTINCT_ENTRIES = 4096;

export interface DecisionLogBenchOptions {
  quick?: boolean;
  /** Where the logs are written (a temporary directory is made inside it and removed afterwards). */
  dir?: string;
}

/** Entries shaped like the gateway's: allows and denies, varied ids, principals, models and reasons. */
function entries(): DecisionEntry[] {
  const start = Date.parse("2026-03-14T09:26:53.589Z");
  return Array.from({ length: DISTINCT_ENTRIES }, (_, i): DecisionEntry => {
    const allowed = i % 5 !== 4;
    return {
      time: new Date(start + i * 7).toISOString(),
      requestId: `req-${(0x7f3a9c + i).toString(16)}`,
      principal: `example.org/ns/team-${i % 17}/sa/app-${i % 97}`,
      method: "POST",
      path: i % 3 === 0 ? "/v1/embeddings" : "/v1/chat/completions",
      model: i % 3 === 0 ? "nomic-embed-text" : "llama-3.1-8b-instruct",
      decision: allowed ? "ALLOW" : "DENY",
      policy: allowed ? `edge/team-${i % 17}` : null,
      rule: allowed ? i % 10 : null,
      reason: allowed ? `allowed by ALLOW policy edge/team-${i % 17} rule ${i % 10}` : "no ALLOW policy matched (default deny)",
      revision: "sha256:9c1e4f0b",
      ...(allowed ? {} : { status: 403 }),
    };
  });
}

interface LevelResult {
  appends: number;
  seconds: number;
  batches: number;
  latenciesUs: Float64Array;
  bytes: number;
  /** Process CPU (user + system, every thread: the fsyncs run on libuv's pool) over the level. */
  cpuUs: number;
}

/** Keeps `concurrency` appends outstanding for `ms`: each of `concurrency` callers appends, awaits, repeats. */
async function level(path: string, concurrency: number, ms: number, pool: readonly DecisionEntry[]): Promise<LevelResult> {
  const log = await DecisionLog.open(path);
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  let next = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(ms * 1e6);
  const caller = async () => {
    while (process.hrtime.bigint() < end) {
      const t0 = process.hrtime.bigint();
      await log.append(pool[next++ % pool.length] as DecisionEntry);
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, caller));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const { batches, records } = log.stats;
  await log.close();
  return { appends: records, seconds, batches, latenciesUs: new Float64Array(latencies).sort(), bytes: statSync(path).size, cpuUs: cpu.user + cpu.system };
}

/** The file system type holding `path`, from /proc/mounts (Linux), or "unknown". */
function fileSystemOf(path: string): string {
  try {
    let best = { mount: "", type: "unknown" };
    for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
      const [, mount, type] = line.split(" ");
      if (mount === undefined || type === undefined) continue;
      const covers = path === mount || path.startsWith(mount.endsWith("/") ? mount : `${mount}/`);
      if (covers && mount.length > best.mount.length) best = { mount, type };
    }
    return best.type;
  } catch {
    return "unknown";
  }
}

const round = (n: number) => (n >= 100 ? Math.round(n) : Number(n.toPrecision(3)));

export async function run(options: DecisionLogBenchOptions = {}): Promise<MicroResult> {
  const ms = options.quick ? 600 : 4000;
  const parent = resolve(options.dir ?? tmpdir());
  const dir = mkdtempSync(join(parent, "edgeward-decision-log-"));
  const pool = entries();
  const rows: MicroResult["rows"] = [];
  try {
    for (const concurrency of CONCURRENCY) {
      const path = join(dir, `decisions-${concurrency}.jsonl`);
      const r = await level(path, concurrency, ms, pool);
      const verified = await verifyLogFile(path);
      if (!verified.ok || verified.records !== r.appends) {
        throw new Error(`decision log written at concurrency ${concurrency} does not verify: ${JSON.stringify(verified)}`);
      }
      rows.push({
        "outstanding appends": concurrency,
        "appends/s": Math.round(r.appends / r.seconds),
        appends: r.appends,
        "fsync batches": r.batches,
        "records/batch": round(r.appends / r.batches),
        "p50 latency µs": round(quantile(r.latenciesUs, 0.5)),
        "p99 latency µs": round(quantile(r.latenciesUs, 0.99)),
        "bytes/record": Math.round(r.bytes / r.appends),
        "CPU µs/append": round(r.cpuUs / r.appends),
        "CPU µs/batch": round(r.cpuUs / r.batches),
      });
      rmSync(path);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    name: "Decision log, durable appends",
    rows,
    notes: [
      `Real DecisionLog with default options (group commit, maxBatch 512): each of N callers appends, awaits ` +
        `the fdatasync'd result, and appends again, for ${ms / 1000} s per level, on a fresh log each time.`,
      "Latency: from append() to its promise resolving (sealing, queueing, write, fdatasync). Every log written " +
        "was verified afterwards (verifyLogFile) and held exactly the records counted.",
      `Logs written to a ${fileSystemOf(parent)} file system.`,
      "CPU: user + system time of the whole process (the fsyncs run on libuv's thread pool, and the kernel's " +
        "work for them is system time). With one append outstanding, every record pays a write + fdatasync of " +
        "its own: that CPU per batch is what durability costs a gateway that sees one request at a time.",
    ],
  };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { quick: { type: "boolean", default: false }, dir: { type: "string" } } });
  printResult(await run({ quick: values.quick, dir: values.dir }));
}
