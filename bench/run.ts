/**
 * The benchmark: a stand-in model server, then every target (direct, minimal Node proxy plain/mTLS, nginx
 * plain/mTLS, Portkey, Edgeward) measured by one load generator, scenario by scenario, in interleaved rounds
 * (A B C D A B C D …) so that a noisy machine shifts every target alike. Then the microbenchmarks.
 * Writes bench/results/latest.json and latest.md and prints the tables.
 *
 * Run: npm run bench [-- --quick] [-- --targets direct,minimal-proxy-mtls,edgeward] [-- --rounds N]
 *      [-- --profile default|quick|smoke] [-- --out DIR] [-- --no-setup] [-- --no-micro] [-- --keep]
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, release, tmpdir, totalmem, type as osType } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { BENCH_DIR, createPki, startModelServer } from "./lib/context.ts";
import { cpuNsBetween, readCpu, readRssBytes } from "./lib/proc-stats.ts";
import { chatBody, closedLoop, streamBody } from "./lib/loadgen.ts";
import { hookExit } from "./lib/processes.ts";
import { PROFILES, type Profile } from "./lib/profile.ts";
import { markdownReport, checks } from "./lib/report.ts";
import { summarize, MINIMAL_MTLS, type BenchResults, type MicroEntry, type ScenarioResult, type TargetStatus } from "./lib/results.ts";
import type { Measurement, Scenario } from "./lib/scenario.ts";
import type { BenchContext, RunningTarget, Target } from "./lib/target.ts";
import { chatClosedLoop } from "./scenarios/chat-closed-loop.ts";
import { chatOpenLoop } from "./scenarios/chat-open-loop.ts";
import { handshake } from "./scenarios/handshake.ts";
import { slowStreams } from "./scenarios/slow-streams.ts";
import { streaming } from "./scenarios/streaming.ts";
import { direct } from "./targets/direct.ts";
import { edgeward, edgewardTmpfsLog } from "./targets/edgeward.ts";
import { minimalProxyMtls, minimalProxyPlain } from "./targets/minimal-proxy.ts";

const USAGE = "usage: node bench/run.ts [--quick | --profile default|quick|smoke] [--targets a,b,…] [--rounds N] [--out DIR] [--no-setup] [--no-micro] [--keep]";

/** Peer targets written as their own modules; a missing module is reported, never silently dropped. */
const PEER_MODULES = [
  { file: "nginx.ts", names: ["nginx-plain", "nginx-mtls"] },
  { file: "portkey.ts", names: ["portkey"] },
];

function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

function isTarget(value: unknown): value is Target {
  const v = value as Partial<Target> | null;
  return typeof v === "object" && v !== null && typeof v.name === "string" && typeof v.start === "function" && typeof v.unavailable === "function";
}

interface Candidate {
  target: Target | null;
  name: string;
  mtls: boolean;
  missing?: string;
}

/** Every target in interleaving order: the floor, the Node yardsticks, the peers, then Edgeward. */
async function candidates(): Promise<Candidate[]> {
  const list: Candidate[] = [direct, minimalProxyPlain, minimalProxyMtls].map((t) => ({ target: t, name: t.name, mtls: t.mtls }));
  for (const peer of PEER_MODULES) {
    const path = join(BENCH_DIR, "targets", peer.file);
    if (!existsSync(path)) {
      for (const name of peer.names) list.push({ target: null, name, mtls: name.endsWith("mtls"), missing: `bench/targets/${peer.file} is missing` });
      continue;
    }
    const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    const found = Object.values(mod).filter(isTarget).sort((a, b) => Number(a.mtls) - Number(b.mtls));
    for (const t of found) list.push({ target: t, name: t.name, mtls: t.mtls });
  }
  list.push({ target: edgeward, name: edgeward.name, mtls: true });
  list.push({ target: edgewardTmpfsLog, name: edgewardTmpfsLog.name, mtls: true });
  return list;
}

function selected(name: string, filter: string[] | null): boolean {
  return filter === null || filter.some((f) => name === f || name.startsWith(`${f}-`));
}

