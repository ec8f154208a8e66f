import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { CliIO } from "./io.ts";
import { apiGroup } from "../k8s/objects.ts";
import type { KubeObject } from "../k8s/objects.ts";
import { AdmissionError, CallersError, parseValues, render, ValuesError } from "../k8s/render/index.ts";
import { stringifyManifests } from "../k8s/yaml.ts";
import { PolicyError, readPolicyFile } from "../policy/index.ts";

const USAGE = `usage:
  edgeward render --config VALUES.yaml [--policy POLICY.yaml] [-o DIR|-]

  --config FILE   the values file (examples/deploy.yaml documents every key)
  --policy FILE   the gateway's policy file (default: the values file's "policy", relative to it)
  -o, --output    "-" (default): one YAML stream on stdout; DIR: one file per kind, DIR/<kind>.yaml
                  (configuration to merge elsewhere, such as the mesh's IstioOperator, in DIR/local-config/)
`;

class UsageError extends Error {}

const MAX_VALUES_BYTES = 1024 * 1024;

export async function run(argv: string[], io: CliIO): Promise<number> {
  try {
    const { values: opts, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: "string" },
        policy: { type: "string" },
        output: { type: "string", short: "o", default: "-" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (opts.help) {
      io.stdout(USAGE);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    if (opts.config === undefined) throw new UsageError("--config is required");

    const valuesPath = resolve(io.cwd, opts.config);
    const valuesText = await readText(valuesPath, opts.config);
    const values = parseValues(valuesText, opts.config);
    let policyShown: string;
    let policyPath: string;
    if (opts.policy !== undefined) {
      policyShown = opts.policy;
      policyPath = resolve(io.cwd, opts.policy);
    } else if (values.policy !== undefined) {
      policyShown = isAbsolute(values.policy) ? values.policy : join(dirname(opts.config), values.policy);
      policyPath = resolve(dirname(valuesPath), values.policy);
    } else {
      throw new UsageError("no policy file: pass --policy or set policy in the values file");
    }
    const objects = render(values, { text: await readPolicyFile(policyPath, policyShown), file: policyShown });

    if (opts.output === "-") {
      io.stdout(stringifyManifests(objects));
      return 0;
    }
    const dir = resolve(io.cwd, opts.output);
    await mkdir(dir, { recursive: true });
    const files = splitByKind(objects);
    for (const [file, objs] of files) {
      await mkdir(dirname(join(dir, file)), { recursive: true });
      await writeFile(join(dir, file), stringifyManifests(objs));
    }
    io.stderr(`wrote ${objects.length} objects to ${files.size} files in ${opts.output}\n`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`render: ${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    if (err instanceof ValuesError || err instanceof PolicyError || err instanceof CallersError || err instanceof AdmissionError) {
      io.stderr(`render: ${err.message}\n`);
      return 1;
    }
    io.stderr(`render: ${(err as Error).message}\n`);
    return 1;
  }
}

async function readText(path: string, shown: string): Promise<string> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    throw new ValuesError(shown, null, null, `cannot read the values file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (data.length > MAX_VALUES_BYTES) throw new ValuesError(shown, null, null, "the values file is larger than 1 MiB");
  return data.toString("utf8");
}

/**
 * One file per kind, named for the kind in lowercase (deployment.yaml). A kind two API
 * groups share in one rendering gets the group in its name (networkpolicy.projectcalico.org.yaml).
 */
export function splitByKind(objects: readonly KubeObject[]): Map<string, KubeObject[]> {
  const groupsOfKind = new Map<string, Set<string>>();
  for (const o of objects) {
    const groups = groupsOfKind.get(o.kind) ?? new Set<string>();
    groups.add(apiGroup(o));
    groupsOfKind.set(o.kind, groups);
  }
  const files = new Map<string, KubeObject[]>();
  for (const o of objects) {
    const group = apiGroup(o);
    const kind = o.kind.toLowerCase();
    const base = groupsOfKind.get(o.kind)!.size > 1 && group !== "" ? `${kind}.${group}.yaml` : `${kind}.yaml`;
    // Objects meant to be merged into other configuration (the mesh's IstioOperator) go one level down, where
    // `kubectl apply -f DIR` (not recursive) does not pick them up.
    const name = o.metadata.annotations?.["config.kubernetes.io/local-config"] === "true" ? `local-config/${base}` : base;
    const list = files.get(name) ?? [];
    list.push(o);
    files.set(name, list);
  }
  return new Map([...files.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
