import { readFile, stat } from "node:fs/promises";
import { Agent, request, type Dispatcher } from "undici";
import {
  BundleError,
  BundleManager,
  BundleStore,
  MAX_ARCHIVE_BYTES,
  readBundleFiles,
  trustedKeys,
  unpackArchive,
  type BundleFiles,
  type BundleStatus,
  type VerifiedBundle,
} from "../bundle/index.ts";
import type { BundleSourceConfig } from "../config/index.ts";
import type { GatewayMetrics, Logger } from "../telemetry/index.ts";

export type BundleSource = "store" | "file" | "url";

export interface BundleSyncOptions {
  config: BundleSourceConfig;
  clock: () => number;
  logger: Logger;
  metrics: GatewayMetrics;
  /**
   * Compiles a verified bundle's policy and puts it in force; throwing refuses the bundle (the one in force stays,
   * and so does the node's bundle state).
   */
  activate(bundle: VerifiedBundle): void;
  /** The gateway's own certificate and key (PEM), presented to the control plane; read at each fetch (rotation). */
  clientCredentials(): { cert: string; key: string };
  /** The decision log's last durable seq, reported to the control plane with each fetch (when there is a log). */
  logSeq?: () => number;
}

/** Long-polling never asks more often than this, whatever the server answers. */
const MIN_LONG_POLL_GAP_MS = 1000;

/** Largest wait for the control plane's answer beyond the long-poll wait itself. */
const FETCH_SLACK_MS = 30_000;

/**
 * Keeps the node's policy bundle current: boots from the bundle persisted in the state directory (offline), then
 * watches the local bundle file and polls the control plane (ETag, optional long-poll), verifying each candidate,
 * activating it, and persisting it atomically. Answers the degradation stage for every request.
 */
export class BundleSync {
  readonly manager: BundleManager;
  readonly #store: BundleStore;
  readonly #o: BundleSyncOptions;
  readonly #ca: string | null;
  #fileStamp: string | null = null;
  #etag: string | null = null;
  #closed = false;
  #timers = new Set<NodeJS.Timeout>();
  #inflight: AbortController | null = null;
  #loop: Promise<void> | null = null;
  /** Ends the poll loop's wait between two fetches (on close). */
  #wake: (() => void) | null = null;
  /** What state.json holds, as JSON, so that an unchanged state is not rewritten. */
  #savedState = "";
  /** The last refusal, for /readyz. */
  lastError: { source: BundleSource; check: string; message: string } | null = null;

  private constructor(manager: BundleManager, store: BundleStore, options: BundleSyncOptions, ca: string | null) {
    this.manager = manager;
    this.#store = store;
    this.#o = options;
    this.#ca = ca;
  }

