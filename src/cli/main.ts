import type { CliIO } from "./io.ts";

type Command = { summary: string; load: () => Promise<{ run(argv: string[], io: CliIO): Promise<number> }> };

// Loaded on demand: `edgeward policy check` should not pay for llama.cpp, nor `runner` for the gateway.
const COMMANDS: Record<string, Command> = {
  serve: { summary: "run the gateway: serve --config FILE", load: () => import("./serve.ts") },
  demo: { summary: "start a local demo (dev CA, tiny model, runner, gateway) and print curl calls", load: () => import("./demo.ts") },
  runner: { summary: "serve a GGUF model over OpenAI-compatible HTTP: runner --model FILE (--socket PATH | --port N)", load: () => import("./runner.ts") },
  model: { summary: "model tiny --out FILE.gguf [--seed N]: write a tiny test model", load: () => import("./model.ts") },
  ca: { summary: "dev CA: ca init --dir DIR --trust-domain TD | ca issue --dir DIR --spiffe-id ID --out PREFIX", load: () => import("./ca.ts") },
  policy: { summary: "policy check FILE… | policy explain FILE --principal ID --method M --path P | policy test FILE --cases FILE", load: () => import("./policy.ts") },
  bundle: { summary: "bundle keygen|build|verify|inspect|push: signed policy bundles", load: () => import("./bundle.ts") },
  release: { summary: "release sign|verify IMAGE.oci.tar: sign the container image, its SBOM and provenance; verify them offline", load: () => import("./release.ts") },
  log: { summary: "log verify PATH: check the decision log's hash chain", load: () => import("./log.ts") },
  render: { summary: "render --config VALUES [--policy FILE] [-o DIR|-]: Kubernetes manifests for the gateway and its runner", load: () => import("./render.ts") },
  audit: { summary: "audit FILE|DIR|- [-o text|json|sarif|junit] [--fail-on SEVERITY]: find zero-trust gaps in Kubernetes manifests", load: () => import("./audit.ts") },
  authz: { summary: "Envoy ext_authz service (gRPC/HTTP) for Istio CUSTOM policies: authz --config FILE", load: () => import("./authz.ts") },
  revoke: { summary: "revoke (--spiffe-id ID | --serial S) --reason R --server URL …: revoke a caller fleet-wide", load: () => import("./revoke.ts") },
  findings: { summary: "findings list [--node ID] [--severity S] [--kind K] --server URL …: retroactive-analysis findings", load: () => import("./findings.ts") },
  nodes: { summary: "nodes list --server URL …: the fleet's nodes, last contact, bundle, log position", load: () => import("./nodes.ts") },
  controlplane: { summary: "run the control plane: controlplane --config FILE", load: () => import("./controlplane.ts") },
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    "usage: edgeward <command> [options]",
    "",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `edgeward <command> --help` for a command's options.",
    "",
  ].join("\n");
}

const defaultIO: CliIO = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  cwd: process.cwd(),
};

export async function main(argv: string[], io: CliIO = defaultIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    (name === undefined ? io.stderr : io.stdout)(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "version") {
    const { versionLine } = await import("./version.ts");
    io.stdout(`${await versionLine()}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    io.stderr(`edgeward: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return 2;
  }
  return (await command.load()).run(rest, io);
}

