import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { constants } from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

// The command line's source entry: tests run the sources, never a build in dist/ that may be older than them.
export const BIN = fileURLToPath(new URL("../../src/cli/run.ts", import.meta.url));

// ---------------------------------------------------------------------------------------------------------------
// Every process a test starts goes through spawnChild: it leads its own process group, and whatever is still alive
// when the test process ends — all tests done, a test timed out, an uncaught error, Ctrl-C or the runner's SIGTERM —
// is killed with its whole group, so no gateway, runner or server outlives the test file that started it.

const children = new Set<ChildProcess>();
/** Synchronous cleanups for what is not a child of ours (a daemon that detached itself), run at exit too. */
const exitCleanups = new Set<() => void>();

function endEverything(): void {
  for (const child of children) killGroup(child, "SIGKILL");
  children.clear();
  for (const cleanup of exitCleanups) {
    try {
      cleanup();
    } catch {
      // the process is ending: one failed cleanup must not skip the others
    }
  }
  exitCleanups.clear();
}

process.once("exit", endEverything);
// A signal ends a process without an 'exit' event unless it is handled; exiting from the handler runs the cleanups.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => process.exit(128 + constants.signals[signal]));
}

/** Registers a synchronous cleanup to run when the test process ends; returns a function that unregisters it. */
export function atExit(cleanup: () => void): () => void {
  exitCleanups.add(cleanup);
  return () => exitCleanups.delete(cleanup);
}

/** Whether a process with this id is alive (signal 0). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Sends `signal` to the child's whole process group (the child and anything it started). */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  // Once the leader has exited its group was killed with it (spawnChild), and its pid may since name another process.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  if (!trySignal(-child.pid, signal)) trySignal(child.pid, signal);
}

function trySignal(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false; // ESRCH: nothing left to signal
  }
}

/** spawn(), as the leader of a new process group that is killed when the test process ends. */
export function spawnChild(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn(command, args, { ...options, detached: true });
  children.add(child);
  child.once("exit", () => {
    // Anything the child left behind in its group goes with it.
    if (child.pid !== undefined) trySignal(-child.pid, "SIGKILL");
    children.delete(child);
  });
  return child;
}

/** Resolves the child's exit code (null when a signal ended it); rejects naming `what` if it has not exited by `timeoutMs`. */
export function exited(child: ChildProcess, what: string, timeoutMs = 20_000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off("exit", onExit);
      killGroup(child, "SIGKILL");
      reject(new Error(`${what} did not exit within ${timeoutMs} ms; killed`));
    }, timeoutMs);
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      resolve(code);
    };
    child.once("exit", onExit);
  });
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * Runs `edgeward ARGS…` to completion (Node 24: the same binary as the test runner). One that runs past `timeoutMs`
 * is killed and rejected with what it printed, rather than left for the test's own timeout.
 */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; stdin?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawnChild(process.execPath, [BIN, ...args], {
      cwd: options.cwd, env: options.env, stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      killGroup(child, "SIGKILL");
      reject(new Error(`edgeward ${args.join(" ")} did not finish within ${timeoutMs} ms; stderr:\n${stderr}\nstdout:\n${stdout}`));
    }, timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    if (options.stdin !== undefined) child.stdin!.end(options.stdin);
  });
}

/** A long-running `edgeward` process, resolved once it printed a line matching `ready`. */
export interface Started {
  child: ChildProcess;
  match: RegExpExecArray;
  stderr: () => string;
  stdout: () => string;
  /**
   * Signals the process (SIGKILL: its whole group) and resolves its exit code; rejects, after killing it, if it has
   * not exited within `timeoutMs`.
   */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

export function startCli(args: string[], ready: RegExp, options: { cwd?: string; timeoutMs?: number } = {}): Promise<Started> {
  const child = spawnChild(process.execPath, [BIN, ...args], { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  let stdout = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const stop = (signal: NodeJS.Signals = "SIGTERM", timeoutMs = 20_000) => {
    const exit = exited(child, `edgeward ${args[0]} (sent ${signal})`, timeoutMs).catch((err: Error) => {
      throw new Error(`${err.message}; stderr:\n${stderr}`);
    });
    if (signal === "SIGKILL") killGroup(child, signal);
    else child.kill(signal);
    return exit;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      killGroup(child, "SIGKILL");
      reject(new Error(`edgeward ${args[0]} did not become ready; stderr:\n${stderr}\nstdout:\n${stdout}`));
    }, options.timeoutMs ?? 30_000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      stdout += `${line}\n`;
      const match = ready.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve({ child, match, stderr: () => stderr, stdout: () => stdout, stop });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`edgeward ${args[0]} exited with ${code}; stderr:\n${stderr}`));
    });
  });
}
