import { plainClients } from "../lib/context.ts";
import type { Target } from "../lib/target.ts";

/** The floor: the load generator talks to the model server itself; no proxy, so no CPU is charged. */
export const direct: Target = {
  name: "direct",
  mtls: false,
  unavailable: async () => null,
  async start(ctx) {
    const clients = plainClients();
    return {
      name: "direct",
      url: ctx.modelServerUrl,
      dispatcher: clients.dispatcher,
      freshConnections: clients.freshConnections,
      pids: [],
      stop: () => clients.dispatcher.destroy(),
    };
  },
};
