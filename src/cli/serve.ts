import { loadConfig } from "../config/index.ts";
import { Gateway } from "../gateway/index.ts";
import { configArgument, hostForUrl, startError } from "./config-command.ts";
import type { CliIO } from "./io.ts";

/** `edgeward serve --config FILE`: runs the gateway until SIGINT/SIGTERM; SIGHUP reloads policy and credentials. */
export async function run(argv: string[], io: CliIO): Promise<number> {
  const config = configArgument("serve", argv, io);
  if (typeof config === "number") return config;
  let gateway: Gateway;
  try {
    gateway = await Gateway.start(await loadConfig(config));
  } catch (err) {
    io.stderr(`edgeward serve: ${startError(err)}\n`);
    return 1;
  }
  const admin = gateway.adminAddress;
  io.stdout(`edgeward gateway listening on ${gateway.url} (admin http://${hostForUrl(admin.host)}:${admin.port})\n`);
  return waitForSignals(gateway);
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
