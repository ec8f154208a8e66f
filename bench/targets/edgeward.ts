import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { benchPolicy } from "../fixtures/policy.ts";
import { CLIENT_ID, mtlsClients, REPO_DIR, TRUST_DOMAIN } from "../lib/context.ts";
import { BENCH_MODEL, slowModel } from "../lib/loadgen.ts";
import { PROFILES } from "../lib/profile.ts";
import { spawnReady } from "../lib/processes.ts";
import type { Target } from "../lib/target.ts";

/** Budgets high enough never to refuse a benchmark request, low enough to be charged on every one. */
const REQUESTS_PER_MINUTE = 100_000_000;
const TOKENS_PER_MINUTE = 1_000_000_000;

/** `edgeward serve` with the full pipeline: mTLS, an ~80-rule policy with CEL, budgets, the fsync'd decision log, metrics. */
export const edgeward: Target = {
  name: "edgeward",
  mtls: true,
  unavailable: async () => null,
  async start(ctx) {
    const dir = join(ctx.workDir, "edgeward");
    mkdirSync(dir, { recursive: true });
    const policy = benchPolicy(TRUST_DOMAIN, CLIENT_ID, `${BENCH_MODEL}*`);
    // Runners map exact model names: one per chunk delay a profile's slow streams ask for.
    const delays = new Set(Object.values(PROFILES).map((p) => p.slowStreams.chunkDelayMs));
    const models = [BENCH_MODEL, ...[...delays].map(slowModel)];
    writeFileSync(join(dir, "policy.yaml"), policy.yaml);
    const config = join(dir, "edgeward.yaml");
    writeFileSync(config, stringify({
      listen: "127.0.0.1:0",
      admin: "127.0.0.1:0",
      tls: { cert: ctx.pki.serverCert, key: ctx.pki.serverKey },
      trustBundles: { [TRUST_DOMAIN]: ctx.pki.caPem },
      policy: join(dir, "policy.yaml"),
      // As many upstream connections as the slow-stream scenario holds streams open.
      runners: [{ name: "model", url: ctx.modelServerUrl, models, maxConnections: 4096 }],
      decisionLog: join(dir, "decisions.log"),
      limits: { maxTokens: 4096, requestsPerMinute: REQUESTS_PER_MINUTE, tokensPerMinute: TOKENS_PER_MINUTE },
      logLevel: "warn",
    }));
    const proc = await spawnReady(
      process.execPath,
      [join(REPO_DIR, "bin", "edgeward.js"), "serve", "--config", config],
      /listening on (https:\/\/\S+) \(admin (http:\/\/[^)\s]+)\)/,
      { label: "edgeward", cwd: dir },
    );
    const clients = mtlsClients(ctx.pki);
    return {
      name: "edgeward",
      url: proc.match[1]!,
      dispatcher: clients.dispatcher,
      freshConnections: clients.freshConnections,
      pids: [proc.pid],
      async stop() {
        await clients.dispatcher.destroy();
        await proc.stop();
      },
    };
  },
};
