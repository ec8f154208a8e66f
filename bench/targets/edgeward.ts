import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { benchPolicy } from "../fixtures/policy.ts";
import { CLIENT_ID, mtlsClients, processTarget, REPO_DIR, TRUST_DOMAIN } from "../lib/context.ts";
import { BENCH_MODEL, slowModel } from "../lib/loadgen.ts";
import { PROFILES } from "../lib/profile.ts";
import { spawnReady } from "../lib/processes.ts";
import type { Target } from "../lib/target.ts";

/** Budgets high enough never to refuse a benchmark request, low enough to be charged on every one. */
const REQUESTS_PER_MINUTE = 100_000_000;
const TOKENS_PER_MINUTE = 1_000_000_000;

/** `edgeward serve` with the full pipeline: mTLS, an ~80-rule policy with CEL, budgets, the fsync'd decision log, metrics. */
export const edgeward: Target = edgewardTarget("edgeward", null);

/**
 * The same gateway with its decision log on tmpfs, where fdatasync costs nothing: not a configuration to run (the
 * log would not survive a power cut), but the measurement of what the pipeline costs apart from durable I/O.
 */
export const edgewardTmpfsLog: Target = edgewardTarget("edgeward-tmpfs-log", "/dev/shm");

function edgewardTarget(name: string, logParent: string | null): Target {
  return {
    name,
    mtls: true,
    unavailable: async () => (logParent === null || existsSync(logParent) ? null : `${logParent} is missing`),
    async start(ctx) {
      const dir = join(ctx.workDir, name);
      mkdirSync(dir, { recursive: true });
      const logDir = logParent === null ? dir : mkdtempSync(join(logParent, "edgeward-bench-log-"));
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
        decisionLog: join(logDir, "decisions.log"),
        // One client principal holds every connection of every scenario (1,000 slow streams among them), so the
        // per-caller connection and in-flight limits are raised past what the scenarios open.
        limits: {
          maxTokens: 4096, requestsPerMinute: REQUESTS_PER_MINUTE, tokensPerMinute: TOKENS_PER_MINUTE,
          maxConnections: 8192, maxConnectionsPerPrincipal: 2048, maxInflight: 4096, maxInflightPerPrincipal: 2048,
        },
        logLevel: "warn",
      }));
      const proc = await spawnReady(
        process.execPath,
        [join(REPO_DIR, "src", "cli", "run.ts"), "serve", "--config", config],
        /listening on (https:\/\/\S+) \(admin (http:\/\/[^)\s]+)\)/,
        { label: name, cwd: dir },
      );
      return processTarget(name, proc, mtlsClients(ctx.pki), () => {
        if (logDir !== dir) rmSync(logDir, { recursive: true, force: true });
      });
    },
  };
}
