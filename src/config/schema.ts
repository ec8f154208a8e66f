import { z } from "zod";

/** "host:port" with a numeric port (0 asks the OS for a free one). */
const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "expected host:port, e.g. 127.0.0.1:8443")
  .refine((v) => Number(v.slice(v.lastIndexOf(":") + 1)) <= 65535, "port must be at most 65535");

const duration = z.string().regex(/^\d+(ms|s|m|h)$/, "expected a duration such as 500ms, 30s, 5m or 1h");

const positiveInt = z.number().int().positive();

/** A retention period: days are the natural unit. */
const longDuration = z.string().regex(/^\d+(ms|s|m|h|d)$/, "expected a duration such as 12h or 7d");

/** `edgeward runner` started and supervised by the gateway itself, on the runner's `unix:` socket. */
const embeddedRunner = z.strictObject({
  /** The GGUF model file. */
  model: z.string().min(1),
  threads: positiveInt.max(1024).optional(),
  contextSize: z.number().int().min(16).optional(),
  /** Which llama.cpp build to load (`edgeward runner --gpu`). */
  gpu: z.enum(["off", "auto", "cuda", "vulkan", "metal"]).optional(),
  /** How long the runner may take to load its model and listen, at each start. */
  startTimeout: duration.default("120s"),
});

const runner = z.strictObject({
  name: z.string().min(1).regex(/^[A-Za-z0-9._-]+$/, "use letters, digits, '.', '_' or '-'"),
  /** http://host:port[/base], https://…, or unix:PATH.sock (relative to the config file, or absolute) */
  url: z.string().regex(/^(https?:\/\/[^\s]+|unix:[^\s]+)$/, "expected http(s)://host:port or unix:path/to.sock"),
  models: z.array(z.string().min(1)).min(1),
  /** How long to wait for the runner's response headers (then 504). */
  timeout: duration.default("60s"),
  maxConnections: positiveInt.default(64),
  /** Requests that may wait for one of those connections; beyond, 503 with Retry-After. */
  maxQueued: z.number().int().min(0).default(64),
  /** How often the runner's health is probed (GET /v1/models), off the request path. */
  probeInterval: duration.default("5s"),
  /** Set: the gateway starts this runner itself (`edgeward runner`), restarts it when it dies, and stops it with itself. */
  embedded: embeddedRunner.optional(),
});

const limits = z.strictObject({
  /** Largest request body accepted (413 beyond). */
  maxBodyBytes: positiveInt.default(1024 * 1024),
  /** Ceiling on max_tokens for every request; a request without max_tokens gets this value. */
  maxTokens: positiveInt.default(1024),
  /** Most choices one request may have generated (`n`, `best_of`); a policy rule's maxChoices tightens it. */
  maxChoices: positiveInt.max(128).default(1),
  /** Defaults applied to every principal; a policy rule's limits tighten them. */
  requestsPerMinute: positiveInt.optional(),
  tokensPerMinute: positiveInt.optional(),
  /** How long a request body may take to arrive once its headers have (408 and the connection closed beyond). */
  bodyTimeout: duration.default("30s"),
  /** Open connections to the main listener, in all (further ones are closed as they arrive) and per caller (429). */
  maxConnections: positiveInt.default(1024),
  maxConnectionsPerPrincipal: positiveInt.default(128),
  /** Requests in flight, in all (503) and per caller (429). */
  maxInflight: positiveInt.default(256),
  maxInflightPerPrincipal: positiveInt.default(64),
});

/** Where signed policy bundles come from (instead of `policy`): a local file, a control-plane URL, or both. */
const bundle = z.strictObject({
  /** A bundle file (.tar.gz) or directory on this node; re-read when it changes. */
  path: z.string().min(1).optional(),
  /** The control plane's bundle URL, fetched with If-None-Match (https://, or http:// on loopback only). */
  url: z.string().regex(/^https?:\/\/[^\s]+$/, "expected an http(s):// URL").optional(),
  /** How often the file or URL is checked. */
  pollInterval: duration.default("60s"),
  /** The longest wait to ask the server for (`Prefer: wait=N`); 0s turns long-polling off. */
  longPoll: duration.default("0s"),
  /** Public keys (PEM, from `edgeward bundle keygen`) whose signatures are accepted; several during a rotation. */
  keys: z.array(z.string().min(1)).min(1),
  /** Where the last verified bundle and the node's bundle state are kept (0700). */
  stateDir: z.string().min(1),
  /** How far the wall clock may go back before it counts as tampering. */
  clockTolerance: duration.default("5m"),
  /** CA certificates (PEM) that sign the control plane's server certificate; the gateway's own SVID is the client certificate. */
  ca: z.string().min(1).optional(),
}).refine((b) => b.path !== undefined || b.url !== undefined, "set path, url, or both");

