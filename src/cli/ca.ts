import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { initDevCa, issueSvid, parseDuration } from "../identity/index.ts";
import type { CliIO } from "./io.ts";

const USAGE = `usage:
  edgeward ca init  --dir DIR --trust-domain TD [--force]
  edgeward ca issue --dir DIR --spiffe-id ID --out PREFIX [--ttl 1h] [--dns NAME]... [--ip ADDR]...
`;

class UsageError extends Error {}

function parse<T extends Record<string, { type: "string" | "boolean"; multiple?: boolean }>>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === "") throw new UsageError(`missing ${flag}`);
  return value;
}

async function init(argv: string[], io: CliIO): Promise<number> {
  const values = parse(argv, {
    dir: { type: "string" },
    "trust-domain": { type: "string" },
    force: { type: "boolean" },
  });
  const written = await initDevCa({
    dir: resolve(io.cwd, required(values.dir, "--dir")),
    trustDomain: required(values["trust-domain"], "--trust-domain"),
    force: values.force === true,
  });
  io.stdout(`wrote ${written.certPath}\nwrote ${written.keyPath}\n`);
  return 0;
}

async function issue(argv: string[], io: CliIO): Promise<number> {
  const values = parse(argv, {
    dir: { type: "string" },
    "spiffe-id": { type: "string" },
    out: { type: "string" },
    ttl: { type: "string" },
    dns: { type: "string", multiple: true },
    ip: { type: "string", multiple: true },
  });
  let ttlSeconds: number | undefined;
  if (values.ttl !== undefined) {
    try {
      ttlSeconds = parseDuration(values.ttl);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  const written = await issueSvid({
    dir: resolve(io.cwd, required(values.dir, "--dir")),
    spiffeId: required(values["spiffe-id"], "--spiffe-id"),
    out: resolve(io.cwd, required(values.out, "--out")),
    ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
    dns: values.dns ?? [],
    ip: values.ip ?? [],
  });
  io.stdout(`wrote ${written.certPath}\nwrote ${written.keyPath}\n`);
  return 0;
}

/** `edgeward ca init|issue …`: a development CA that issues X.509-SVIDs. */
export async function run(argv: string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === "init") return await init(rest, io);
    if (command === "issue") return await issue(rest, io);
    if (command === "--help" || command === "-h" || command === "help") {
      io.stdout(USAGE);
      return 0;
    }
    throw new UsageError(command === undefined ? "missing command" : `unknown command "${command}"`);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`ca: ${error.message}\n${USAGE}`);
      return 2;
    }
    // Errors from the CA carry their module prefix; anything else is reduced to one line, no stack.
    const message = error instanceof Error ? error.message.split("\n")[0] : "unexpected failure";
    io.stderr(`ca: ${message}\n`);
    return 1;
  }
}
