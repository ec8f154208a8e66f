import { isMap, isSeq, LineCounter, parseDocument } from "yaml";
import type { Node } from "yaml";
import { z } from "zod";

/**
 * The values file of `edgeward render`: one document, in the spirit of a Helm chart's
 * values, describing the deployment around one model runner. Every key is documented
 * in examples/deploy.yaml; defaults are chosen so that a minimal file renders a
 * deployment that passes `edgeward audit` except for what only the operator can
 * supply (image digests, signing identities).
 */

/** A values file that cannot be used; the message reads "file[:line]: key: what is wrong". */
export class ValuesError extends Error {
  readonly file: string;
  readonly key: string | null;
  readonly line: number | null;

  constructor(file: string, key: string | null, line: number | null, detail: string) {
    super(`${file}${line === null ? "" : `:${line}`}: ${key === null ? "" : `${key}: `}${detail}`);
    this.name = "ValuesError";
    this.file = file;
    this.key = key;
    this.line = line;
  }
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
/** A trust domain as the SPIFFE ID specification allows it. */
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
/** An image reference without a digest: [registry/]path[:tag]. */
const IMAGE = /^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;
/** A repository, or a registry namespace ending in "/*", whose images must be signed. */
const IMAGE_PATTERN = /^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-]+[a-z0-9]+)*)*(\/\*)?$/;
const QUANTITY = /^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/;

const dnsLabel = z.string().max(63).regex(DNS_LABEL, "must be a DNS label (lowercase letters, digits and '-')");
const dnsSubdomain = z.string().max(253).regex(DNS_SUBDOMAIN, "must be a DNS subdomain (lowercase letters, digits, '-' and '.')");
const labels = z.record(
  z.string().regex(LABEL_KEY, "label keys are [prefix/]name"),
  z.string().max(63).regex(LABEL_VALUE, "label values are at most 63 letters, digits, '-', '_' or '.'"),
);
const port = z.number().int().min(1).max(65535);
/** A non-root UID: the restricted Pod Security Standard forbids 0. */
const uid = z.number().int().min(1, "must not be 0 (root)").max(2147483647);
const quantity = z
  .union([z.string().regex(QUANTITY, "expected a Kubernetes quantity such as 500m, 2, 512Mi or 8Gi"), z.number().positive()])
  .transform((q) => String(q));
const digest = z.string().regex(/^sha256:[a-f0-9]{64}$/, "expected sha256:<64 lowercase hex digits>");
const image = z
  .string()
  .regex(IMAGE, "expected an image reference registry/repository[:tag] (put the digest in the digest key)")
  .refine(
    (ref) => /^([^/]*[.:][^/]*|localhost)\//.test(ref),
    "name the registry (e.g. docker.io/vllm/vllm-openai), so admission patterns see the same reference the node pulls",
  );
const absolutePath = z.string().regex(/^\/[^\0]*$/, "must be an absolute path");
const urlString = z.string().regex(/^https?:\/\/[^\s]+$/, "expected an http(s):// URL").refine((u) => URL.canParse(u), "not a valid URL");
const pem = z.string().regex(/-----BEGIN PUBLIC KEY-----[\s\S]+-----END PUBLIC KEY-----/, "expected a PEM public key (-----BEGIN PUBLIC KEY-----)");

const resources = z.strictObject({
  requests: z.strictObject({ cpu: quantity, memory: quantity }),
  limits: z.strictObject({ cpu: quantity, memory: quantity }),
});

const gateway = z.strictObject({
  image,
  digest: digest.optional(),
  replicas: z.number().int().min(1).default(2),
  /** The mTLS listener for callers. */
  port: port.default(8443),
  /** Plain HTTP: /metrics, /healthz, /readyz. Reachable only by the kubelet and Prometheus. */
  adminPort: port.default(9464),
  runAsUser: uid.default(10001),
  resources,
  /** Labels matched by policies' selector.matchLabels; also put on the gateway's pods. */
  workloadLabels: labels.default({ app: "edgeward-gateway" }),
  limits: z
    .strictObject({
      maxBodyBytes: z.number().int().positive().optional(),
      maxTokens: z.number().int().positive().optional(),
      requestsPerMinute: z.number().int().positive().optional(),
      tokensPerMinute: z.number().int().positive().optional(),
    })
    .optional(),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug"]).default("info"),
  /** A PersistentVolumeClaim for the decision log; without one it lives in an emptyDir and is lost with the pod. */
  decisionLogClaim: dnsSubdomain.optional(),
});

const gpu = z.strictObject({
  count: z.number().int().min(0).default(1),
  resourceName: z.string().regex(/^[a-z0-9.-]+\/[a-z0-9.-]+$/, "expected an extended resource name such as nvidia.com/gpu").default("nvidia.com/gpu"),
  /** e.g. "nvidia" on k3s with the NVIDIA container runtime. */
  runtimeClassName: dnsSubdomain.optional(),
});

