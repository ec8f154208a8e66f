import type { CliIO } from "./io.ts";
import {
  CONNECTION_USAGE, formatTable, OperatorError, outputFormat, parseOperatorArgs, runListCommand, withClient,
} from "./operator-client.ts";

const USAGE = `usage: edgeward nodes list [--output table|json] --server URL (--token-file F | --cert F --key F) [--ca F]

  Lists the edge nodes the control plane has heard from: group, last contact, what the node claims about itself
  (the bundle revision it enforces, its stage, its decision log's last seq: its word, not verified), the last
  decision-log seq the control plane holds and acknowledged, and its findings (contradicted claims among them).

${CONNECTION_USAGE}
Exit status: 0 listed, 1 the control plane refused or could not be reached, 2 usage error.
`;

interface NodeView {
  id: string;
  group: string;
  lastContact: string;
  claimed?: { bundleRevision: number | null; stage: string | null; logSeq: number | null };
  ackSeq: number | null;
  findings: number;
}

const orDash = (v: string | number | null | undefined) => (v === null || v === undefined ? "-" : String(v));

async function list(argv: string[], io: CliIO): Promise<number> {
  const { values } = parseOperatorArgs(argv, { output: { type: "string" } }, 0);
  const output = outputFormat(values.output);
  const nodes = await withClient(values, io, (client) => client.call("GET", "/v1/nodes"));
  if (!Array.isArray(nodes)) throw new OperatorError("bad_answer", "the control plane's answer is not a list of nodes");
  if (output === "json") {
    io.stdout(`${JSON.stringify(nodes, null, 2)}\n`);
    return 0;
  }
  if (nodes.length === 0) {
    io.stdout("no nodes\n");
    return 0;
  }
  const rows = (nodes as NodeView[]).map((n) => [
    n.id, n.group, n.lastContact, orDash(n.claimed?.bundleRevision), orDash(n.claimed?.stage), orDash(n.claimed?.logSeq),
    orDash(n.ackSeq), orDash(n.findings),
  ]);
  io.stdout(formatTable(["NODE", "GROUP", "LAST CONTACT", "CLAIMED REVISION", "CLAIMED STAGE", "CLAIMED LOG SEQ", "ACKED", "FINDINGS"], rows));
  return 0;
}

/** `edgeward nodes list …`. */
export function run(argv: string[], io: CliIO): Promise<number> {
  return runListCommand("nodes", USAGE, argv, io, list);
}
