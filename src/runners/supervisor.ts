import { spawn, type ChildProcess } from "node:child_process";
import { extname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { EmbeddedRunnerConfig } from "../config/index.ts";
import type { Logger } from "../telemetry/index.ts";

/**
 * Runs `edgeward runner` for a runner the config marks `embedded`: a child process in a process group of its own
 * (a model that crashes takes down only the runner), on its 0600 Unix socket. A runner that dies is started again
 * after a backoff; stopping the gateway stops it (SIGTERM, then SIGKILL), and it never outlives the gateway: it
 * exits when the pipe on its standard input closes, which happens however the gateway ends, SIGKILL included.
 */

// The runner is started from the same code as the gateway: the sources' entry (src/cli/run.ts) or the build's
// (dist/cli/run.js).
const ENTRY = fileURLToPath(new URL(`../cli/run${extname(import.meta.url)}`, import.meta.url));
const READY = /^edgeward runner listening on (\S+)$/;
/** Lines of the runner's standard error kept to say why it did not start. */
const KEPT_LINES = 5;

export interface SupervisorOptions {
  /** The runner's name in the config (for logs). */
  name: string;
  config: EmbeddedRunnerConfig;
  logger: Logger;
  /** Called when the runner is ready (again), and when it exited, with why and when it is started again. */
  onReady?: (pid: number) => void;
  onExit?: (reason: string, restartInMs: number) => void;
  /** The first restart waits `initialMs`, doubling up to `maxMs` while the runner keeps dying soon after it starts. */
  backoff?: { initialMs: number; maxMs: number };
  /** How long the runner has to stop after SIGTERM before it is killed. */
  stopGraceMs?: number;
}

/** A runner that stayed up this long is healthy again: its next crash restarts it after the shortest wait. */
const STABLE_MS = 60_000;

/** Every supervised runner still alive, killed with its group if this process exits without stopping them. */
const live = new Set<ChildProcess>();
let exitHook = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

export class RunnerSupervisor {
  readonly #opts: SupervisorOptions;
  readonly #backoff: { initialMs: number; maxMs: number };
  #child: ChildProcess | null = null;
  #stopping = false;
  #restartTimer: NodeJS.Timeout | null = null;
  #failures = 0;
  #startedAt = 0;
  /** Restarts after the first start (the `edgeward_runner_restarts_total` counter). */
  restarts = 0;

  private constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.#backoff = opts.backoff ?? { initialMs: 1000, maxMs: 30_000 };
    if (!exitHook) {
      exitHook = true;
      process.once("exit", () => {
        for (const child of live) killGroup(child, "SIGKILL");
      });
    }
  }

  /** Starts the runner and waits until it listens; rejects, saying why, when it does not start. */
  static async start(opts: SupervisorOptions): Promise<RunnerSupervisor> {
    const supervisor = new RunnerSupervisor(opts);
    await supervisor.#spawn();
    return supervisor;
  }

  /** The runner's process id while one runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Stops the runner (SIGTERM to its group, SIGKILL after the grace) and starts it no more. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    const child = this.#child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((done) => child.once("exit", () => done()));
    killGroup(child, "SIGTERM");
    const timer = setTimeout(() => killGroup(child, "SIGKILL"), this.#opts.stopGraceMs ?? 5000);
    await exited;
    clearTimeout(timer);
  }

  #args(): string[] {
    const c = this.#opts.config;
    return [
      ENTRY, "runner", "--model", c.model, "--socket", c.socket, "--name", c.name, "--exit-on-stdin-close",
      ...(c.threads !== undefined ? ["--threads", String(c.threads)] : []),
      ...(c.contextSize !== undefined ? ["--context-size", String(c.contextSize)] : []),
      ...(c.gpu !== undefined ? ["--gpu", c.gpu] : []),
    ];
  }

  /** Starts one runner process; resolves when it listens, rejects when it exits first or does not listen in time. */
  #spawn(): Promise<void> {
    const { name, logger } = this.#opts;
    // detached: the leader of a process group of its own, so that stopping it reaches whatever it started too.
    const child = spawn(process.execPath, this.#args(), { stdio: ["pipe", "pipe", "pipe"], detached: true });
    this.#child = child;
    live.add(child);
    const kept: string[] = [];
    createInterface({ input: child.stderr! }).on("line", (line) => {
      kept.push(line);
      if (kept.length > KEPT_LINES) kept.shift();
      logger.warn({ runner: name, pid: child.pid }, `embedded runner: ${line}`);
    });
    // The pipe is never written: its end, when this process is gone, is the runner's signal to exit.
    child.stdin!.on("error", () => undefined);
    return new Promise((resolve, reject) => {
      let ready = false;
      const timer = setTimeout(() => {
        killGroup(child, "SIGKILL");
        reject(new Error(`the embedded runner ${name} did not listen within ${this.#opts.config.startTimeoutMs} ms`));
      }, this.#opts.config.startTimeoutMs);
      createInterface({ input: child.stdout! }).on("line", (line) => {
        if (ready || !READY.test(line)) return;
        ready = true;
        clearTimeout(timer);
        this.#startedAt = Date.now();
        logger.info({ runner: name, pid: child.pid, socket: this.#opts.config.socket }, "embedded runner started");
        this.#opts.onReady?.(child.pid!);
        resolve();
      });
      child.once("error", (err) => {
        clearTimeout(timer);
        if (!ready) reject(new Error(`the embedded runner ${name} could not be started: ${err.message}`));
      });
      child.once("exit", (code, signal) => {
        live.delete(child);
        clearTimeout(timer);
        const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
        if (!ready) {
          const why = kept.length > 0 ? `: ${kept.join(" / ")}` : "";
          reject(new Error(`the embedded runner ${name} ${how} before it was ready${why}`));
          return;
        }
        if (this.#stopping) return;
        this.#scheduleRestart(how);
      });
    });
  }

  #scheduleRestart(how: string): void {
    const { name, logger } = this.#opts;
    if (Date.now() - this.#startedAt >= STABLE_MS) this.#failures = 0;
    const delay = Math.min(this.#backoff.maxMs, this.#backoff.initialMs * 2 ** this.#failures);
    this.#failures++;
    const reason = `the embedded runner ${how}; restarting in ${delay} ms`;
    logger.error({ runner: name }, reason);
    this.#opts.onExit?.(reason, delay);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopping) return;
      this.restarts++;
      this.#spawn().catch((err: Error) => {
        if (this.#stopping) return;
        // It died before it was ready: try again, later each time.
        this.#startedAt = Date.now();
        this.#scheduleRestart(err.message.replace(/^the embedded runner \S+ /, ""));
      });
    }, delay);
  }
}
