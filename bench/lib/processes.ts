import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

/** A child process that printed its ready line. */
export interface ReadyProcess {
  child: ChildProcess;
  pid: number;
  match: RegExpExecArray;
  /** What it wrote on stderr so far (bounded), for error reports. */
  stderr(): string;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let hooked = false;

/** Every process the harness started dies with it: normal exit, error, Ctrl-C or SIGTERM. Idempotent. */
export function hookExit(): void {
  if (hooked) return;
  hooked = true;
  const killAll = () => {
    for (const child of live) child.kill("SIGKILL");
    live.clear();
  };
  process.once("exit", killAll);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(130);
    });
  }
}

const STDERR_KEEP = 16 * 1024;

/** Spawns `command args…` and resolves once a stdout line matches `ready` (rejects on exit or timeout). */
export function spawnReady(
  command: string,
  args: readonly string[],
  ready: RegExp,
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; label?: string } = {},
): Promise<ReadyProcess> {
  hookExit();
  const label = options.label ?? command;
  const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  child.once("exit", () => live.delete(child));
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-STDERR_KEEP);
  });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const force = setTimeout(() => child.kill("SIGKILL"), 5000);
      child.once("exit", () => {
        clearTimeout(force);
        resolve();
      });
      child.kill("SIGTERM");
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${label} did not become ready; stderr:\n${stderr}`));
    }, options.timeoutMs ?? 30_000);
    const lines = createInterface({ input: child.stdout! });
    let done = false;
    lines.on("line", (line) => {
      if (done) return;
      const match = ready.exec(line);
      if (match === null) return;
      done = true;
      clearTimeout(timer);
      // Keep draining stdout so a chatty child never blocks on a full pipe.
      resolve({ child, pid: child.pid!, match, stderr: () => stderr, stop });
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (!done) reject(new Error(`${label} exited (${code ?? signal}) before it was ready; stderr:\n${stderr}`));
    });
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`${label} could not start: ${error.message}`));
    });
  });
}