const runner = z.strictObject({
  /** The runner's name in the gateway configuration. */
  name: z.string().regex(/^[A-Za-z0-9._-]+$/, "use letters, digits, '.', '_' or '-'").default("runner"),
  image,
  digest: digest.optional(),
  command: z.array(z.string()).min(1).optional(),
  args: z.array(z.string()).default([]),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "environment variable names are [A-Za-z_][A-Za-z0-9_]*"), z.string()).default({}),
  port: port.default(8000),
  healthPath: z.string().regex(/^\/[^\s]*$/, "must start with /").default("/health"),
  /** Model names the runner serves, as callers ask for them (the gateway routes by these). */
  models: z.array(z.string().min(1)).min(1),
  replicas: z.number().int().min(1).default(1),
  runAsUser: uid.default(10002),
  resources,
  gpu: gpu.default({ count: 1, resourceName: "nvidia.com/gpu" }),
  /** Size of the in-memory /dev/shm (vLLM and PyTorch use shared memory). */
  shmSize: quantity.optional(),
  /** How long the runner may take to load its model before it counts as failed. */
  startupSeconds: z.number().int().min(10).default(600),
  nodeSelector: labels.optional(),
});

const modelVolume = z.union([
  z.strictObject({ persistentVolumeClaim: z.strictObject({ claimName: dnsSubdomain }) }),
  z.strictObject({
    hostPath: z.strictObject({
      path: absolutePath,
      size: quantity.default("100Gi"),
      /** Pin the volume (and so the runner) to the node holding the files. */
      node: z.string().min(1).optional(),
    }),
  }),
], { error: "set exactly one of persistentVolumeClaim {claimName} or hostPath {path}" });

const caller = z.strictObject({
  namespace: dnsLabel,
  /** A service account name, or "*" for every service account of the namespace. */
  serviceAccount: z.union([dnsSubdomain, z.literal("*")]),
  /** Pod labels, to narrow Kubernetes NetworkPolicy peers (which cannot select by service account). */
  podLabels: labels.optional(),
});

const signer = z
  .strictObject({
    /** "registry/namespace/*" (every repository below) or "registry/repository" (any tag or digest of it). */
    pattern: z.string().regex(IMAGE_PATTERN, 'expected "registry/repository" or "registry/namespace/*"'),
    /** A cosign public key (PEM). */
    key: pem.optional(),
    /** A Fulcio certificate identity (cosign keyless). */
    keyless: z.strictObject({ issuer: urlString, subject: z.string().min(1) }).optional(),
    /**
     * Whether the signature must be in the transparency log (Rekor). Keyless signatures always are; a key's may not
     * be: `edgeward release sign` signs offline, so its images need `transparencyLog: false`.
     */
    transparencyLog: z.boolean().default(true),
  })
  .refine((s) => (s.key === undefined) !== (s.keyless === undefined), "set exactly one of key (PEM) and keyless {issuer, subject}")
  .refine((s) => s.key !== undefined || s.transparencyLog, "keyless signatures are always checked in the transparency log; transparencyLog: false needs a key");

const admission = z.strictObject({
  engine: z.enum(["sigstore", "kyverno", "gatekeeper-ratify"]),
  /** Every image in the namespace must match one entry and carry a signature by that entry's key or identity. */
  images: z.array(signer).min(1),
  rekorUrl: urlString.default("https://rekor.sigstore.dev"),
  fulcioUrl: urlString.default("https://fulcio.sigstore.dev"),
  /** The Gatekeeper external-data Provider that Ratify installs. */
  ratifyProvider: dnsSubdomain.default("ratify-gatekeeper-provider"),
});

const spire = z.strictObject({
  /** spiffe-helper: fetches the gateway's X.509-SVID and trust bundle from the SPIRE agent into files. */
  helperImage: image,
  helperDigest: digest.optional(),
  /** The SPIFFE CSI driver exposing the Workload API socket. */
  csiDriver: dnsSubdomain.default("csi.spiffe.io"),
  /** spire-controller-manager className, when the controller only handles its own class. */
  className: z.string().min(1).optional(),
});

const vault = z
  .strictObject({
    enabled: z.boolean().default(false),
    address: urlString.optional(),
    role: z.string().min(1).optional(),
    secretPath: z.string().min(1).optional(),
    /** Where Vault runs in the cluster, for the egress NetworkPolicy. */
    namespace: dnsLabel.default("vault"),
    port: port.default(8200),
  })
  .refine((v) => !v.enabled || (v.address !== undefined && v.role !== undefined && v.secretPath !== undefined), "vault.enabled needs address, role and secretPath");

