import { asArray, asObject, asPortNumber, asString, asStrings } from "./fields.ts";
import type { ContainerRef, PodTemplate } from "./object-index.ts";
import { containersOf } from "./object-index.ts";

/** An image reference split the way registries read it. */
export interface ImageRef {
  /** Registry host and path, without tag or digest: "docker.io/vllm/vllm-openai" is "vllm/vllm-openai". */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

export function parseImage(ref: string): ImageRef {
  let rest = ref.trim();
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  // A colon before the last "/" is a registry port (localhost:5000/app), not a tag.
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  return { repository: rest, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** The last path segment of the repository: "vllm-openai" for "docker.io/vllm/vllm-openai". */
function imageName(repository: string): string {
  return repository.slice(repository.lastIndexOf("/") + 1).toLowerCase();
}

export type RunnerKind = "vllm" | "llama.cpp" | "ollama" | "edgeward";

export interface RunnerProfile {
  readonly title: string;
  readonly defaultPort: number;
  /** The health endpoint a probe should use. */
  readonly health: string;
  /** Every GET path the runner answers 200 on without a request body. */
  readonly served: readonly string[];
}

export const RUNNERS: Readonly<Record<RunnerKind, RunnerProfile>> = {
  // vllm/entrypoints/openai/api_server.py
  vllm: { title: "vLLM", defaultPort: 8000, health: "/health", served: ["/health", "/ping", "/version", "/v1/models", "/metrics"] },
  // tools/server/server.cpp (llama-server); /metrics only with --metrics
  "llama.cpp": { title: "llama.cpp server", defaultPort: 8080, health: "/health", served: ["/health", "/v1/health", "/models", "/v1/models", "/props", "/slots"] },
  // server/routes.go: "/" answers "Ollama is running"
  ollama: { title: "Ollama", defaultPort: 11434, health: "/", served: ["/", "/api/version", "/api/tags", "/api/ps", "/v1/models"] },
  // src/runners/embedded-server.ts
  edgeward: { title: "Edgeward runner", defaultPort: 0, health: "/health", served: ["/health", "/v1/models"] },
};

export interface Runner {
  readonly kind: RunnerKind;
  readonly profile: RunnerProfile;
  readonly container: ContainerRef;
  /** The TCP port it listens on; undefined when it listens on a Unix socket only. */
  readonly port: number | undefined;
  /** Bound to loopback only, so reachable from its own pod alone. */
  readonly loopback: boolean;
  /** GET paths it serves, given its flags. */
  readonly served: readonly string[];
}

const SHELL = /(^|\/)(sh|bash|dash|ash)$/;

/**
 * The container's command line: command, then args; a shell's `-c` script is split into its words too
 * (`sh -c "exec vllm serve /models/m --port 9000"`), so that its program and flags are read like any others.
 */
function argv(c: ContainerRef): string[] {
  const words = [...asStrings(c.container["command"]), ...asStrings(c.container["args"])];
  const script = SHELL.test(words[0] ?? "") ? words.indexOf("-c") + 1 : 0;
  if (script === 0 || script >= words.length) return words;
  return [...words.slice(0, script), ...shellWords(words[script]!), ...words.slice(script + 1)];
}

/** A script's words, split at blanks, with quotes removed; enough to read a command and its flags. */
function shellWords(script: string): string[] {
  const words: string[] = [];
  for (const m of script.matchAll(/"([^"]*)"|'([^']*)'|([^\s;&|]+)/g)) words.push(m[1] ?? m[2] ?? m[3]!);
  return words;
}

/** vLLM reads its settings from VLLM_* variables (VLLM_API_KEY, VLLM_LOGGING_LEVEL…): a container setting one runs it. */
function setsVllmEnv(c: ContainerRef): boolean {
  return asArray(c.container["env"]).some((e) => asString(asObject(e)?.["name"])?.startsWith("VLLM_") === true);
}

function env(c: ContainerRef, name: string): string | undefined {
  for (const e of asArray(c.container["env"])) {
    const o = asObject(e);
    if (o?.["name"] === name) return asString(o["value"]);
  }
  return undefined;
}

/** The value of `--flag V` or `--flag=V`. */
function flag(args: readonly string[], ...names: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    for (const n of names) {
      if (a === n) return args[i + 1];
      if (a.startsWith(`${n}=`)) return a.slice(n.length + 1);
    }
  }
  return undefined;
}

const isLoopback = (host: string | undefined) => host === "127.0.0.1" || host === "localhost" || host === "::1";

/** The edgeward subcommand a container runs ("serve", "runner", …), if it runs edgeward. */
export function edgewardCommand(c: ContainerRef): string | undefined {
  const image = imageName(parseImage(asString(c.container["image"]) ?? "").repository);
  const args = argv(c);
  const binIndex = args.findIndex((a) => /(^|\/)edgeward(\.js)?$/.test(a));
  if (!image.includes("edgeward") && binIndex === -1) return undefined;
  const words = args.slice(binIndex + 1).filter((a) => !a.startsWith("-") && !/(^|\/)(node|edgeward(\.js)?)$/.test(a));
  return words[0];
}

function identify(c: ContainerRef): RunnerKind | undefined {
  const edgeward = edgewardCommand(c);
  if (edgeward !== undefined) return edgeward === "runner" ? "edgeward" : undefined;
  const args = argv(c);
  const joined = args.join(" ");
  const image = parseImage(asString(c.container["image"]) ?? "");
  const name = imageName(image.repository);
  if (/(^|[\s/])llama-server(\s|$)/.test(joined) || name === "llama.cpp") return "llama.cpp";
  if (/(^|[\s/])vllm(\s|$|\.entrypoints)/.test(joined) || name.includes("vllm")) return "vllm";
  if (/(^|[\s/])ollama\s+serve\b/.test(joined) || name === "ollama") return "ollama";
  if (setsVllmEnv(c)) return "vllm";
  return undefined;
}

export function runnerOf(c: ContainerRef): Runner | undefined {
  const kind = identify(c);
  if (kind === undefined) return undefined;
  const args = argv(c);
  const profile = RUNNERS[kind];
  let port: number | undefined;
  let loopback = false;
  let served = profile.served;
  switch (kind) {
    case "vllm":
      port = flag(args, "--uds") !== undefined ? undefined : (asPortNumber(flag(args, "--port")) ?? profile.defaultPort);
      loopback = isLoopback(flag(args, "--host"));
      break;
    case "llama.cpp":
      // The llama.cpp server images set LLAMA_ARG_HOST=0.0.0.0; the binary alone defaults to 127.0.0.1.
      port = asPortNumber(flag(args, "--port") ?? env(c, "LLAMA_ARG_PORT")) ?? profile.defaultPort;
      loopback = isLoopback(flag(args, "--host") ?? env(c, "LLAMA_ARG_HOST"));
      if (args.includes("--metrics") || env(c, "LLAMA_ARG_ENDPOINT_METRICS") === "1") served = [...served, "/metrics"];
      break;
    case "ollama": {
      const host = env(c, "OLLAMA_HOST") ?? "0.0.0.0:11434";
      const m = /^(?:https?:\/\/)?(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(host);
      port = asPortNumber(m?.[2]) ?? profile.defaultPort;
      loopback = isLoopback(m?.[1]?.replace(/^\[|\]$/g, ""));
      break;
    }
    case "edgeward":
      port = flag(args, "--socket") !== undefined ? undefined : asPortNumber(flag(args, "--port"));
      loopback = isLoopback(flag(args, "--host") ?? "127.0.0.1");
      break;
  }
  return { kind, profile, container: c, port, loopback, served };
}

export function runnersOf(pod: PodTemplate): Runner[] {
  return containersOf(pod)
    .filter((c) => c.group === "containers")
    .map(runnerOf)
    .filter((r): r is Runner => r !== undefined);
}

/**
 * The pods the runner should be reachable from: an Edgeward gateway (`edgeward serve`),
 * or a pod labelled as the gateway component.
 */
export function isGatewayPod(pod: PodTemplate): boolean {
  if (pod.labels["app.kubernetes.io/component"] === "gateway" || pod.labels["edgeward.dev/role"] === "gateway") return true;
  return containersOf(pod).some((c) => c.group === "containers" && edgewardCommand(c) === "serve");
}

/** Resolves a container port given as a number or a port name. */
export function resolvePort(c: ContainerRef, port: unknown): number | undefined {
  const n = asPortNumber(port);
  if (n !== undefined) return n;
  if (typeof port !== "string") return undefined;
  for (const p of asArray(c.container["ports"])) {
    const o = asObject(p);
    if (o?.["name"] === port) return asPortNumber(o["containerPort"]);
  }
  return undefined;
}

/** The names a container gives a port number, for matching named ports in policies. */
export function portNames(c: ContainerRef, port: number): string[] {
  return asArray(c.container["ports"])
    .map(asObject)
    .filter((o) => o !== undefined && asPortNumber(o["containerPort"]) === port && typeof o["name"] === "string")
    .map((o) => o?.["name"] as string);
}
