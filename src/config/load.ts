import { access, constants, readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parseDocument } from "yaml";
import { trustedPeers, XfccError } from "../identity/xfcc.ts";
import { configSchema, DEFAULT_ROOT_NAMESPACE, type GatewayConfig } from "./schema.ts";

/** A configuration that cannot be used; `key` names the offending key (dotted path) when there is one. */
export class ConfigError extends Error {
  readonly key: string | null;
  constructor(key: string | null, message: string) {
    super(key === null ? `config: ${message}` : `config: ${key}: ${message}`);
    this.name = "ConfigError";
    this.key = key;
  }
}

const MAX_CONFIG_BYTES = 1024 * 1024;

export function parseHostPort(value: string): { host: string; port: number } {
  const at = value.lastIndexOf(":");
  const host = value.slice(0, at).replace(/^\[(.*)\]$/, "$1");
  return { host, port: Number(value.slice(at + 1)) };
}

export function parseDurationMs(value: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(value);
  if (!m) throw new ConfigError(null, `bad duration ${JSON.stringify(value)}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "ms" | "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}

function isLoopbackUrl(url: string): boolean {
  return isLoopbackHost(new URL(url).hostname);
}

function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "[::1]" || host === "::1" || /^127\./.test(host);
}

function keyPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`)).join("") || "(root)";
}

