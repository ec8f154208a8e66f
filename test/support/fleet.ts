import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Agent, request } from "undici";
import { stringify } from "yaml";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { makeBundle, makeKey, type TestKey } from "./bundle-factory.ts";
import { FakeRunner } from "./fake-runner.ts";
import { call, mtlsAgent, type Reply } from "./gateway-fixture.ts";
import { runCli, startCli, type Started } from "./processes.ts";

/**
 * A small fleet for end-to-end tests, every part a real process or a real file: a control plane
 * (`edgeward controlplane`, SQLite in a temporary directory), gateways (`edgeward serve`) that reach it only through
 * a TCP relay the test controls, client SVIDs from a dev CA, and a stand-in model server (the only fake).
 */

export const TD = "example.org";
export const GROUP = "edge";
export const MODEL = "tiny";
const TOKEN = "e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0";

export const NODE = (name: string) => `spiffe://${TD}/edge/node/${name}`;
export const CALLER = (name: string) => `spiffe://${TD}/ns/apps/sa/${name}`;

/** One ALLOW policy: each named caller may chat with MODEL. */
export function allowPolicy(callers: readonly string[]): string {
  return `apiVersion: edgeward.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: chat-allow, namespace: edge}
spec:
  action: ALLOW
  rules:
    - from: [{source: {principals: [${callers.map((c) => JSON.stringify(CALLER(c))).join(", ")}]}}]
      to: [{operation: {methods: ["POST"], paths: ["/v1/chat/completions"], models: ["${MODEL}"]}}]
`;
}

export { waitFor } from "./wait.ts";

/**
 * A TCP relay between the gateways and the control plane. TLS passes through it untouched (the gateways still
 * authenticate the control plane and it them); the test can cut the link (open connections are reset, new ones
 * refused), restore it, point it at a restarted control plane, and slow it down.
 */