const monitoring = z.strictObject({
  enabled: z.boolean().default(true),
  prometheusNamespace: dnsLabel.default("monitoring"),
  prometheusServiceAccount: dnsSubdomain.default("prometheus-k8s"),
  prometheusPodLabels: labels.default({ "app.kubernetes.io/name": "prometheus" }),
  /** Labels your Prometheus selects ServiceMonitors by (e.g. release: kube-prometheus-stack). */
  serviceMonitorLabels: labels.default({}),
  /** Where Grafana's dashboard sidecar looks for ConfigMaps; defaults to prometheusNamespace. */
  dashboardNamespace: dnsLabel.optional(),
});

const falco = z.strictObject({
  enabled: z.boolean().default(true),
  namespace: dnsLabel.default("falco"),
});

const dns = z.strictObject({
  namespace: dnsLabel.default("kube-system"),
  podLabels: labels.default({ "k8s-app": "kube-dns" }),
});

/**
 * Istio ext_authz (mesh: istio only): the gateway also serves Envoy's external authorization API on `port`, the
 * mesh learns it as the extension provider "edgeward-authz", and a CUSTOM AuthorizationPolicy makes the runner's
 * sidecar ask it about every request (protectRunner). docs/istio.md and docs/kubernetes.md.
 */
const authz = z.strictObject({
  enabled: z.boolean().default(false),
  /** grpc: envoy.service.auth.v3.Authorization (envoyExtAuthzGrpc); http: Envoy's HTTP protocol (envoyExtAuthzHttp). */
  transport: z.enum(["grpc", "http"]).default("grpc"),
  port: port.default(9191),
  /** A CUSTOM AuthorizationPolicy on the runner: its sidecar checks every request with the gateway before the runner sees it. */
  protectRunner: z.boolean().default(true),
  /** transport http only: the prefix Envoy puts before the original path (Istio's pathPrefix). */
  pathPrefix: z.string().regex(/^\/[^\s?#]*[^\s?#/]$/, 'expected a path such as /check (no trailing slash)').optional(),
  /** The largest body a check reads (Istio's includeRequestBodyInCheck.maxRequestBytes); default: the gateway's limits.maxBodyBytes. */
  maxBodyBytes: z.number().int().positive().optional(),
  /** Workloads elsewhere in the mesh whose sidecars may call the authorizer (for CUSTOM policies of your own). */
  clients: z.array(caller).default([]),
  /** The cluster's DNS domain, for the provider's service name. */
  clusterDomain: dnsSubdomain.default("cluster.local"),
});

/** The gateway's own default (src/config/schema.ts limits.maxBodyBytes). */
export const GATEWAY_DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export const valuesSchema = z.strictObject({
  namespace: dnsLabel,
  trustDomain: z.string().max(255).regex(TRUST_DOMAIN, "a trust domain is lowercase letters, digits, '.', '-' and '_'"),
  /** The policy file, relative to the values file (`--policy` overrides it). */
  policy: z.string().min(1).optional(),
  gateway,
  runner,
  model: z.strictObject({ path: absolutePath.default("/models"), volume: modelVolume }),
  /** Who may call the gateway; derived from the policy's principals when left out. */
  callers: z.array(caller).min(1).optional(),
  mesh: z.enum(["istio", "linkerd", "none"]).default("none"),
  meshNamespace: dnsLabel.optional(),
  cni: z.enum(["kubernetes", "calico", "cilium"]).default("kubernetes"),
  admission,
  spire,
  vault: vault.default({ enabled: false, namespace: "vault", port: 8200 }),
  monitoring: monitoring.default({
    enabled: true,
    prometheusNamespace: "monitoring",
    prometheusServiceAccount: "prometheus-k8s",
    prometheusPodLabels: { "app.kubernetes.io/name": "prometheus" },
    serviceMonitorLabels: {},
  }),
  falco: falco.default({ enabled: true, namespace: "falco" }),
  dns: dns.default({ namespace: "kube-system", podLabels: { "k8s-app": "kube-dns" } }),
  authz: authz.default({ enabled: false, transport: "grpc", port: 9191, protectRunner: true, clients: [], clusterDomain: "cluster.local" }),
});

export type Values = z.output<typeof valuesSchema>;
export type ValuesInput = z.input<typeof valuesSchema>;
export type Caller = z.output<typeof caller>;
export type Signer = z.output<typeof signer>;
export type AuthzValues = z.output<typeof authz>;

function keyPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`)).join("") || "(root)";
}

/** Validates an already-parsed values document. Pure; `file` only names the source in errors. */
export function validateValues(value: unknown, file: string, lineOf: (path: readonly PropertyKey[]) => number | null = () => null): Values {
  const result = valuesSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    let message = issue.message;
    let path: PropertyKey[] = [...issue.path];
    if (issue.code === "unrecognized_keys") {
      message = `unknown key(s) ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
      path = [...path, issue.keys[0]!];
    }
    if (issue.code === "invalid_type" && issue.input === undefined) message = "is required";
    const shown = issue.code === "unrecognized_keys" ? path.slice(0, -1) : path;
    throw new ValuesError(file, shown.length === 0 ? null : keyPath(shown), lineOf(path), message);
  }
  const v = result.data;
  const reserved = Object.keys(v.gateway.workloadLabels).filter((k) => k.startsWith("app.kubernetes.io/"));
  if (reserved.length > 0) {
    throw new ValuesError(file, "gateway.workloadLabels", lineOf(["gateway", "workloadLabels"]), `${reserved[0]} is set by render; use another key`);
  }
  if (v.mesh === "none" && v.meshNamespace !== undefined) {
    throw new ValuesError(file, "meshNamespace", lineOf(["meshNamespace"]), "set only with mesh istio or linkerd");
  }
  const ports = [v.gateway.port, v.gateway.adminPort];
  if (ports[0] === ports[1]) throw new ValuesError(file, "gateway.adminPort", lineOf(["gateway", "adminPort"]), "must differ from gateway.port");
  validateAuthz(v, file, lineOf);
  return v;
}

