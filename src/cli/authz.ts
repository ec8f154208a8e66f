import { loadConfig } from "../config/index.ts";
import { AuthzService } from "../gateway/ext-authz/index.ts";
import type { CliIO } from "./io.ts";
import { configArgument, hostForUrl, startError } from "./config-command.ts";

/**
 * `edgeward authz --config FILE`: Envoy's external authorization service (gRPC and/or HTTP, from the config's `authz`
 * section) until SIGINT/SIGTERM; SIGHUP reloads the policy.
 */
export async function run(argv: string[], io: CliIO): Promise<number> {
  const config = configArgument("authz", argv, io);
  if (typeof config === "number") return config;
  let service: AuthzService;
  try {
    service = await AuthzService.start(await loadConfig(config));
  } catch (err) {
    io.stderr(`edgeward authz: ${startError(err)}\n`);
    return 1;
  }
  const urls = [
    ...(service.server.grpcAddress === null ? [] : [`grpc://${hostForUrl(service.server.grpcAddress.host)}:${service.server.grpcAddress.port}`]),
    ...(service.server.httpAddress === null ? [] : [`http://${hostForUrl(service.server.httpAddress.host)}:${service.server.httpAddress.port}`]),
  ];
  const admin = service.adminAddress;
  io.stdout(`edgeward authz listening on ${urls.join(" ")} (admin http://${hostForUrl(admin.host)}:${admin.port})\n`);
  return untilSignal(service);
}

function untilSignal(service: AuthzService): Promise<number> {
  const onHup = () => {
    service.reloadPolicy().catch((err: Error) => service.state.logger.error({ err: err.message }, "policy reload refused; the previous policy stays in force"));
  };
  process.on("SIGHUP", onHup);
  return new Promise((resolveExit) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      process.off("SIGHUP", onHup);
      service.close().then(() => resolveExit(0), () => resolveExit(1));
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
