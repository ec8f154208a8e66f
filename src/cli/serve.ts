import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "../config/index.ts";
import { Gateway } from "../gateway/index.ts";
import type { CliIO } from "./io.ts";

const USAGE = "usage: edgeward serve --config FILE\n";

/** `edgeward serve --config FILE`: runs the gateway until SIGINT/SIGTERM; SIGHUP reloads policy and credentials. */
export async function run(argv: string[], io: CliIO): Promise<number> {
  let values: { config?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: false }));
  } catch (err) {
    io.stderr(`edgeward serve: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  if (!values.config) {
    io.stderr(USAGE);
    return 2;
  }
  let gateway: Gateway;
  try {
    gateway = await Gateway.start(await loadConfig(resolve(io.cwd, values.config)));
  } catch (err) {
    io.stderr(`edgeward serve: ${startError(err)}\n`);
    return 1;
  }
  const { host, port } = gateway.address;
  const admin = gateway.adminAddress;
  io.stdout(`edgeward gateway listening on https://${hostForUrl(host)}:${port} (admin http://${hostForUrl(admin.host)}:${admin.port})\n`);
  return waitForSignals(gateway);
}

export function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

export function startError(err: unknown): string {
  if (err instanceof ConfigError) return err.message;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === "EADDRINUSE") return `address already in use (${e.message.replace(/^.*EADDRINUSE:?\s*/, "")})`;
  if (e?.code === "ENOENT" && e.path) return `file not found: ${e.path}`;
  return e?.message ?? String(err);
}

/**
 * Serves until SIGINT/SIGTERM (exit 0 after a graceful close). SIGHUP reloads the policy and the TLS credentials,
 * keeping what is in force when the new files are invalid.
 */
export function waitForSignals(gateway: Gateway, onStop?: () => Promise<void>): Promise<number> {
  const onHup = () => {
    gateway.reloadPolicy().catch((err: Error) => gateway.state.logger.error({ err: err.message }, "policy reload refused; the previous policy stays in force"));
    gateway.reloadCredentials().catch((err: Error) => gateway.state.logger.error({ err: err.message }, "credential reload refused; the credentials in force stay"));
  };
  process.on("SIGHUP", onHup);
  return new Promise((resolveExit) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      process.off("SIGHUP", onHup);
      void gateway.close().then(() => onStop?.()).then(() => resolveExit(0), () => resolveExit(1));
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
