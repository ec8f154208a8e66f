/**
 * What the gateway adds per request: the same small chat completion sent straight to a stand-in model
 * server and through `edgeward serve` (mTLS, policy, budget, fsync'd decision log), interleaved in rounds.
 * Run: ./node_modules/.bin/node bench/gateway-overhead.ts [--requests N] [--concurrency C] [--rounds R]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { stringify } from "yaml";
import { FakeRunner } from "../test/support/fake-runner.ts";
import { createPki, mtlsAgent } from "../test/support/gateway-fixture.ts";
import { startCli } from "../test/support/processes.ts";

const { values } = parseArgs({ options: { requests: { type: "string", default: "2000" }, concurrency: { type: "string", default: "16" }, rounds: { type: "string", default: "3" } } });
const N = Number(values.requests);
const C = Number(values.concurrency);
const ROUNDS = Number(values.rounds);

const dir = mkdtempSync(join(tmpdir(), "edgeward-bench-"));
await createPki(dir, ["alice"]);
const fake = await FakeRunner.start();
writeFileSync(join(dir, "edgeward.yaml"), stringify({
  listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "gateway.pem", key: "gateway.key" },
  trustBundles: { "example.org": "ca/ca.pem" },
  policy: fileURLToPath(new URL("../test/gateway/fixtures/policy.yaml", import.meta.url)),
  runners: [{ name: "fake", url: fake.url, models: ["mistral-7b-instruct"] }],
  decisionLog: "decisions.log", logLevel: "warn",
}));
const gw = await startCli(["serve", "--config", join(dir, "edgeward.yaml")], /listening on https:\/\/127\.0\.0\.1:(\d+)/);
const body = JSON.stringify({ model: "mistral-7b-instruct", messages: [{ role: "user", content: "hello" }], max_tokens: 16 });

async function load(url: string, agent: Agent): Promise<{ rps: number; p50: number; p99: number }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: C }, async () => {
    while (next < N) {
      next++;
      const t = performance.now();
      const res = await request(url, { dispatcher: agent, method: "POST", headers: { "content-type": "application/json" }, body });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
      latencies.push(performance.now() - t);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { rps: N / seconds, p50: latencies[Math.floor(N * 0.5)]!, p99: latencies[Math.floor(N * 0.99)]! };
}

const direct = new Agent({ connections: C });
const viaGateway = mtlsAgent(join(dir, "ca", "ca.pem"), join(dir, "alice"));
const rows: string[] = [];
try {
  await load(`${fake.url}/v1/chat/completions`, direct); // warm-up
  await load(`https://127.0.0.1:${gw.match[1]}/v1/chat/completions`, viaGateway);
  for (let round = 1; round <= ROUNDS; round++) {
    const a = await load(`${fake.url}/v1/chat/completions`, direct);
    const b = await load(`https://127.0.0.1:${gw.match[1]}/v1/chat/completions`, viaGateway);
    rows.push(`| ${round} | ${a.rps.toFixed(0)} | ${b.rps.toFixed(0)} | ${a.p50.toFixed(2)} | ${b.p50.toFixed(2)} | ${(b.p50 - a.p50).toFixed(2)} | ${a.p99.toFixed(2)} | ${b.p99.toFixed(2)} |`);
  }
} finally {
  await direct.close();
  await viaGateway.close();
  await gw.stop();
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`${N} requests per target per round, concurrency ${C}, keep-alive\n`);
console.log("| round | direct req/s | gateway req/s | direct p50 ms | gateway p50 ms | added p50 ms | direct p99 ms | gateway p99 ms |");
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const r of rows) console.log(r);