/** Uploading the decision log to the control plane, in batches, with a persisted cursor. */
const upload = z.strictObject({
  /** The control plane's log endpoint: batches are POSTed here, the acknowledged head is read from `{url}/head`. */
  url: z.string().regex(/^https?:\/\/[^\s]+$/, "expected an http(s):// URL"),
  /** How often the log is uploaded, and the base of the backoff while the control plane is unreachable. */
  interval: duration.default("10s"),
  /** Most records per batch (the control plane takes at most 10000 lines per batch). */
  maxBatchRecords: positiveInt.max(10_000).default(1000),
  /** Where the upload cursor is kept (0700; cursor.json 0600). */
  stateDir: z.string().min(1),
  /** CA certificates (PEM) that sign the control plane's server certificate; the gateway's own SVID is the client certificate. */
  ca: z.string().min(1).optional(),
});

/** Envoy's external authorization (ext_authz): the gRPC and/or HTTP services Istio's CUSTOM policies call. */
const authz = z.strictObject({
  /** gRPC envoy.service.auth.v3.Authorization listener (envoyExtAuthzGrpc). */
  grpc: hostPort.optional(),
  /** HTTP ext_authz listener (envoyExtAuthzHttp). */
  http: hostPort.optional(),
  /** The HTTP service's path prefix (Envoy's path_prefix / Istio's pathPrefix): "" or "/segment…", no trailing slash. */
  pathPrefix: z.string().regex(/^(\/[^\s?#]*[^\s?#/])?$/, "expected \"\" or a path such as /authz (no trailing slash)").default(""),
  /** gRPC: the caller is the check's source.principal (Envoy's view of the mTLS peer), or the XFCC header. HTTP always reads XFCC. */
  principalFrom: z.enum(["source", "xfcc"]).default("source"),
  /** Largest request body the check reads (Istio's includeRequestBodyInCheck.maxRequestBytes should not exceed it). */
  maxBodyBytes: positiveInt.default(8192),
}).refine((a) => a.grpc !== undefined || a.http !== undefined, "set grpc, http, or both");

/** Where callers' identities come from: the mTLS handshake, or (sidecar mode) the XFCC header a local Envoy sets. */
const identity = z.strictObject({
  source: z.enum(["mtls", "xfcc"]).default("mtls"),
  /** Peers allowed to assert an identity with x-forwarded-client-cert: the local sidecar (Istio's inbound source is 127.0.0.6). */
  trustedPeers: z.array(z.string().min(1)).min(1).default(["127.0.0.1", "::1", "127.0.0.6"]),
});

/** A Kubernetes namespace name (RFC 1123 label). */
const namespaceName = z.string().max(63).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "expected a Kubernetes namespace name");
const labels = z.record(z.string(), z.string());
/** Istio's default root namespace. */
export const DEFAULT_ROOT_NAMESPACE = "istio-system";

const workload = z.strictObject({
  /** Its namespace: only policies there and in the root namespace apply. Unset: every loaded policy applies. */
  namespace: namespaceName.optional(),
  /** Its labels, matched by policies' `selector.matchLabels`. */
  labels: labels.optional(),
  /** Istio's root namespace: its policies apply mesh-wide. */
  rootNamespace: namespaceName.default(DEFAULT_ROOT_NAMESPACE),
});

export const configSchema = z.strictObject({
  /** host:port; in sidecar mode (identity.source xfcc) also unix:/path.sock. */
  listen: z.string().superRefine((value, ctx) => {
    if (value.startsWith("unix:")) {
      if (!/^unix:\/[^\s]+$/.test(value)) ctx.addIssue({ code: "custom", message: "expected unix:/absolute/path.sock" });
      return;
    }
    const tcp = hostPort.safeParse(value);
    if (!tcp.success) ctx.addIssue({ code: "custom", message: tcp.error.issues[0]!.message });
  }),
  identity: identity.default({ source: "mtls", trustedPeers: ["127.0.0.1", "::1", "127.0.0.6"] }),
  admin: hostPort,
  tls: z.strictObject({
    cert: z.string().min(1),
    key: z.string().min(1),
    /** How often the certificate, key and trust bundle files are checked for rotation. */
    reloadInterval: duration.default("30s"),
  }),
  trustBundles: z.record(z.string().min(1), z.string().min(1))
    .refine((m) => Object.keys(m).length > 0, "at least one trust domain is required"),
  policy: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  bundle: bundle.optional(),
  runners: z.array(runner).min(1),
  decisionLog: z.string().min(1),
  upload: upload.optional(),
  /** Records both acknowledged by the control plane and older than this may be pruned from the decision log. */
  logRetention: longDuration.optional(),
  authz: authz.optional(),
  limits: limits.default(limits.parse({})),
  /** This gateway as a workload of the mesh, which decides the policies that apply to it (Istio's scoping). */
  workload: workload.optional(),
  /** The older name of `workload.labels`. */
  workloadLabels: labels.optional(),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "silent"]).default("info"),
});

