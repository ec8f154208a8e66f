/**
 * ext_authz Check over gRPC: calls/s and latency (p50, p99) of `edgeward authz` in its own process, driven by a
 * grpc-js client at several concurrencies, with the benchmark's ~80-rule policy (CEL conditions included) and the
 * decision log fsync'd per batch — first on the disk the OS temp directory is on, then on tmpfs (/dev/shm), where
 * fdatasync costs nothing, to separate the check from durable I/O.
 *
 *   ./node_modules/.bin/node bench/micro/ext-authz.ts [--quick]
 *
 * The CheckRequest is what Envoy sends for a small chat completion with includeRequestBodyInCheck: the peer's
 * principal, the request headers, and the JSON body. Its bytes are encoded once; each call sends them as they are.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Client, credentials, Metadata } from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { stringify } from "yaml";
import { PROTO_DIR } from "../../src/gateway/ext-authz/index.ts";
import { benchPolicy } from "../fixtures/policy.ts";
import { CLIENT_ID, REPO_DIR, TRUST_DOMAIN } from "../lib/context.ts";
import { cpuNsBetween, readCpu } from "../lib/proc-stats.ts";
import { spawnReady } from "../lib/processes.ts";
import { printResult, quantile } from "./result.ts";
import type { MicroResult } from "./result.ts";

const CONCURRENCY = [1, 8, 32, 128] as const;
const CHECK = "/envoy.service.auth.v3.Authorization/Check";

export interface ExtAuthzBenchOptions {
  quick?: boolean;
}

function checkRequestBytes(): Buffer {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
  root.loadSync("envoy/service/auth/v3/external_auth.proto", { keepCase: true });
  const CheckRequest = root.lookupType("envoy.service.auth.v3.CheckRequest");
  const body = JSON.stringify({ model: "bench-small", messages: [{ role: "user", content: "Say hello in five words." }], max_tokens: 64 });
  return Buffer.from(CheckRequest.encode(CheckRequest.fromObject({
    attributes: {
      source: { address: { socket_address: { address: "10.1.2.3", port_value: 51234 } }, principal: CLIENT_ID },
      destination: { address: { socket_address: { address: "10.9.8.7", port_value: 8000 } }, principal: `spiffe://${TRUST_DOMAIN}/ns/llm/sa/vllm` },
      request: {
        time: { seconds: 1_760_000_000 },
        http: {
          id: "4711", method: "POST", path: "/v1/chat/completions", host: "vllm.llm.svc:8000", scheme: "http", protocol: "HTTP/2", size: body.length, body,
          headers: {
            ":authority": "vllm.llm.svc:8000", ":method": "POST", ":path": "/v1/chat/completions", ":scheme": "http",
            "content-type": "application/json", "content-length": String(body.length), "user-agent": "OpenAI/JS 6.9.0",
            "x-request-id": "0f8e1c2a-5b7d-4e3f-9a1b-2c3d4e5f6a7b", "x-envoy-auth-partial-body": "false",
          },
        },
      },
    },
  })).finish());
}

interface Level {
  calls: number;
  seconds: number;
  latenciesUs: Float64Array;
  allowed: boolean;
  /** CPU the server process spent over the level (every thread: the fsyncs run on libuv's pool). */
  serverCpuNs: number;
}

/** Keeps `concurrency` checks outstanding for `ms`: each caller sends, awaits the answer, sends again. */
async function level(client: Client, bytes: Buffer, concurrency: number, ms: number, serverPid: number): Promise<Level> {
  const latencies: number[] = [];
  let allowed = true;
  const end = performance.now() + ms;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const t0 = performance.now();
      client.makeUnaryRequest(CHECK, (b: Buffer) => b, (b: Buffer) => b, bytes, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) => {
        if (err) return reject(err);
        latencies.push((performance.now() - t0) * 1000);
        // CheckResponse.ok_response = 3 (tag 0x1a) present means allowed.
        if (!res!.includes(0x1a)) allowed = false;
        resolve();
      });
    });
  const cpu0 = readCpu([serverPid]);
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) await one();
  }));
  const seconds = (performance.now() - started) / 1000;
  const serverCpuNs = cpuNsBetween(cpu0, readCpu([serverPid]));
  return { calls: latencies.length, seconds, latenciesUs: new Float64Array(latencies).sort(), allowed, serverCpuNs };
}