export class Relay {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** Open connections (the gateway's side) and when a byte last went through each, either way. */
  readonly #activity = new Map<Socket, number>();
  #cut = false;
  /** The control plane's port. */
  target: number;
  /** Each chunk is held this long before it is passed on (both ways, order kept). */
  delayMs = 0;

  private constructor(server: Server, target: number) {
    this.#server = server;
    this.target = target;
  }

  static async start(target: number): Promise<Relay> {
    const server = createServer();
    const relay = new Relay(server, target);
    server.on("connection", (socket) => relay.#accept(socket));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return relay;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** Connections open through the relay now. */
  get open(): number {
    return this.#activity.size;
  }

  /**
   * How long the quietest open connection has carried nothing, in ms (0 when none is open): a request the control
   * plane holds (a long-poll) shows here, while an ordinary exchange lasts milliseconds.
   */
  heldMs(): number {
    const now = Date.now();
    let longest = 0;
    for (const last of this.#activity.values()) longest = Math.max(longest, now - last);
    return longest;
  }

  /** Resets every open connection (held long-polls, uploads in flight) and refuses new ones until restore(). */
  cut(): void {
    this.#cut = true;
    for (const s of this.#sockets) {
      // A reset is refused (EINVAL) once a socket began its shutdown, and Node then keeps its handle open, which
      // makes the process spin at exit: an ending socket is closed instead.
      if (s.writableEnded) s.destroy();
      else s.resetAndDestroy();
    }
    this.#sockets.clear();
  }

  restore(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    if (this.#cut) {
      client.resetAndDestroy();
      return;
    }
    this.#activity.set(client, Date.now());
    client.once("close", () => this.#activity.delete(client));
    const upstream = connect(this.target, "127.0.0.1");
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        this.#sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    const pass = (from: Socket, to: Socket) => {
      from.on("data", (chunk: Buffer) => {
        const write = () => {
          if (this.#activity.has(client)) this.#activity.set(client, Date.now());
          if (!to.destroyed) to.write(chunk);
        };
        if (this.delayMs > 0) setTimeout(write, this.delayMs);
        else write();
      });
      from.on("end", () => {
        const end = () => {
          if (!to.destroyed) to.end();
        };
        if (this.delayMs > 0) setTimeout(end, this.delayMs);
        else end();
      });
    };
    pass(client, upstream);
    pass(upstream, client);
  }
}

export interface ControlPlaneProcess {
  proc: Started;
  url: string;
  port: number;
}

export interface GatewayOptions {
  /** Policy from the control plane's bundles (long-poll), or from a local policy file allowing these callers. */
  policy: "bundle" | { callers: string[] };
  maxBatchRecords?: number;
  uploadInterval?: string;
  /** bundle.longPoll (default 5s). */
  longPoll?: string;
}

/** A gateway process and its files; `start` (re)starts it on the same config, log and state directories. */
export class GatewayProcess {
  readonly name: string;
  readonly id: string;
  readonly dir: string;
  readonly relay: Relay;
  readonly #fleet: Fleet;
  proc: Started | null = null;
  url = "";
  adminUrl = "";

  constructor(fleet: Fleet, name: string, relay: Relay) {
    this.#fleet = fleet;
    this.name = name;
    this.id = NODE(name);
    this.dir = join(fleet.dir, "gateways", name);
    this.relay = relay;
  }

  get logPath(): string {
    return join(this.dir, "decisions.log");
  }

  async start(): Promise<void> {
    this.proc = await this.#fleet.track(
      startCli(["serve", "--config", "edgeward.yaml"], /listening on (https:\/\/\S+) \(admin (http:\/\/\S+)\)/, { cwd: this.dir }),
    );
    this.url = this.proc.match[1]!;
    this.adminUrl = this.proc.match[2]!;
  }

  /** SIGKILL: no chance to flush, close or write anything. */
  async kill(): Promise<void> {
    await this.proc?.stop("SIGKILL");
  }

  async readyz(): Promise<{ logSeq: number; bundle?: { stage: string; revision: number | null } }> {
    const res = await request(`${this.adminUrl}/readyz`);
    return (await res.body.json()) as { logSeq: number; bundle?: { stage: string; revision: number | null } };
  }

  /** One chat completion through this gateway. */
  chat(agent: Agent): Promise<Reply> {
    return call(agent, `${this.url}/v1/chat/completions`, { body: { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2 } });
  }

  /** The decision log as it is on disk: complete lines and their records. */
  log(): LogRecord[] {
    return readLog(this.logPath);
  }
}

export interface LogRecord {
  line: string;
  seq: number;
  hash: string;
  requestId: string;
  principal: string | null;
  decision: "ALLOW" | "DENY";
  time: string;
  stage?: string;
  status?: number;
}

export function readLog(path: string): LogRecord[] {
  const text = readFileSync(path, "utf8");
  const lines = text.split("\n");
  lines.pop(); // after the last newline: empty, or a torn record
  return lines.map((line) => ({ line, ...(JSON.parse(line) as Omit<LogRecord, "line">) }));
}

/** What the control plane holds for a node, read from its SQLite file (read-only, beside the running server). */
export interface Central {
  lines: string[];
  seqs: number[];
  head: { ackSeq: number; ackHash: string } | null;
}

/** A node as `GET /v1/nodes` shows it. */
export interface FleetNode {
  id: string;
  ackSeq: number | null;
  claimed: { bundleRevision: number | null; stage: string | null; logSeq: number | null };
  lastContact: string;
}

export class Fleet {
  readonly dir: string;
  readonly caPem: string;
  readonly release: TestKey;
  readonly runner: FakeRunner;
  readonly dbPath: string;
  cp: ControlPlaneProcess | null = null;
  readonly #processes = new Set<Started>();
  readonly #relays = new Set<Relay>();
  readonly #agents = new Set<Agent>();
  #operator: Agent | null = null;

  private constructor(dir: string, release: TestKey, runner: FakeRunner) {
    this.dir = dir;
    this.caPem = join(dir, "ca", "ca.pem");
    this.release = release;
    this.runner = runner;
    this.dbPath = join(dir, "cp", "data", "controlplane.db");
  }

  /** The PKI (CA, control-plane certificate, node and caller SVIDs), the release key, the operator token, the configs. */
  static async create(o: { nodes: string[]; callers: string[] }): Promise<Fleet> {
    const dir = mkdtempSync(join(tmpdir(), "edgeward-fleet-"));
    let runner: FakeRunner | null = null;
    try {
      const caDir = join(dir, "ca");
      await initDevCa({ dir: caDir, trustDomain: TD });
      mkdirSync(join(dir, "cp"));
      mkdirSync(join(dir, "nodes"));
      mkdirSync(join(dir, "callers"));
      const local = { dns: ["localhost"], ip: ["127.0.0.1"] };
      await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/controlplane`, out: join(dir, "cp", "server"), ...local });
      // A node's SVID is its client certificate towards the control plane and its server certificate towards callers.
      for (const n of o.nodes) await issueSvid({ dir: caDir, spiffeId: NODE(n), out: join(dir, "nodes", n), ...local });
      for (const c of o.callers) await issueSvid({ dir: caDir, spiffeId: CALLER(c), out: join(dir, "callers", c) });
      const release = await makeKey();
      writeFileSync(join(dir, "release.pub"), release.publicPem);
      writeFileSync(join(dir, "cp", "release.key"), release.privatePem, { mode: 0o600 });
      writeFileSync(join(dir, "operator.token"), `${TOKEN}\n`, { mode: 0o600 });
      writeFileSync(join(dir, "cp", "controlplane.yaml"), stringify({
        listen: "127.0.0.1:0",
        tls: { cert: "server.pem", key: "server.key" },
        trustBundles: { [TD]: "../ca/ca.pem" },
        storage: { sqlite: "data/controlplane.db" },
        operators: { principals: [], tokenFile: "../operator.token" },
        groups: [{ name: GROUP, principals: [NODE("*")] }],
        bundles: { keys: ["../release.pub"], releaseKey: "release.key" },
        logLevel: "warn",
      }));
      runner = await FakeRunner.start();
      return new Fleet(dir, release, runner);
    } catch (err) {
      await runner?.close();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Remembers a started process so that cleanup() ends it, whatever happened. */
  async track(starting: Promise<Started>): Promise<Started> {
    const started = await starting;
    this.#processes.add(started);
    started.child.once("exit", () => this.#processes.delete(started));
    return started;
  }

  /** Starts (or restarts, on the same database) the control plane; relays follow it to its new port. */
  async startControlPlane(): Promise<ControlPlaneProcess> {
    const proc = await this.track(startCli(["controlplane", "--config", "controlplane.yaml"], /listening on (https:\/\/127\.0\.0\.1:(\d+))/, { cwd: join(this.dir, "cp") }));
    this.cp = { proc, url: proc.match[1]!, port: Number(proc.match[2]) };
    for (const r of this.#relays) r.target = this.cp.port;
    return this.cp;
  }

  /** Resolves the exit code (null after a SIGKILL). */
  stopControlPlane(signal: NodeJS.Signals): Promise<number | null> {
    return this.cp!.proc.stop(signal);
  }

  /** A relay to the control plane (to port 9, the discard port, until one is started). */
  async relay(): Promise<Relay> {
    const relay = await Relay.start(this.cp?.port ?? 9);
    this.#relays.add(relay);
    return relay;
  }

  /** Writes a gateway's config (its own relay to the control plane for bundles and uploads) and starts it. */
  async gateway(name: string, options: GatewayOptions): Promise<GatewayProcess> {
    const relay = await this.relay();
    const gw = new GatewayProcess(this, name, relay);
    mkdirSync(gw.dir, { recursive: true });
    const policy = options.policy === "bundle"
      ? { bundle: { url: `${relay.url}/v1/bundle`, pollInterval: "1s", longPoll: options.longPoll ?? "5s", keys: [join(this.dir, "release.pub")], stateDir: "bundle", ca: this.caPem } }
      : { policy: "policy.yaml" };
    if (options.policy !== "bundle") writeFileSync(join(gw.dir, "policy.yaml"), allowPolicy(options.policy.callers));
    writeFileSync(join(gw.dir, "edgeward.yaml"), stringify({
      listen: "127.0.0.1:0",
      admin: "127.0.0.1:0",
      tls: { cert: join(this.dir, "nodes", `${name}.pem`), key: join(this.dir, "nodes", `${name}.key`) },
      trustBundles: { [TD]: this.caPem },
      ...policy,
      runners: [{ name: "fake", url: this.runner.url, models: [MODEL], timeout: "5s" }],
      decisionLog: "decisions.log",
      upload: {
        url: `${relay.url}/v1/logs`, interval: options.uploadInterval ?? "200ms", maxBatchRecords: options.maxBatchRecords ?? 1000,
        stateDir: "upload", ca: this.caPem,
      },
      logLevel: "warn",
    }));
    await gw.start();
    return gw;
  }

  /** A client presenting a caller's SVID. */
  agent(caller: string): Agent {
    const agent = mtlsAgent(this.caPem, join(this.dir, "callers", caller));
    this.#agents.add(agent);
    return agent;
  }

  /** `edgeward ARGS…` in the fleet's directory. */
  cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return runCli(args, { cwd: this.dir });
  }

  /** An operator command against the running control plane, with the operator token. */
  operatorCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.cli([...args, "--server", this.cp!.url, "--token-file", "operator.token", "--ca", "ca/ca.pem"]);
  }

  /** `GET path` of the operator API, for polling (the CLI is what the assertions use). */
  async operatorGet(path: string): Promise<unknown> {
    this.#operator ??= mtlsAgent(this.caPem);
    const r = await call(this.#operator, `${this.cp!.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text}`);
    return r.json();
  }

  /** The fleet view of one node (null before the control plane heard from it); `claimed` is what the node says. */
  async node(id: string): Promise<FleetNode | null> {
    const nodes = (await this.operatorGet("/v1/nodes")) as FleetNode[];
    return nodes.find((n) => n.id === id) ?? null;
  }

  /** Calls the control plane as a node (its SVID), straight, not through a relay. */
  async asNode(name: string, path: string, init: Parameters<typeof call>[2] = {}): Promise<Reply> {
    const agent = mtlsAgent(this.caPem, join(this.dir, "nodes", name));
    try {
      return await call(agent, `${this.cp!.url}${path}`, init);
    } finally {
      await agent.close();
    }
  }

  /** Builds a bundle (allowing `callers`) signed with the release key and writes it to `file` in the fleet's directory. */
  async writeBundle(file: string, revision: number, callers: string[]): Promise<string> {
    const built = await makeBundle({ revision, nowMs: Date.now() - 60_000, keys: [this.release], policy: allowPolicy(callers) });
    writeFileSync(join(this.dir, file), built.archive);
    return file;
  }

  /** The records and head the control plane holds for `node`, read from its database. */
  central(node: string): Central {
    const db = new DatabaseSync(this.dbPath, { readOnly: true });
    try {
      const rows = db.prepare("SELECT seq, line FROM records WHERE node = ? ORDER BY seq").all(node) as { seq: number; line: string }[];
      const head = db.prepare("SELECT ack_seq, ack_hash FROM log_heads WHERE node = ?").get(node) as { ack_seq: number; ack_hash: string } | undefined;
      return { lines: rows.map((r) => r.line), seqs: rows.map((r) => r.seq), head: head === undefined ? null : { ackSeq: head.ack_seq, ackHash: head.ack_hash } };
    } finally {
      db.close();
    }
  }

  /** Ends every process still running (SIGKILL), the relays, clients and the model stand-in, and removes the files. */
  async cleanup(): Promise<void> {
    await Promise.allSettled([...this.#processes].map((p) => p.stop("SIGKILL")));
    await Promise.allSettled([...this.#relays].map((r) => r.close()));
    await Promise.allSettled([...this.#agents, ...(this.#operator ? [this.#operator] : [])].map((a) => a.close()));
    await this.runner.close().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs `task` for each of `count` items with at most `concurrency` at once; results in order. */
export async function pool<T>(count: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}