async function availability(list: Candidate[]): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  for (const c of list) out.set(c.name, c.target === null ? c.missing! : await c.target.unavailable());
  return out;
}

function scenariosFor(profile: Profile): { scenario: Scenario; params: Record<string, unknown> }[] {
  return [
    { scenario: chatClosedLoop, params: { connections: profile.chat.concurrency, "seconds per block": profile.chat.durationMs / 1000, "keep-alive": "yes" } },
    { scenario: chatOpenLoop, params: { "rate req/s": profile.openLoop.ratePerSecond, "seconds per block": profile.openLoop.durationMs / 1000 } },
    ...profile.stream.chunks.map((chunks) => ({
      scenario: streaming(chunks),
      params: { chunks, "concurrent streams": profile.stream.concurrency, "seconds per block": profile.stream.durationMs / 1000 },
    })),
    {
      scenario: slowStreams,
      params: { streams: profile.slowStreams.streams, chunks: profile.slowStreams.chunks, "ms between chunks": profile.slowStreams.chunkDelayMs, "ramp ms": profile.slowStreams.rampMs },
    },
    { scenario: handshake, params: { "concurrent clients": profile.handshake.concurrency, "seconds per block": profile.handshake.durationMs / 1000, "TLS session resumption": "off" } },
  ];
}

async function runMicro(quick: boolean): Promise<MicroEntry[]> {
  const dir = join(BENCH_DIR, "micro");
  if (!existsSync(dir)) return [];
  const entries: MicroEntry[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts")).sort()) {
    const mod = (await import(pathToFileURL(join(dir, file)).href)) as { run?: unknown };
    if (typeof mod.run !== "function") continue;
    log(`micro ${file}`);
    try {
      entries.push({ file, result: await (mod.run as (o: { quick: boolean }) => Promise<MicroEntry["result"]>)({ quick }) });
    } catch (error) {
      entries.push({ file, failed: (error as Error).message });
    }
  }
  return entries;
}

