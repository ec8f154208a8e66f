import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { startEmbeddedRunner } from "../runners/embedded-server.ts";
import { GPU_CHOICES, type GpuChoice } from "../runners/embedded/prebuilt.ts";
import type { CliIO } from "./io.ts";

const USAGE = `usage: edgeward runner --model FILE.gguf (--socket PATH | --port N) [options]

  Serve one GGUF model over an OpenAI-compatible HTTP API (llama.cpp, CPU).
  --model FILE.gguf     the model to load
  --socket PATH         listen on a Unix socket created with mode 0600 (preferred)
  --port N              listen on TCP instead (0 picks a free port)
  --host HOST           TCP host (default 127.0.0.1)
  --name MODEL          model id clients use (default: file name without .gguf)
  --threads N           CPU threads (default: cores - 1, at most 8)
  --context-size N      context window in tokens (default: the model's, at most 4096)
  --gpu off|auto|cuda|vulkan|metal
                        llama.cpp build to use (default off: CPU); a GPU build is installed separately (docs/install.md)
  --exit-on-stdin-close exit when standard input closes: the process that started the runner holds the other end
                        of the pipe, so the runner never outlives it (the gateway starts its embedded runners so)
`;

function positiveInt(text: string | undefined, min: number, max: number): number | undefined | null {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) return null;
  const n = Number(text);
  return n >= min && n <= max ? n : null;
}

/** Waits for SIGINT or SIGTERM, then resolves. */
function untilSignal(): Promise<void> {
  return new Promise((done) => {
    const onSignal = (): void => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      done();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}

/** Resolves when standard input reaches its end or fails: the process at the other end of the pipe is gone. */
function stdinClosed(): Promise<void> {
  return new Promise((done) => {
    const stdin = process.stdin;
    stdin.on("data", () => undefined); // whatever is written is not for us; reading is what notices the end
    stdin.once("end", () => done());
    stdin.once("close", () => done());
    stdin.once("error", () => done());
  });
}

export async function run(argv: string[], io: CliIO): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        model: { type: "string" },
        socket: { type: "string" },
        port: { type: "string" },
        host: { type: "string" },
        name: { type: "string" },
        threads: { type: "string" },
        "context-size": { type: "string" },
        gpu: { type: "string" },
        "exit-on-stdin-close": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    io.stderr(`runner: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  const port = positiveInt(values.port, 0, 65535);
  const threads = positiveInt(values.threads, 1, 256);
  const contextSize = positiveInt(values["context-size"], 16, 1 << 20);
  const usage = (problem: string): number => {
    io.stderr(`runner: ${problem}\n${USAGE}`);
    return 2;
  };
  if (values.model === undefined) return usage("--model is required");
  if ((values.socket === undefined) === (values.port === undefined)) return usage("give exactly one of --socket and --port");
  if (values.host !== undefined && values.socket !== undefined) return usage("--host applies only with --port");
  if (port === null) return usage("--port must be an integer between 0 and 65535");
  if (threads === null) return usage("--threads must be a positive integer");
  if (contextSize === null) return usage("--context-size must be an integer of at least 16");
  if (values.name === "") return usage("--name must not be empty");
  const gpu = values.gpu as GpuChoice | undefined;
  if (gpu !== undefined && !GPU_CHOICES.includes(gpu)) return usage(`--gpu must be one of ${GPU_CHOICES.join(", ")}`);

  // The parent's end of the pipe closes when it exits, however it exits (SIGKILL included): the runner follows it,
  // rather than staying on as an orphan that holds its socket.
  let runner: Awaited<ReturnType<typeof startEmbeddedRunner>> | undefined;
  const parentGone = values["exit-on-stdin-close"] ? stdinClosed() : null;
  void parentGone?.then(() => {
    if (runner === undefined) process.exit(1); // still loading the model: nothing to clean up yet
  });
  try {
    runner = await startEmbeddedRunner({
      modelPath: resolve(io.cwd, values.model),
      ...(values.socket !== undefined ? { socketPath: resolve(io.cwd, values.socket) } : {}),
      ...(port !== undefined ? { port } : {}),
      ...(values.host !== undefined ? { host: values.host } : {}),
      ...(values.name !== undefined ? { modelName: values.name } : {}),
      ...(threads !== undefined ? { threads } : {}),
      ...(contextSize !== undefined ? { contextSize } : {}),
      ...(gpu !== undefined ? { gpu } : {}),
    });
  } catch (err) {
    const message = (err as Error).message;
    io.stderr(`${message.startsWith("runner: ") ? message : `runner: cannot start: ${message}`}\n`);
    if (parentGone !== null) process.stdin.destroy(); // an open pipe would keep the process alive
    return 1;
  }
  // Until the socket exists there is nothing to clean up, so the default signal handling is right.
  const signalled = untilSignal();
  io.stdout(`edgeward runner listening on ${runner.address}\n`);
  await (parentGone === null ? signalled : Promise.race([signalled, parentGone]));
  await runner.close();
  if (parentGone !== null) process.stdin.destroy(); // an open pipe would keep the process alive
  return 0;
}