export type ConfigInput = z.input<typeof configSchema>;
type Parsed = z.output<typeof configSchema>;

export interface RunnerConfig {
  name: string;
  url: string;
  models: string[];
  timeoutMs: number;
  maxConnections: number;
  maxQueued: number;
  probeIntervalMs: number;
  /** A runner the gateway starts and supervises itself (null: one started by someone else). */
  embedded: EmbeddedRunnerConfig | null;
}

export interface EmbeddedRunnerConfig {
  /** Absolute path of the GGUF model. */
  model: string;
  /** Absolute path of the Unix socket it listens on (the runner's `url`). */
  socket: string;
  /** The model id it serves (the runner's one model). */
  name: string;
  threads?: number;
  contextSize?: number;
  gpu?: "off" | "auto" | "cuda" | "vulkan" | "metal";
  startTimeoutMs: number;
}

export interface IdentityConfig {
  source: "mtls" | "xfcc";
  trustedPeers: string[];
}

export interface BundleSourceConfig {
  path: string | null;
  url: string | null;
  pollIntervalMs: number;
  longPollMs: number;
  keys: string[];
  stateDir: string;
  clockToleranceMs: number;
  ca: string | null;
}

export interface AuthzConfig {
  grpc: { host: string; port: number } | null;
  http: { host: string; port: number } | null;
  pathPrefix: string;
  principalFrom: "source" | "xfcc";
  maxBodyBytes: number;
}

export interface UploadConfig {
  url: string;
  intervalMs: number;
  maxBatchRecords: number;
  stateDir: string;
  ca: string | null;
}

export interface WorkloadConfig {
  /** Absent: every loaded policy applies whatever its namespace. */
  namespace?: string;
  labels: Record<string, string>;
  rootNamespace: string;
}

/** The validated configuration, with paths made absolute and durations in milliseconds. */
export interface GatewayConfig {
  file: string;
  /** A TCP address, or (sidecar mode only) a Unix socket path. */
  listen: { host: string; port: number } | { path: string };
  identity: IdentityConfig;
  admin: { host: string; port: number };
  tls: { cert: string; key: string; reloadIntervalMs: number };
  trustBundles: Record<string, string>;
  /** Policy files (empty when the policy comes from signed bundles). */
  policy: string[];
  bundle: BundleSourceConfig | null;
  runners: RunnerConfig[];
  decisionLog: string;
  /** Decision-log upload to the control plane (null: the log stays on this node). */
  upload: UploadConfig | null;
  /** Retention of acknowledged records (null: never pruned). */
  logRetentionMs: number | null;
  /** The ext_authz services (null: not configured). */
  authz: AuthzConfig | null;
  limits: Omit<Parsed["limits"], "bodyTimeout"> & { bodyTimeoutMs: number };
  /** This gateway as a workload of the mesh: which policies apply to it. */
  workload: WorkloadConfig;
  logLevel: Parsed["logLevel"];
}
