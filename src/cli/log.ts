import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { DecisionLogError, verifyLogFile } from "../decision-log/index.ts";
import type { CliIO } from "./io.ts";

const USAGE = `usage: edgeward log verify PATH

  verify PATH   check the hash chain of a decision log (from PATH.anchor when the log
                was pruned); exits 0 when intact, 1 naming the first bad record,
                2 on a usage error
`;

/** `edgeward log <subcommand>`; argv excludes "log". */
export async function run(argv: string[], io: CliIO): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
  } catch (err) {
    io.stderr(`log: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (parsed.values.help) {
    io.stdout(USAGE);
    return 0;
  }
  const [command, ...rest] = parsed.positionals;
  if (command !== "verify") {
    io.stderr(`${command === undefined ? "log: missing subcommand" : `log: unknown subcommand "${command}"`}\n${USAGE}`);
    return 2;
  }
  if (rest.length !== 1 || rest[0] === "") {
    io.stderr(`log verify: expected exactly one PATH\n${USAGE}`);
    return 2;
  }
  const path = rest[0] as string;
  const absolute = resolve(io.cwd, path);
  try {
    const result = await verifyLogFile(absolute);
    if (result.ok) {
      const pruned = result.anchor === undefined ? "" : ` (pruned through seq ${result.anchor.seq}, verified from its anchor)`;
      io.stdout(`ok: ${result.records} records${pruned}, last seq ${result.lastSeq}, head ${result.lastHash}\n`);
      return 0;
    }
    io.stderr(`log verify: record seq ${result.seq} (line ${result.line}): ${result.message}\n`);
    return 1;
  } catch (err) {
    if (!(err instanceof DecisionLogError)) throw err;
    // Name the path as the user gave it, not its absolute form.
    io.stderr(`log verify: ${err.message.replace(/^decision log: /, "").replaceAll(absolute, path)}\n`);
    return 1;
  }
}
