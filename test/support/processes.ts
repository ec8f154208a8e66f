import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const BIN = fileURLToPath(new URL("../../bin/edgeward.js", import.meta.url));

/** Runs `edgeward ARGS…` to completion (Node 24: the same binary as the test runner). */
export function runCli(args: string[], options: { cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A long-running `edgeward` process, resolved once it printed a line matching `ready`. */
export interface Started {
  child: ChildProcess;
  match: RegExpExecArray;
  stderr: () => string;
  stdout: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function startCli(args: string[], ready: RegExp, options: { cwd?: string; timeoutMs?: number } = {}): Promise<Started> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  let stdout = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const stop = (signal: NodeJS.Signals = "SIGTERM") =>
    new Promise<number | null>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
      child.once("exit", (code) => resolve(code));
      child.kill(signal);
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
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