const round = (n: number) => (n >= 100 ? Math.round(n) : Number(n.toPrecision(3)));

async function measureWithLogIn(logDir: string, label: string, bytes: Buffer, ms: number, warmupMs: number): Promise<MicroResult["rows"]> {
  const dir = mkdtempSync(join(logDir, "edgeward-authz-bench-"));
  const rows: MicroResult["rows"] = [];
  try {
    writeFileSync(join(dir, "policy.yaml"), benchPolicy(TRUST_DOMAIN, CLIENT_ID, "bench-small*").yaml);
    writeFileSync(join(dir, "authz.yaml"), stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "unused.pem", key: "unused.key" }, trustBundles: { [TRUST_DOMAIN]: "unused.pem" },
      policy: "policy.yaml", runners: [{ name: "unused", url: "http://127.0.0.1:9", models: ["bench-small"] }],
      decisionLog: "decisions.log", logLevel: "warn", authz: { grpc: "127.0.0.1:0" },
    }));
    const server = await spawnReady(process.execPath, [join(REPO_DIR, "src/cli/run.ts"), "authz", "--config", join(dir, "authz.yaml")],
      /listening on grpc:\/\/127\.0\.0\.1:(\d+)/, { label: "edgeward authz" });
    const client = new Client(`127.0.0.1:${server.match[1]}`, credentials.createInsecure());
    try {
      await level(client, bytes, 8, warmupMs, server.pid);
      for (const concurrency of CONCURRENCY) {
        const r = await level(client, bytes, concurrency, ms, server.pid);
        if (!r.allowed) throw new Error(`a check was denied at concurrency ${concurrency}; see ${join(dir, "decisions.log")}`);
        rows.push({
          "decision log": label,
          concurrency,
          "checks/s": Math.round(r.calls / r.seconds),
          "p50 ms": round(quantile(r.latenciesUs, 0.5) / 1000),
          "p99 ms": round(quantile(r.latenciesUs, 0.99) / 1000),
          "server CPU µs/check": round(r.serverCpuNs / 1000 / r.calls),
          checks: r.calls,
        });
      }
    } finally {
      client.close();
      await server.stop();
    }
    const records = readFileSync(join(dir, "decisions.log"), "utf8").split("\n").length - 1;
    if (records === 0) throw new Error("no check was recorded");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

export async function run(options: ExtAuthzBenchOptions = {}): Promise<MicroResult> {
  const ms = options.quick ? 500 : 3000;
  const warmupMs = options.quick ? 300 : 1500;
  const bytes = checkRequestBytes();
  const rows = await measureWithLogIn(tmpdir(), "disk (fdatasync)", bytes, ms, warmupMs);
  if (existsSync("/dev/shm")) rows.push(...(await measureWithLogIn("/dev/shm", "tmpfs", bytes, ms, warmupMs)));
  return {
    name: "ext_authz Check over gRPC",
    rows,
    notes: [
      `\`edgeward authz\` in its own process; a grpc-js client in the benchmark's process keeps N checks outstanding for ${ms / 1000} s per level ` +
        `(the client shares the machine's cores). A ${bytes.length}-byte CheckRequest as Envoy sends it for a small chat completion with its body.`,
      "Each check: CheckRequest decoding, SPIFFE principal, JSON body and OpenAI shape, the ~80-rule policy with CEL, budgets, and a decision-log " +
        "record made durable before the allow is answered (group commit: one write + fdatasync per batch).",
      "Latency is the client's round trip (loopback HTTP/2), as Envoy would see it. Server CPU: the authz process's own CPU " +
        "time (all threads, from /proc) per check — the steadier figure on shared cores.",
    ],
  };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { quick: { type: "boolean", default: false } } });
  printResult(await run({ quick: values.quick }));
}
