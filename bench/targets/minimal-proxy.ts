import { join } from "node:path";
import { BENCH_DIR, mtlsClients, plainClients, processTarget } from "../lib/context.ts";
import { spawnReady } from "../lib/processes.ts";
import type { Target } from "../lib/target.ts";

function minimalProxy(mtls: boolean): Target {
  const name = mtls ? "minimal-proxy-mtls" : "minimal-proxy-plain";
  return {
    name,
    mtls,
    unavailable: async () => null,
    async start(ctx) {
      const tlsArgs = mtls ? ["--cert", ctx.pki.serverCert, "--key", ctx.pki.serverKey, "--ca", ctx.pki.caPem] : [];
      const proc = await spawnReady(
        process.execPath,
        [join(BENCH_DIR, "targets", "minimal-proxy-server.ts"), "--upstream", ctx.modelServerUrl, "--port", "0", ...tlsArgs],
        /listening on (https?:\/\/\S+)/,
        { label: name },
      );
      return processTarget(name, proc, mtls ? mtlsClients(ctx.pki) : plainClients());
    },
  };
}

/** A minimal Node mTLS proxy (client-certificate check + JSON parse + undici forward): the yardstick for Edgeward. */
export const minimalProxyMtls: Target = minimalProxy(true);
/** The same proxy over plain HTTP: the yardstick for plain-HTTP peers (Portkey). */
export const minimalProxyPlain: Target = minimalProxy(false);
