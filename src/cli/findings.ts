import type { CliIO } from "./io.ts";
import {
  CONNECTION_USAGE, formatTable, OperatorError, OperatorUsageError, outputFormat, parseOperatorArgs, runListCommand, withClient,
} from "./operator-client.ts";

const USAGE = `usage: edgeward findings list [--node ID] [--severity S] [--kind K] [--limit N] [--output table|json]
                              --server URL (--token-file F | --cert F --key F) [--ca F]

  Lists what the control plane's retroactive analysis found in the uploaded decision logs, newest first.
  --severity is low, medium, high or critical.

${CONNECTION_USAGE}
Exit status: 0 listed, 1 the control plane refused or could not be reached, 2 usage error.
`;

const SEVERITIES = new Set(["low", "medium", "high", "critical"]);

interface Finding {
  id: number;
  node: string;
  kind: string;
  severity: string;
  seqFrom: number | null;
  seqTo: number | null;
  explanation: string;
  createdAt: string;
}

function seqRange(f: Finding): string {
  if (f.seqFrom === null) return "-";
  return f.seqTo === null || f.seqTo === f.seqFrom ? String(f.seqFrom) : `${f.seqFrom}..${f.seqTo}`;
}

async function list(argv: string[], io: CliIO): Promise<number> {
  const { values } = parseOperatorArgs(argv, {
    node: { type: "string" }, severity: { type: "string" }, kind: { type: "string" }, limit: { type: "string" }, output: { type: "string" },
  }, 0);
  const output = outputFormat(values.output);
  if (values.severity !== undefined && !SEVERITIES.has(values.severity)) throw new OperatorUsageError("--severity must be low, medium, high or critical");
  if (values.limit !== undefined && !/^[1-9][0-9]{0,5}$/.test(values.limit)) throw new OperatorUsageError("--limit must be a positive whole number");
  const query = { node: values.node, severity: values.severity, kind: values.kind, limit: values.limit };
  const findings = await withClient(values, io, (client) => client.call("GET", "/v1/findings", { query }));
  if (!Array.isArray(findings)) throw new OperatorError("bad_answer", "the control plane's answer is not a list of findings");
  if (output === "json") {
    io.stdout(`${JSON.stringify(findings, null, 2)}\n`);
    return 0;
  }
  if (findings.length === 0) {
    io.stdout("no findings\n");
    return 0;
  }
  const rows = (findings as Finding[]).map((f) => [String(f.id), f.severity, f.kind, f.node, seqRange(f), f.createdAt, f.explanation]);
  io.stdout(formatTable(["ID", "SEVERITY", "KIND", "NODE", "SEQ", "CREATED", "EXPLANATION"], rows));
  return 0;
}

/** `edgeward findings list …`. */
export function run(argv: string[], io: CliIO): Promise<number> {
  return runListCommand("findings", USAGE, argv, io, list);
}
