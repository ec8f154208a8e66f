import { dirname, resolve } from "node:path";
import { z } from "zod";
import { ConfigError, parseDurationMs, parseHostPort, readYamlConfig } from "../config/index.ts";

/** "host:port" with a numeric port (0 asks the OS for a free one). */
const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "expected host:port, e.g. 127.0.0.1:9443")
  .refine((v) => Number(v.slice(v.lastIndexOf(":") + 1)) <= 65535, "port must be at most 65535");
const duration = z.string().regex(/^\d+(ms|s|m|h)$/, "expected a duration such as 30s, 5m or 24h");
const path = z.string().min(1);
const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Istio-style principal patterns over full SPIFFE IDs: exact, "prefix*", "*suffix" or "*". The `spiffe://` form is
 * required so that a pattern written in Istio's short form fails at start instead of silently matching nothing.
 */
const principalPattern = z.string().min(1).refine(
  (p) => {
    const core = p.replace(/^\*/, "").replace(/\*$/, "");
    return !core.includes("*") && (p.startsWith("*") || p.startsWith("spiffe://"));
  },
  "expected a spiffe:// ID, optionally with one leading or trailing * (e.g. spiffe://example.org/edge/node/*), or *",
);

const schema = z.strictObject({
  listen: hostPort,
  /** The server certificate; it needs a DNS or IP SAN for the name the nodes dial. */
  tls: z.strictObject({ cert: path, key: path }),
  trustBundles: z.record(z.string().min(1), path).refine((m) => Object.keys(m).length > 0, "at least one trust domain is required"),
  storage: z.strictObject({
    sqlite: path.optional(),
    postgres: z.strictObject({
      url: z.string().regex(/^postgres(ql)?:\/\//, "expected a postgres:// or postgresql:// URL").optional(),
      urlFile: path.optional(),
    }).optional(),
  }),
  operators: z.strictObject({
    principals: z.array(principalPattern).default([]),
    tokenFile: path.optional(),
  }),
  groups: z.array(z.strictObject({
    name: z.string().regex(GROUP_NAME, "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
    principals: z.array(principalPattern).min(1),
  })).min(1),
  bundles: z.strictObject({
    keys: z.array(path).min(1),
    releaseKey: path.optional(),
    revocationValidFor: duration.optional(),
  }),
  analysis: z.strictObject({ clockSkew: duration.default("5m") }).default({ clockSkew: "5m" }),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "silent"]).default("info"),
});

export type ControlPlaneConfigInput = z.input<typeof schema>;

export type StorageConfig =
  | { kind: "sqlite"; path: string }
  | { kind: "postgres"; url: string; urlFile: null }
  | { kind: "postgres"; url: null; urlFile: string };

/** The validated control-plane configuration: paths absolute, durations in milliseconds or seconds as named. */
export interface ControlPlaneConfig {
  file: string;
  listen: { host: string; port: number };
  tls: { cert: string; key: string };
  trustBundles: Record<string, string>;
  storage: StorageConfig;
  operators: { principals: string[]; tokenFile: string | null };
  /** In config order: the first group whose principals match a node is its group. */
  groups: { name: string; principals: string[] }[];
  bundles: { keys: string[]; releaseKey: string | null; revocationValidForSeconds: number | null };
  analysis: { clockSkewMs: number };
  logLevel: z.output<typeof schema>["logLevel"];
}


function keyPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`)).join("") || "(root)";
}

/** Validates a parsed YAML value; relative paths resolve against the config file's directory. Pure. */
export function parseControlPlaneConfig(value: unknown, file: string): ControlPlaneConfig {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const message = issue.code === "unrecognized_keys" ? `unknown key(s) ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}` : issue.message;
    throw new ConfigError(keyPath(issue.path), message);
  }
  const c = result.data;
  const abs = (p: string) => resolve(dirname(file), p);

  let storage: StorageConfig;
  if ((c.storage.sqlite === undefined) === (c.storage.postgres === undefined)) {
    throw new ConfigError("storage", "set exactly one of sqlite (a file) and postgres");
  }
  if (c.storage.sqlite !== undefined) {
    storage = { kind: "sqlite", path: abs(c.storage.sqlite) };
  } else {
    const pg = c.storage.postgres!;
    if ((pg.url === undefined) === (pg.urlFile === undefined)) {
      throw new ConfigError("storage.postgres", "set exactly one of url and urlFile (a 0600 file holding the URL, so a password stays out of the config)");
    }
    storage = pg.url !== undefined ? { kind: "postgres", url: pg.url, urlFile: null } : { kind: "postgres", url: null, urlFile: abs(pg.urlFile!) };
  }

  if (c.operators.principals.length === 0 && c.operators.tokenFile === undefined) {
    throw new ConfigError("operators", "name at least one operator: principals (SPIFFE IDs) or tokenFile");
  }
  const names = new Set<string>();
  c.groups.forEach((g, i) => {
    if (names.has(g.name)) throw new ConfigError(`groups[${i}].name`, `duplicate group name ${JSON.stringify(g.name)}`);
    names.add(g.name);
  });

  const validFor = c.bundles.revocationValidFor === undefined ? null : parseDurationMs(c.bundles.revocationValidFor);
  if (validFor !== null && validFor < 1000) throw new ConfigError("bundles.revocationValidFor", "must be at least 1s");

  return {
    file,
    listen: parseHostPort(c.listen),
    tls: { cert: abs(c.tls.cert), key: abs(c.tls.key) },
    trustBundles: Object.fromEntries(Object.entries(c.trustBundles).map(([td, p]) => [td, abs(p)])),
    storage,
    operators: { principals: c.operators.principals, tokenFile: c.operators.tokenFile === undefined ? null : abs(c.operators.tokenFile) },
    groups: c.groups.map((g) => ({ name: g.name, principals: g.principals })),
    bundles: {
      keys: c.bundles.keys.map(abs),
      releaseKey: c.bundles.releaseKey === undefined ? null : abs(c.bundles.releaseKey),
      revocationValidForSeconds: validFor === null ? null : Math.floor(validFor / 1000),
    },
    analysis: { clockSkewMs: parseDurationMs(c.analysis.clockSkew) },
    logLevel: c.logLevel,
  };
}

/** Reads and validates `edgeward controlplane --config FILE`. */
export async function loadControlPlaneConfig(path: string): Promise<ControlPlaneConfig> {
  const { value, file } = await readYamlConfig(path);
  return parseControlPlaneConfig(value, file);
}
