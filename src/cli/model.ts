import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { writeTinyModel } from "../runners/tiny-model.ts";
import type { CliIO } from "./io.ts";

const USAGE = `usage: edgeward model tiny --out FILE.gguf [--seed N]

  tiny   write a tiny llama-architecture GGUF with random weights (about 1 MB),
         for demos and tests; its output is meaningless text
  --out  where to write the model
  --seed PRNG seed for the weights, an integer in [0, 2^32) (default 1)
`;

export async function run(argv: string[], io: CliIO): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { out: { type: "string" }, seed: { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (err) {
    io.stderr(`model: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] !== "tiny" || values.out === undefined) {
    io.stderr(USAGE);
    return 2;
  }
  let seed: number | undefined;
  if (values.seed !== undefined) {
    seed = /^\d+$/.test(values.seed) ? Number(values.seed) : NaN;
    if (!Number.isSafeInteger(seed) || seed > 0xffffffff) {
      io.stderr(`model: --seed must be an integer in [0, 2^32)\n${USAGE}`);
      return 2;
    }
  }
  const out = resolve(io.cwd, values.out);
  try {
    await mkdir(dirname(out), { recursive: true }); // `--out models/tiny.gguf` in a fresh folder
    await writeTinyModel(out, seed);
  } catch (err) {
    io.stderr(`model: cannot write ${values.out}: ${(err as Error).message}\n`);
    return 1;
  }
  io.stdout(`wrote ${out}\n`);
  return 0;
}