  /** Loads the keys and the stored bundle (refusing to start only when a key file is unusable), then starts polling. */
  static async start(options: BundleSyncOptions): Promise<BundleSync> {
    const { config } = options;
    const pems = await Promise.all(config.keys.map((k) => readFile(k, "utf8").catch((err: NodeJS.ErrnoException) => {
      throw new BundleError("malformed-key", `cannot read bundle key ${k} (${err.code ?? "error"})`);
    })));
    const keys = trustedKeys(pems);
    const ca = config.ca === null ? null : await readFile(config.ca, "utf8");
    const store = new BundleStore(config.stateDir);
    const loaded = await store.load();
    const manager = new BundleManager({ keys, clockToleranceMs: config.clockToleranceMs, state: loaded.state });
    const sync = new BundleSync(manager, store, options, ca);
    if (loaded.error !== null) sync.#refused("store", loaded.error);
    if (loaded.files !== null) await sync.offer(loaded.files, "store");
    if (config.path !== null) await sync.checkFile();
    sync.#every(config.pollIntervalMs, async () => {
      if (config.path !== null) await sync.checkFile();
      await sync.#saveClock();
    });
    if (config.url !== null) sync.#loop = sync.#pollUrl();
    return sync;
  }

  status(nowMs: number): BundleStatus {
    return this.manager.status(nowMs);
  }

  /**
   * Verifies and activates `files`; a refusal is logged and counted, never thrown. Returns "activated", "unchanged",
   * or the failed check.
   */
  async offer(files: BundleFiles, source: BundleSource): Promise<string> {
    let activated: VerifiedBundle;
    try {
      const result = await this.manager.offer(files, this.#o.clock(), { accept: (bundle: VerifiedBundle) => this.#o.activate(bundle) });
      if ("unchanged" in result) {
        this.#o.metrics.bundleUpdates.inc({ source, result: "unchanged" });
        return "unchanged";
      }
      activated = result.activated;
    } catch (err) {
      return this.#refused(source, err);
    }
    this.lastError = null;
    this.#o.metrics.bundleUpdates.inc({ source, result: "activated" });
    const { name, revision, notAfter } = activated.manifest;
    this.#o.logger.info({ source, bundle: name, revision, notAfter }, "policy bundle activated");
    if (source !== "store") {
      try {
        const state = this.manager.persisted();
        await this.#store.saveBundle(activated.files, state);
        this.#savedState = JSON.stringify(state);
      } catch (err) {
        // The bundle is in force; only surviving a restart offline is at risk, which the operator must hear about.
        this.#o.logger.error({ err: (err as Error).message }, "policy bundle activated but could not be persisted");
      }
    }
    return "activated";
  }

  /** Re-reads the local bundle file when it changed (size, mtime or inode), or at once when `force` (SIGHUP). */
  async checkFile(force = false): Promise<void> {
    const path = this.#o.config.path;
    if (path === null) return;
    if (force) this.#fileStamp = null;
    let stamp: string;
    try {
      const s = await stat(path);
      stamp = `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch (err) {
      if (this.#fileStamp !== "missing") this.#o.logger.warn({ path, code: (err as NodeJS.ErrnoException).code }, "bundle file is unreadable");
      this.#fileStamp = "missing";
      return;
    }
    if (stamp === this.#fileStamp) return;
    this.#fileStamp = stamp;
    let files: BundleFiles;
    try {
      files = await readBundleFiles(path);
    } catch (err) {
      this.#refused("file", err);
      return;
    }
    await this.offer(files, "file");
  }

  /** One conditional GET of the control plane's bundle. Resolves whether the server applied a long-poll wait. */
  async fetchOnce(): Promise<{ status: number; waited: boolean }> {
    const { url, longPollMs } = this.#o.config;
    if (url === null) return { status: 0, waited: false };
    // What the node reports about itself: the fleet view shows it.
    const status = this.manager.status(this.#o.clock());
    const headers: Record<string, string> = { accept: "application/gzip", "x-edgeward-stage": status.stage };
    if (this.#o.logSeq !== undefined) headers["x-edgeward-log-seq"] = String(this.#o.logSeq());
    if (status.revision !== null) headers["x-edgeward-bundle-revision"] = String(status.revision);
    if (this.#etag !== null) headers["if-none-match"] = this.#etag;
    if (longPollMs > 0) headers.prefer = `wait=${Math.ceil(longPollMs / 1000)}`;
    const abort = new AbortController();
    this.#inflight = abort;
    const dispatcher = this.#dispatcher(longPollMs + FETCH_SLACK_MS);
    try {
      const res = await request(url, { method: "GET", headers, dispatcher, signal: abort.signal });
      const waited = /(^|[\s,;])wait=/.test(String(res.headers["preference-applied"] ?? ""));
      if (res.statusCode === 304) {
        await res.body.dump();
        this.#o.metrics.bundleUpdates.inc({ source: "url", result: "not-modified" });
        return { status: 304, waited };
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new Error(`control plane answered ${res.statusCode}`);
      }
      const etag = res.headers.etag;
      let result: string;
      try {
        result = await this.offer(unpackArchive(await readLimited(res.body, MAX_ARCHIVE_BYTES)), "url");
      } catch (err) {
        result = this.#refused("url", err);
      }
      // The same bytes would be refused again, so their tag is kept, except where time may change the verdict.
      if (typeof etag === "string") this.#etag = result === "not-yet-valid" ? null : etag;
      return { status: 200, waited };
    } finally {
      this.#inflight = null;
      await dispatcher.close().catch(() => undefined);
    }
  }

  /** Stops the timers and any fetch in flight, and stores the clock's mark. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#inflight?.abort();
    this.#wake?.();
    await this.#loop;
    await this.#saveClock();
  }

  async #pollUrl(): Promise<void> {
    // Long-polling is assumed while asked for, until the server answers "not modified" at once (it ignores `Prefer`).
    let serverWaits = this.#o.config.longPollMs > 0;
    while (!this.#closed) {
      const started = Date.now();
      let ok = false;
      try {
        const { status, waited } = await this.fetchOnce();
        if (status === 304) serverWaits = waited;
        ok = true;
      } catch (err) {
        if (this.#closed) return;
        this.#refused("url", err);
      }
      // A server that holds requests open tells of changes itself: ask again at once (at most once a second).
      // Otherwise, and after any failure, wait for the poll interval.
      const pause = ok && serverWaits ? Math.max(0, MIN_LONG_POLL_GAP_MS - (Date.now() - started)) : this.#o.config.pollIntervalMs;
      await this.#sleep(pause);
    }
  }

  #dispatcher(timeoutMs: number): Dispatcher {
    const { cert, key } = this.#o.clientCredentials();
    return new Agent({
      connect: { cert, key, ...(this.#ca === null ? {} : { ca: this.#ca }) },
      headersTimeout: timeoutMs,
      bodyTimeout: FETCH_SLACK_MS,
      connections: 1,
    });
  }

  async #saveClock(): Promise<void> {
    const state = this.manager.persisted();
    const json = JSON.stringify(state);
    if (json === this.#savedState) return;
    try {
      await this.#store.saveState(state);
      this.#savedState = json;
    } catch (err) {
      this.#o.logger.error({ err: (err as Error).message }, "bundle state could not be saved");
    }
  }

  #refused(source: BundleSource, err: unknown): string {
    const check = err instanceof BundleError ? err.check : err instanceof Error && err.name === "PolicyError" ? "policy" : "fetch";
    const message = err instanceof Error ? err.message : String(err);
    this.lastError = { source, check, message };
    this.#o.metrics.bundleUpdates.inc({ source, result: check });
    this.#o.logger.warn({ source, check }, `policy bundle refused: ${message}`);
    return check;
  }

  #every(ms: number, task: () => Promise<void>): void {
    const tick = () => {
      if (this.#closed) return;
      void task().finally(() => {
        if (this.#closed) return;
        const t = setTimeout(tick, ms).unref();
        this.#timers.add(t);
      });
    };
    const t = setTimeout(tick, ms).unref();
    this.#timers.add(t);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.#closed) return resolve();
      const t = setTimeout(wake, ms);
      t.unref();
      this.#timers.add(t);
      const self = this;
      function wake() {
        self.#timers.delete(t);
        self.#wake = null;
        resolve();
      }
      this.#wake = wake;
    });
  }
}

async function readLimited(body: AsyncIterable<Buffer>, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) throw new BundleError("malformed-archive", `the control plane's bundle is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}