function validateAuthz(v: Values, file: string, lineOf: (path: readonly PropertyKey[]) => number | null): void {
  const a = v.authz;
  const fail = (key: string, detail: string): never => {
    throw new ValuesError(file, `authz.${key}`, lineOf(["authz", key]), detail);
  };
  if (!a.enabled) return;
  if (v.mesh !== "istio") {
    fail("enabled", `needs mesh: istio (the extension provider and the CUSTOM AuthorizationPolicy are Istio's), not mesh: ${v.mesh}`);
  }
  if (a.port === v.gateway.port || a.port === v.gateway.adminPort) fail("port", "must differ from gateway.port and gateway.adminPort");
  if (a.pathPrefix !== undefined && a.transport !== "http") fail("pathPrefix", "set only with transport: http");
  if (!a.protectRunner && a.clients.length === 0) {
    fail("clients", "with protectRunner: false, list the workloads whose sidecars may call the authorizer; otherwise nothing can reach it");
  }
  if (a.protectRunner) {
    const gatewayMax = v.gateway.limits?.maxBodyBytes ?? GATEWAY_DEFAULT_MAX_BODY_BYTES;
    if (a.maxBodyBytes !== undefined && a.maxBodyBytes < gatewayMax) {
      fail("maxBodyBytes", `is below the gateway's maxBodyBytes (${gatewayMax}): the runner's checks would refuse (413) bodies the gateway admits and forwards`);
    }
    // Every request the gateway forwards reaches the runner's check under one identity, the gateway's own.
    for (const key of ["requestsPerMinute", "tokensPerMinute"] as const) {
      if (v.gateway.limits?.[key] !== undefined) {
        throw new ValuesError(file, `gateway.limits.${key}`, lineOf(["gateway", "limits", key]),
          "with authz.protectRunner the runner's checks count every forwarded request against the gateway's own identity, so a default per-caller budget would throttle all callers together; set budgets as rule limits in the policy file instead");
      }
    }
  }
}

/** Parses and validates a values file's text. Errors name the file, the line when known, and the key. */
export function parseValues(text: string, file: string): Values {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const first = doc.errors[0];
  if (first !== undefined) {
    throw new ValuesError(file, null, lines.linePos(first.pos[0]).line, `invalid YAML: ${first.message.split("\n")[0]}`);
  }
  const lineOf = (path: readonly PropertyKey[]): number | null => {
    // The key itself when it exists; a missing key is reported at its closest existing parent.
    for (let n = path.length; n > 0; n--) {
      const parent = (n === 1 ? doc.contents : doc.getIn(path.slice(0, n - 1) as unknown[], true)) as Node | undefined;
      const offset = (keyNode(parent, path[n - 1]) as { range?: readonly number[] } | undefined)?.range?.[0];
      if (offset !== undefined) return lines.linePos(offset).line;
    }
    return null;
  };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ValuesError(file, null, null, `invalid YAML: ${(err as Error).message}`);
  }
  if (value === null || value === undefined) throw new ValuesError(file, null, null, "the values file is empty");
  return validateValues(value, file, lineOf);
}

/** The key node of `key` in a mapping, so errors point at the key's line rather than its value's. */
function keyNode(parent: Node | undefined, key: PropertyKey | undefined): Node | undefined {
  if (parent === undefined || key === undefined) return undefined;
  if (isMap(parent)) {
    const pair = parent.items.find((p) => (p.key as { value?: unknown } | null)?.value === key);
    return (pair?.key as Node | undefined) ?? undefined;
  }
  if (isSeq(parent) && typeof key === "number") return parent.items[key] as Node | undefined;
  return undefined;
}
