import { existsSync } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { buildBundle, readSigningKey, writeSigningKey } from "../bundle/index.ts";
import { loadConfig } from "../config/index.ts";
import { Gateway } from "../gateway/index.ts";
import { initDevCa, issueSvid } from "../identity/index.ts";
import { writeTinyModel } from "../runners/index.ts";
import { createLogger } from "../telemetry/index.ts";
import type { CliIO } from "./io.ts";
import { hostForUrl, startError } from "./config-command.ts";
import { waitForSignals } from "./serve.ts";

const USAGE = "usage: edgeward demo [--dir DIR] [--listen HOST:PORT] [--admin HOST:PORT]\n";
const TRUST_DOMAIN = "example.org";
const EXAMPLE_POLICY = fileURLToPath(new URL("../../examples/policy.yaml", import.meta.url));

/**
 * `edgeward demo`: everything on this machine, offline — a dev CA and SVIDs, the tiny model served by
 * `edgeward runner` on a 0600 Unix socket, and the gateway enforcing the example policy from a signed bundle —
 * then curl calls to try.
 */
export async function run(argv: string[], io: CliIO): Promise<number> {
  let values: { dir?: string; listen?: string; admin?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: { dir: { type: "string" }, listen: { type: "string" }, admin: { type: "string" }, help: { type: "boolean", short: "h" } },
    }));
  } catch (err) {
    io.stderr(`edgeward demo: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  const dir = resolve(io.cwd, values.dir ?? ".edgeward/demo");
  let gateway: Gateway;
  let files: DemoFiles;
  try {
    files = await prepare(dir, io);
    io.stdout("starting the embedded runner on the tiny model…\n");
    // The gateway starts the runner itself, as `serve` does with any runner the config marks embedded.
    await writeFile(files.config, stringify({
      listen: values.listen ?? "127.0.0.1:8443",
      admin: values.admin ?? "127.0.0.1:9464",
      tls: { cert: "certs/gateway.pem", key: "certs/gateway.key" },
      trustBundles: { [TRUST_DOMAIN]: "ca/ca.pem" },
      bundle: { path: "bundles/edge-policy.tar.gz", keys: ["keys/bundle.pub"], stateDir: "state/bundle" },
      runners: [{ name: "embedded", url: "unix:runner.sock", models: ["tiny"], timeout: "120s", embedded: { model: relative(dir, files.model), threads: 1 } }],
      decisionLog: "data/decisions.log",
      limits: { maxTokens: 64 },
      // The example policies sit in the edge namespace: this gateway is a workload there, as in Istio.
      workload: { namespace: "edge" },
    }), { mode: 0o600 });
    gateway = await Gateway.start(await loadConfig(files.config), { logger: createLogger("warn") });
  } catch (err) {
    io.stderr(`edgeward demo: ${startError(err)}\n`);
    return 1;
  }

  const rel = (p: string) => {
    const r = relative(io.cwd, p);
    return r.startsWith("..") ? p : r;
  };
  const url = `https://localhost:${gateway.address.port}`;
  const curl = (who: string, path: string, body?: string) =>
    `curl --cert ${rel(join(dir, "certs", `${who}.pem`))} --key ${rel(join(dir, "certs", `${who}.key`))} --cacert ${rel(join(dir, "ca", "ca.pem"))} ${url}${path}` +
    (body ? ` -H 'content-type: application/json' -d '${body}'` : "");
  const chat = JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "hello there" }], max_tokens: 16 });
  io.stdout([
    "",
    `Edgeward demo is running (gateway ${url}, metrics http://${hostForUrl(gateway.adminAddress.host)}:${gateway.adminAddress.port}/metrics).`,
    `State: ${rel(dir)}   Decision log: ${rel(join(dir, "data", "decisions.log"))}`,
    `Policy: ${rel(EXAMPLE_POLICY)}, enforced from the signed bundle ${rel(files.bundle)} (revision ${files.revision}, valid for 24 h):`,
    `  npx edgeward bundle inspect ${rel(files.bundle)}`,
    "",
    "Allowed — spiffe://example.org/ns/kiosk/sa/assistant gets a completion:",
    `  ${curl("assistant", "/v1/chat/completions", chat)}`,
    "",
    "Denied (403) — spiffe://example.org/ns/kiosk/sa/intruder matches no ALLOW rule:",
    `  ${curl("intruder", "/v1/chat/completions", chat)}`,
    "",
    "Streamed, and the models the caller may use:",
    `  ${curl("assistant", "/v1/chat/completions", JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "hello" }], max_tokens: 16, stream: true }))} -N`,
    `  ${curl("assistant", "/v1/models")}`,
    "",
    `Check the decision log: npx edgeward log verify ${rel(join(dir, "data", "decisions.log"))}`,
    "Press Ctrl-C to stop.",
    "",
  ].join("\n"));

  return waitForSignals(gateway);
}

interface DemoFiles {
  config: string;
  model: string;
  bundle: string;
  revision: number;
}

async function prepare(dir: string, io: CliIO): Promise<DemoFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const caDir = join(dir, "ca");
  if (!existsSync(join(caDir, "ca.pem"))) {
    await initDevCa({ dir: caDir, trustDomain: TRUST_DOMAIN });
    io.stdout(`created a dev CA for trust domain ${TRUST_DOMAIN}\n`);
  }
  await mkdir(join(dir, "certs"), { recursive: true, mode: 0o700 });
  const day = 24 * 3600;
  await issueSvid({ dir: caDir, spiffeId: `spiffe://${TRUST_DOMAIN}/ns/edge/sa/gateway`, out: join(dir, "certs", "gateway"), ttlSeconds: day, dns: ["localhost"], ip: ["127.0.0.1"] });
  for (const who of ["assistant", "intruder"]) {
    await issueSvid({ dir: caDir, spiffeId: `spiffe://${TRUST_DOMAIN}/ns/kiosk/sa/${who}`, out: join(dir, "certs", who), ttlSeconds: day });
  }
  const model = join(dir, "models", "tiny.gguf");
  if (!existsSync(model)) {
    await mkdir(join(dir, "models"), { recursive: true });
    await writeTinyModel(model, 1);
  }
  const { bundle, revision } = await signExamplePolicy(dir);
  return { config: join(dir, "edgeward.yaml"), model, bundle, revision };
}

/**
 * Signs the example policy into a bundle with the demo's own release key, as a release pipeline would. The
 * revision is the build time in seconds, so that each run's bundle is newer than the one the node kept.
 */
async function signExamplePolicy(dir: string): Promise<{ bundle: string; revision: number }> {
  const prefix = join(dir, "keys", "bundle");
  if (!existsSync(`${prefix}.key`)) {
    await mkdir(join(dir, "keys"), { recursive: true, mode: 0o700 });
    await writeSigningKey(prefix);
  }
  const nowMs = Date.now();
  const revision = Math.floor(nowMs / 1000);
  const built = await buildBundle({
    files: new Map([["policy.yaml", await readFile(EXAMPLE_POLICY)]]),
    name: "edge-policy", revision, nowMs,
    validForSeconds: 24 * 3600, graceSeconds: 6 * 3600, restrictedSeconds: 24 * 3600,
    keys: [await readSigningKey(`${prefix}.key`)],
  });
  const bundle = join(dir, "bundles", "edge-policy.tar.gz");
  await mkdir(join(dir, "bundles"), { recursive: true });
  await writeFile(`${bundle}.tmp`, built.archive);
  await rename(`${bundle}.tmp`, bundle);
  return { bundle, revision };
}