/** Validates a parsed YAML value; relative paths resolve against `baseDir`. Pure. */
export function parseConfig(value: unknown, file: string): GatewayConfig {
  const result = configSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    let message = issue.message;
    if (issue.code === "unrecognized_keys") message = `unknown key(s) ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
    throw new ConfigError(keyPath(issue.path), message);
  }
  const c = result.data;
  if ((c.policy === undefined) === (c.bundle === undefined)) {
    throw new ConfigError(c.policy === undefined ? "policy" : "bundle", "set exactly one of policy (files) and bundle (signed bundles)");
  }
  if (c.bundle?.url !== undefined && !URL.canParse(c.bundle.url)) throw new ConfigError("bundle.url", "not a valid URL");
  if (c.bundle?.url !== undefined && c.bundle.url.startsWith("http://") && !isLoopbackUrl(c.bundle.url)) {
    throw new ConfigError("bundle.url", "plain http:// is allowed only on loopback; use https://");
  }
  if (c.upload !== undefined) {
    if (!URL.canParse(c.upload.url)) throw new ConfigError("upload.url", "not a valid URL");
    if (c.upload.url.startsWith("http://") && !isLoopbackUrl(c.upload.url)) {
      throw new ConfigError("upload.url", "plain http:// is allowed only on loopback; use https://");
    }
    if (parseDurationMs(c.upload.interval) === 0) throw new ConfigError("upload.interval", "must be longer than 0");
  }
  if (c.workloadLabels !== undefined && c.workload?.labels !== undefined) {
    throw new ConfigError("workloadLabels", "is the older name of workload.labels; set one of them, not both");
  }
  if (c.logRetention !== undefined && c.upload === undefined) {
    throw new ConfigError("logRetention", "needs upload: only records the control plane has acknowledged are ever pruned");
  }
  const base = dirname(file);
  const abs = (p: string) => resolve(base, p);
  const listenSocket = c.listen.startsWith("unix:") ? abs(c.listen.slice("unix:".length)) : null;
  if (c.identity.source === "mtls" && listenSocket !== null) {
    throw new ConfigError("listen", "a Unix socket is only for sidecar mode (identity.source: xfcc); the mTLS listener needs host:port");
  }
  if (c.identity.source === "xfcc" && listenSocket === null && !isLoopbackHost(parseHostPort(c.listen).host)) {
    throw new ConfigError("listen", "in sidecar mode the plain-HTTP listener must be on loopback or a Unix socket: only the local sidecar may reach it");
  }
  try {
    trustedPeers(c.identity.trustedPeers);
  } catch (err) {
    if (err instanceof XfccError) throw new ConfigError("identity.trustedPeers", err.message);
    throw err;
  }
  const models = new Map<string, string>();
  c.runners.forEach((r, i) => {
    for (const m of r.models) {
      const other = models.get(m);
      if (other !== undefined) throw new ConfigError(`runners[${i}].models`, `model ${JSON.stringify(m)} is already served by runner ${JSON.stringify(other)}`);
      models.set(m, r.name);
    }
  });
  const names = new Set<string>();
  c.runners.forEach((r, i) => {
    if (names.has(r.name)) throw new ConfigError(`runners[${i}].name`, `duplicate runner name ${JSON.stringify(r.name)}`);
    names.add(r.name);
    if (parseDurationMs(r.probeInterval) === 0) throw new ConfigError(`runners[${i}].probeInterval`, "must be longer than 0");
    if (r.embedded === undefined) return;
    if (!r.url.startsWith("unix:")) {
      throw new ConfigError(`runners[${i}].url`, "an embedded runner listens on a Unix socket only its user can open: use unix:path/to.sock");
    }
    if (r.models.length !== 1) throw new ConfigError(`runners[${i}].models`, "an embedded runner serves exactly one model: name it once");
  });
  return {
    file,
    listen: listenSocket === null ? parseHostPort(c.listen) : { path: listenSocket },
    identity: { source: c.identity.source, trustedPeers: c.identity.trustedPeers },
    admin: parseHostPort(c.admin),
    tls: { cert: abs(c.tls.cert), key: abs(c.tls.key), reloadIntervalMs: parseDurationMs(c.tls.reloadInterval) },
    trustBundles: Object.fromEntries(Object.entries(c.trustBundles).map(([td, p]) => [td, abs(p)])),
    policy: c.policy === undefined ? [] : (Array.isArray(c.policy) ? c.policy : [c.policy]).map(abs),
    bundle: c.bundle === undefined ? null : {
      path: c.bundle.path === undefined ? null : abs(c.bundle.path),
      url: c.bundle.url ?? null,
      pollIntervalMs: parseDurationMs(c.bundle.pollInterval),
      longPollMs: parseDurationMs(c.bundle.longPoll),
      keys: c.bundle.keys.map(abs),
      stateDir: abs(c.bundle.stateDir),
      clockToleranceMs: parseDurationMs(c.bundle.clockTolerance),
      ca: c.bundle.ca === undefined ? null : abs(c.bundle.ca),
    },
    runners: c.runners.map((r) => {
      const socket = r.url.startsWith("unix:") ? abs(r.url.slice("unix:".length)) : null;
      const e = r.embedded;
      return {
        name: r.name,
        url: socket === null ? r.url : `unix:${socket}`,
        models: r.models,
        timeoutMs: parseDurationMs(r.timeout),
        maxConnections: r.maxConnections,
        maxQueued: r.maxQueued,
        probeIntervalMs: parseDurationMs(r.probeInterval),
        embedded: e === undefined || socket === null ? null : {
          model: abs(e.model), socket, name: r.models[0]!,
          ...(e.threads !== undefined ? { threads: e.threads } : {}),
          ...(e.contextSize !== undefined ? { contextSize: e.contextSize } : {}),
          ...(e.gpu !== undefined ? { gpu: e.gpu } : {}),
          startTimeoutMs: parseDurationMs(e.startTimeout),
        },
      };
    }),
    decisionLog: abs(c.decisionLog),
    upload: c.upload === undefined ? null : {
      url: c.upload.url.replace(/\/+$/, ""),
      intervalMs: parseDurationMs(c.upload.interval),
      maxBatchRecords: c.upload.maxBatchRecords,
      stateDir: abs(c.upload.stateDir),
      ca: c.upload.ca === undefined ? null : abs(c.upload.ca),
    },
    logRetentionMs: c.logRetention === undefined ? null : parseDurationMs(c.logRetention),
    authz: c.authz === undefined ? null : {
      grpc: c.authz.grpc === undefined ? null : parseHostPort(c.authz.grpc),
      http: c.authz.http === undefined ? null : parseHostPort(c.authz.http),
      pathPrefix: c.authz.pathPrefix,
      principalFrom: c.authz.principalFrom,
      maxBodyBytes: c.authz.maxBodyBytes,
    },
    limits: (({ bodyTimeout, ...rest }) => ({ ...rest, bodyTimeoutMs: parseDurationMs(bodyTimeout) }))(c.limits),
    workload: {
      ...(c.workload?.namespace !== undefined ? { namespace: c.workload.namespace } : {}),
      labels: c.workload?.labels ?? c.workloadLabels ?? {},
      rootNamespace: c.workload?.rootNamespace ?? DEFAULT_ROOT_NAMESPACE,
    },
    logLevel: c.logLevel,
  };
}

/**
 * Checks that every file the configuration names can be read, so that a missing one is reported with the key that
 * names it (`config: tls.cert: cannot read /etc/edgeward/gateway.pem: ENOENT`) rather than as a bare path.
 */
export async function checkConfigFiles(config: GatewayConfig): Promise<void> {
  const files: [string, string][] = [["tls.cert", config.tls.cert], ["tls.key", config.tls.key]];
  for (const [td, path] of Object.entries(config.trustBundles)) files.push([`trustBundles.${td}`, path]);
  config.policy.forEach((path, i) => files.push([config.policy.length === 1 ? "policy" : `policy[${i}]`, path]));
  config.bundle?.keys.forEach((path, i) => files.push([`bundle.keys[${i}]`, path]));
  if (config.bundle?.ca) files.push(["bundle.ca", config.bundle.ca]);
  if (config.upload?.ca) files.push(["upload.ca", config.upload.ca]);
  config.runners.forEach((r, i) => {
    if (r.embedded !== null) files.push([`runners[${i}].embedded.model`, r.embedded.model]);
  });
  for (const [key, path] of files) {
    try {
      await access(path, constants.R_OK);
    } catch (err) {
      throw new ConfigError(key, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
    }
  }
}

/** Reads and validates the gateway configuration file. */
export async function loadConfig(path: string): Promise<GatewayConfig> {
  const { value, file } = await readYamlConfig(path);
  return parseConfig(value, file);
}

/** Reads a YAML configuration file (≤ 1 MiB) into plain data; errors name the file and line. */
export async function readYamlConfig(path: string): Promise<{ value: unknown; file: string }> {
  const file = resolve(path);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new ConfigError(null, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) throw new ConfigError(null, `${file} is larger than 1 MiB`);
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line;
    throw new ConfigError(null, `${file}${line ? `:${line}` : ""}: invalid YAML: ${e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}`);
  }
  return { value: doc.toJS({ maxAliasCount: 100 }), file };
}
