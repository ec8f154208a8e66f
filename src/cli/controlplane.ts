import { ControlPlane, loadControlPlaneConfig } from "../controlplane/index.ts";
import { configArgument, hostForUrl, startError } from "./config-command.ts";
import type { CliIO } from "./io.ts";

/** `edgeward controlplane --config FILE`: serves until SIGINT/SIGTERM, then answers held long-polls and stops. */
export async function run(argv: string[], io: CliIO): Promise<number> {
  const config = configArgument("controlplane", argv, io);
  if (typeof config === "number") return config;
  let plane: ControlPlane;
  try {
    plane = await ControlPlane.start(await loadControlPlaneConfig(config));
  } catch (err) {
    io.stderr(`edgeward controlplane: ${startError(err)}\n`);
    return 1;
  }
  const { host, port } = plane.address;
  io.stdout(`edgeward controlplane listening on https://${hostForUrl(host)}:${port}\n`);
  return new Promise((resolveExit) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      plane.close().then(() => resolveExit(0), (err: Error) => {
        io.stderr(`edgeward controlplane: ${err.message}\n`);
        resolveExit(1);
      });
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