function machine(): BenchResults["machine"] {
  const cpu = cpus();
  return {
    cpu: cpu[0]?.model.trim() ?? "unknown",
    cores: cpu.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${osType()} ${release()}`,
    node: process.versions.node,
    date: new Date().toISOString(),
  };
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        quick: { type: "boolean", default: false },
        profile: { type: "string" },
        targets: { type: "string" },
        rounds: { type: "string" },
        out: { type: "string" },
        "no-setup": { type: "boolean", default: false },
        "no-micro": { type: "boolean", default: false },
        keep: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const profileName = values.profile ?? (values.quick ? "quick" : "default");
  const base = PROFILES[profileName as Profile["name"]];
  const rounds = values.rounds === undefined ? base?.rounds : Number(values.rounds);
  if (base === undefined || rounds === undefined || !Number.isInteger(rounds) || rounds < 1) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const profile: Profile = { ...base, rounds };
  const filter = values.targets === undefined ? null : values.targets.split(",").map((s) => s.trim()).filter(Boolean);
  const outDir = values.out ?? join(BENCH_DIR, "results");
  const started = performance.now();

  let list = (await candidates()).filter((c) => selected(c.name, filter));
  let status = await availability(list);
  const setup = join(BENCH_DIR, "setup.sh");
  const peersMissing = list.some((c) => c.name !== "direct" && !c.name.startsWith("minimal-") && !c.name.startsWith("edgeward") && status.get(c.name) !== null);
  if (peersMissing && !values["no-setup"] && existsSync(setup)) {
    log("installing the peers (bench/setup.sh)");
    const r = spawnSync("bash", [setup], { stdio: ["ignore", process.stderr, process.stderr] });
    if (r.status !== 0) log(`bench/setup.sh exited with ${r.status ?? r.signal}; peers it could not install are listed as unavailable`);
    list = (await candidates()).filter((c) => selected(c.name, filter));
    status = await availability(list);
  }
  if (!list.some((c) => c.name === MINIMAL_MTLS)) log(`${MINIMAL_MTLS} is not selected: ratios to it will be empty`);

  hookExit();
  const workDir = mkdtempSync(join(tmpdir(), "edgeward-bench-"));
  // Also on Ctrl-C or SIGTERM, which end the process from the handler in lib/processes.ts.
  const removeWorkDir = () => rmSync(workDir, { recursive: true, force: true });
  if (!values.keep) process.once("exit", removeWorkDir);
  const running: RunningTarget[] = [];
  const statuses: TargetStatus[] = [];
  let model: Awaited<ReturnType<typeof startModelServer>> | undefined;
  const scenarioResults: ScenarioResult[] = [];
  try {
    log(`profile ${profile.name}, ${profile.rounds} round(s), work dir ${workDir}`);
    const pki = await createPki(workDir);
    model = await startModelServer();
    const ctx: BenchContext = { workDir, modelServerUrl: model.url, modelServerPid: model.pid, pki };
    for (const c of list) {
      let reason = status.get(c.name) ?? null;
      let rssIdleMB: number | null = null;
      if (reason === null && c.target !== null) {
        try {
          const t = await c.target.start(ctx);
          running.push(t);
          if (t.pids.length > 0) rssIdleMB = readRssBytes(t.pids) / 2 ** 20;
          log(`started ${c.name}`);
        } catch (error) {
          reason = `failed to start: ${(error as Error).message.split("\n")[0]}`;
        }
      }
      if (reason !== null) log(`${c.name} unavailable: ${reason}`);
      statuses.push({ name: c.name, mtls: c.mtls, unavailable: reason, rssIdleMB });
    }
    const names = running.map((t) => t.name);
    for (const target of running) {
      await closedLoop(target, { concurrency: profile.chat.concurrency, durationMs: profile.initialWarmupMs, body: chatBody() });
      await closedLoop(target, { concurrency: 4, durationMs: profile.initialWarmupMs / 5, body: streamBody(20), stream: true });
    }
    log(`warmed up (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    for (const { scenario, params } of scenariosFor(profile)) {
      const rounds: ScenarioResult["rounds"] = [];
      for (let round = 0; round < profile.rounds; round++) {
        const results: Record<string, Measurement | { failed: string }> = {};
        for (const target of running) {
          try {
            if (round === 0) await scenario.warmup(target, profile);
            // What the idle targets burn meanwhile shows how quiet the block was (JSON only).
            const others = running.filter((t) => t !== target).flatMap((t) => t.pids);
            const before = readCpu(others);
            const measurement = await scenario.run(target, profile);
            results[target.name] = { ...measurement, otherTargetsCpuMs: cpuNsBetween(before, readCpu(others)) / 1e6 };
          } catch (error) {
            results[target.name] = { failed: (error as Error).message.split("\n")[0]! };
          }
        }
        rounds.push(results);
        log(`${scenario.name} round ${round + 1}/${profile.rounds} done (${((performance.now() - started) / 1000).toFixed(0)} s)`);
      }
      scenarioResults.push(summarize({ name: scenario.name, title: scenario.title, params, metrics: scenario.metrics, rounds }, names));
    }
  } finally {
    await Promise.allSettled(running.map((t) => t.stop()));
    await model?.stop();
    if (!values.keep) removeWorkDir();
  }

  const micro = values["no-micro"] ? [] : await runMicro(profile.name !== "default");
  const results: BenchResults = {
    machine: machine(),
    config: { profile: profile.name, rounds: profile.rounds, targets: statuses.map((s) => s.name), parameters: profile },
    targets: statuses,
    scenarios: scenarioResults,
    checks: checks(scenarioResults, statuses.filter((s) => s.unavailable === null).map((s) => s.name)),
    micro,
    durationSeconds: (performance.now() - started) / 1000,
  };
  mkdirSync(outDir, { recursive: true });
  const markdown = markdownReport(results);
  writeFileSync(join(outDir, "latest.json"), `${JSON.stringify(results, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2)}\n`);
  writeFileSync(join(outDir, "latest.md"), markdown);
  process.stdout.write(markdown);
  log(`wrote ${join(outDir, "latest.json")} and latest.md in ${results.durationSeconds.toFixed(0)} s`);
  return 0;
}

// Exit even if a peer left a handle open; stdout to a pipe or file is synchronous on Linux, so nothing is lost.
process.exit(await main());
