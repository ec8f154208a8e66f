import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError } from "../config/index.ts";
import type { CliIO } from "./io.ts";

/**
 * The arguments of a long-running `edgeward <command> --config FILE`: the config's absolute path, or the exit code
 * when there is nothing to run (0 for --help, 2 for a usage error, with the usage printed).
 */
export function configArgument(command: string, argv: string[], io: CliIO): string | number {
  const usage = `usage: edgeward ${command} --config FILE\n`;
  let values: { config?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: false }));
  } catch (err) {
    io.stderr(`edgeward ${command}: ${(err as Error).message}\n${usage}`);
    return 2;
  }
  if (values.help) {
    io.stdout(usage);
    return 0;
  }
  if (!values.config) {
    io.stderr(usage);
    return 2;
  }
  return resolve(io.cwd, values.config);
}

/** Why a server could not start, in one line: the config key, the address in use, the missing file. */
export function startError(err: unknown): string {
  if (err instanceof ConfigError) return err.message;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === "EADDRINUSE") return `address already in use (${e.message.replace(/^.*EADDRINUSE:?\s*/, "")})`;
  if (e?.code === "ENOENT" && e.path) return `file not found: ${e.path}`;
  return e?.message ?? String(err);
}

/** A host as it is written in a URL (IPv6 in brackets). */
export function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
