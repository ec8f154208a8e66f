import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** A CPU time reading of a set of processes: nanosecond per-thread sums and the kernel's tick totals. */
export interface CpuReading {
  schedNs: number;
  tickNs: number;
}

let tickNsCache: number | undefined;

function tickNs(): number {
  if (tickNsCache === undefined) {
    let hz = 100;
    try {
      hz = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      // getconf missing: Linux's USER_HZ is 100 everywhere that matters.
    }
    tickNsCache = 1e9 / hz;
  }
  return tickNsCache;
}

function readOr(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/**
 * schedstat is per thread and exact to the nanosecond, so the threads are summed (libuv's pool does the
 * fsyncs, V8's helpers do GC); stat's utime+stime covers every thread the process ever had, in 10 ms ticks.
 */
function readPid(pid: number): CpuReading {
  let schedNs = 0;
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return { schedNs: 0, tickNs: 0 };
  }
  for (const tid of tasks) {
    const text = readOr(`/proc/${pid}/task/${tid}/schedstat`);
    if (text !== null) schedNs += Number(text.split(" ")[0]);
  }
  const stat = readOr(`/proc/${pid}/stat`);
  let ticks = 0;
  if (stat !== null) {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks = Number(fields[11]) + Number(fields[12]);
  }
  return { schedNs, tickNs: ticks * tickNs() };
}

export function readCpu(pids: readonly number[]): CpuReading {
  const total = { schedNs: 0, tickNs: 0 };
  for (const pid of pids) {
    const r = readPid(pid);
    total.schedNs += r.schedNs;
    total.tickNs += r.tickNs;
  }
  return total;
}

/** CPU nanoseconds spent between two readings; falls back to ticks when threads exited in between (their schedstat is gone). */
export function cpuNsBetween(before: CpuReading, after: CpuReading): number {
  const sched = after.schedNs - before.schedNs;
  const ticks = after.tickNs - before.tickNs;
  return ticks > sched + 3 * tickNs() ? ticks : sched;
}

/** Resident set size in bytes, summed over `pids` (VmRSS of /proc/<pid>/status). */
export function readRssBytes(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    const text = readOr(`/proc/${pid}/status`);
    const match = text === null ? null : /^VmRSS:\s+(\d+) kB/m.exec(text);
    if (match) total += Number(match[1]) * 1024;
  }
  return total;
}
