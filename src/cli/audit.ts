import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { CliIO } from "./io.ts";
import pkg from "../../package.json" with { type: "json" };
import { audit, checksFor, failingFindings, isProfileName, parseExceptions, PROFILES, SEVERITIES } from "../k8s/audit/index.ts";
import type { Exception, ProfileName, Severity } from "../k8s/audit/index.ts";
import { formatJson } from "../k8s/audit/output/json.ts";
import { formatJunit } from "../k8s/audit/output/junit.ts";
import { formatSarif } from "../k8s/audit/output/sarif.ts";
import { formatText } from "../k8s/audit/output/text.ts";
import { holdsManifests, parseManifests } from "../k8s/yaml.ts";
import type { KubeObject } from "../k8s/objects.ts";

const USAGE = `usage:
  edgeward audit FILE|DIR|-... [-o text|json|sarif|junit] [--fail-on low|medium|high|critical]
                 [--profile NAME]... [--exceptions FILE] [--mesh-root-namespace NS]
  edgeward audit --list-checks [--profile NAME]...

  FILE|DIR|-           manifests: a file, a directory (every *.yaml/*.yml below it, in
                       sorted order), or - for standard input (e.g. helm template … | edgeward audit -)
  -o, --output FORMAT  text (default), json, sarif (2.1.0) or junit
  --fail-on SEVERITY   exit 1 when a finding at or above it is not suppressed (default high)
  --profile NAME       ${PROFILES.join(", ")} (default: all); repeatable
  --exceptions FILE    accepted risks: entries with id, object, reason and expires
  --mesh-root-namespace NS
                       Istio root namespace, where policies apply mesh-wide (default istio-system)

exit status: 0 nothing at or above --fail-on, 1 findings at or above it, 2 usage or input error
`;

const FORMATS = { text: formatText, json: formatJson, sarif: formatSarif, junit: formatJunit } as const;
type Format = keyof typeof FORMATS;

class UsageError extends Error {}

/** Input that cannot be read or parsed: exit 2, like a usage error, but without the usage text. */
class InputError extends Error {}

export async function run(argv: string[], io: CliIO): Promise<number> {
  try {
    return await auditCommand(argv, io);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`audit: ${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    // Unreadable or unparsable input (ManifestError, ExceptionsError, InputError) names file:line itself.
    io.stderr(`audit: ${(err as Error).message}\n`);
    return 2;
  }
}

async function auditCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      output: { type: "string", short: "o", default: "text" },
      "fail-on": { type: "string", default: "high" },
      profile: { type: "string", multiple: true },
      exceptions: { type: "string" },
      "mesh-root-namespace": { type: "string" },
      "list-checks": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  const profiles: ProfileName[] = [];
  for (const p of values.profile ?? []) {
    if (!isProfileName(p)) throw new UsageError(`unknown profile "${p}" (one of ${PROFILES.join(", ")})`);
    profiles.push(p);
  }
  if (values["list-checks"]) {
    io.stdout(listChecks(profiles));
    return 0;
  }
  const format = values.output;
  if (!Object.hasOwn(FORMATS, format)) throw new UsageError(`--output must be one of ${Object.keys(FORMATS).join(", ")}`);
  const failOn = values["fail-on"];
  if (!(SEVERITIES as readonly string[]).includes(failOn)) throw new UsageError(`--fail-on must be one of ${SEVERITIES.join(", ")}`);
  if (positionals.length === 0) throw new UsageError("a FILE, DIR or - is required");

  const exceptions = values.exceptions === undefined ? [] : await readExceptions(values.exceptions, io);
  const objects: KubeObject[] = [];
  for (const input of positionals) objects.push(...(await readInput(input, io)));
  const report = audit(objects, {
    profiles,
    exceptions,
    ...(values["mesh-root-namespace"] !== undefined ? { meshRootNamespace: values["mesh-root-namespace"] } : {}),
  });
  io.stdout(FORMATS[format as Format](report, { failOn: failOn as Severity, toolVersion: pkg.version }));
  return failingFindings(report, failOn as Severity).length > 0 ? 1 : 0;
}

function listChecks(profiles: readonly ProfileName[]): string {
  const checks = checksFor(profiles);
  const w = Math.max(...checks.map((c) => c.id.length));
  return checks.map((c) => `${c.id.padEnd(w)}  ${c.severity.padEnd(8)}  ${c.profiles.join(",").padEnd(14)}  ${c.title}\n`).join("");
}

async function readExceptions(file: string, io: CliIO): Promise<Exception[]> {
  let text: string;
  try {
    text = await readFile(resolve(io.cwd, file), "utf8");
  } catch (err) {
    throw new InputError(`${file}: cannot read exceptions file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseExceptions(text, file, new Date());
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Manifest files below a directory: *.yaml and *.yml, sorted by name at each level, hidden entries skipped. */
async function manifestFiles(dir: string): Promise<string[]> {
  const entries = (await readdir(dir, { withFileTypes: true })).filter((e) => !e.name.startsWith("."));
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await manifestFiles(path)));
    else if (e.isFile() && /\.ya?ml$/i.test(e.name)) out.push(path);
  }
  return out;
}

async function readInput(input: string, io: CliIO): Promise<KubeObject[]> {
  if (input === "-") return parseManifests(await readStdin(), "-");
  const path = resolve(io.cwd, input);
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (err) {
    throw new InputError(`${input}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const files = isDir ? await manifestFiles(path) : [path];
  if (isDir && files.length === 0) throw new InputError(`${input}: no *.yaml or *.yml files`);
  const objects: KubeObject[] = [];
  for (const file of files) {
    const name = isDir ? join(input, relative(path, file)) : input;
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      throw new InputError(`${name}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (isDir && !holdsManifests(text)) {
      // Beside the manifests: a chart's values, a config file. Skipped, and said so.
      io.stderr(`audit: skipped ${name}: not a Kubernetes manifest (no document has apiVersion and kind)\n`);
      continue;
    }
    objects.push(...parseManifests(text, name));
  }
  return objects;
}
