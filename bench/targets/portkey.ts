/**
 * Portkey's open-source AI gateway (`@portkey-ai/gateway`, pinned in bench/peers), the TypeScript AI-gateway
 * peer, over plain HTTP: it has no client-certificate authentication to compare with.
 *
 * Its server listens on every interface and has no option to change that (`serve({ fetch, port })`, with only
 * `--port=` read from the command line). Rather than patch the package, the harness preloads a module that makes
 * every TCP listen in that process bind 127.0.0.1 and reports the port it got, so the gateway is never
 * reachable from another machine while it runs.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Dispatcher } from "undici";
import { BENCH_DIR, plainClients } from "../lib/context.ts";
import { spawnReady } from "../lib/processes.ts";
import type { BenchContext, RunningTarget, Target } from "../lib/target.ts";

const PEERS = join(BENCH_DIR, "peers", "node_modules");
const GATEWAY = join(PEERS, "@portkey-ai", "gateway", "build", "start-server.js");
/** Newer @hono/node-server releases break Portkey's streaming (500 "immutable"); its own lockfile pins this one. */
const HONO_NODE_SERVER = "1.13.5";

/**
 * Loaded with `--import` before the gateway: binds every listening socket to loopback (a port of 0 still lets
 * the kernel choose) and prints the first one's port on stdout for the harness.
 */
const LOOPBACK_PRELOAD = `
import { Server } from "node:net";
const listen = Server.prototype.listen;
let announced = false;
Server.prototype.listen = function (...args) {
  const first = args[0];
  const port = typeof first === "object" && first !== null ? first.port : first;
  const callback = args.find((a) => typeof a === "function");
  if (!announced) {
    announced = true;
    this.once("listening", () => process.stdout.write("bench: listening on 127.0.0.1:" + this.address().port + "\\n"));
  }
  return listen.call(this, { port: Number(port) || 0, host: "127.0.0.1" }, callback);
};
`;

/**
 * Portkey rebuilds the request body from the OpenAI parameters it knows, so a benchmark-only body field never
 * reaches the model server; a header does when Portkey is told to forward it.
 */
export const CHUNK_DELAY_HEADER = "x-bench-chunk-delay-ms";

/** How every request reaches the model server through Portkey: its OpenAI provider with a custom host. */
export function portkeyHeaders(modelServerUrl: string): Record<string, string> {
  return {
    "x-portkey-provider": "openai",
    "x-portkey-custom-host": `${modelServerUrl}/v1`,
    "x-portkey-forward-headers": CHUNK_DELAY_HEADER,
    authorization: "Bearer dummy",
  };
}

/** Adds `extra` to the headers of every request, whichever of undici's header shapes the caller used. */
export function withHeaders(extra: Record<string, string>): Dispatcher.DispatcherComposeInterceptor {
  const flat = Object.entries(extra).flat();
  return (dispatch) => (opts, handler) => {
    const h = opts.headers;
    let headers: Dispatcher.DispatchOptions["headers"];
    if (h === null || h === undefined) headers = { ...extra };
    else if (Array.isArray(h)) headers = [...(h as string[]), ...flat];
    else if (Symbol.iterator in h) headers = [...(h as Iterable<[string, string | string[] | undefined]>), ...Object.entries(extra)];
    else headers = { ...h, ...extra };
    return dispatch({ ...opts, headers }, handler);
  };
}

function installedHonoVersion(): string | null {
  try {
    return (JSON.parse(readFileSync(join(PEERS, "@hono", "node-server", "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return null;
  }
}

async function start(ctx: BenchContext): Promise<RunningTarget> {
  const gateway = await spawnReady(
    process.execPath,
    ["--import", `data:text/javascript,${encodeURIComponent(LOOPBACK_PRELOAD)}`, GATEWAY, "--headless", "--port=0"],
    /^bench: listening on 127\.0\.0\.1:(\d+)$/,
    { cwd: join(BENCH_DIR, "peers"), env: { ...process.env, NODE_ENV: "production" }, label: "portkey" },
  );
  const clients = plainClients();
  const intercept = withHeaders(portkeyHeaders(ctx.modelServerUrl));
  return {
    name: "portkey",
    url: `http://127.0.0.1:${gateway.match[1]}`,
    dispatcher: clients.dispatcher.compose(intercept),
    freshConnections: () => clients.freshConnections().compose(intercept),
    pids: [gateway.pid],
    async stop() {
      await clients.dispatcher.close();
      await gateway.stop();
    },
  };
}

export const portkey: Target = {
  name: "portkey",
  mtls: false,
  async unavailable() {
    if (!existsSync(GATEWAY)) return "Portkey's gateway is not installed in bench/peers (run bench/setup.sh)";
    const hono = installedHonoVersion();
    if (hono !== HONO_NODE_SERVER) {
      return `bench/peers has @hono/node-server ${hono ?? "missing"}, not ${HONO_NODE_SERVER}: Portkey's streaming breaks (reinstall with npm ci in bench/peers)`;
    }
    return null;
  },
  start,
};
