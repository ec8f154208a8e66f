import type { CliIO } from "./io.ts";
import { CONNECTION_USAGE, OperatorError, OperatorUsageError, parseOperatorArgs, runOperatorCommand, withClient } from "./operator-client.ts";

const USAGE = `usage: edgeward revoke (--spiffe-id ID | --serial HEX) --reason TEXT --server URL (--token-file F | --cert F --key F) [--ca F]

  Records a revocation on the control plane. When the control plane has a release key, it publishes a new
  bundle revision carrying the revocation for every group, and the gateways refuse the caller once they fetch it.

${CONNECTION_USAGE}
Exit status: 0 revoked, 1 the control plane refused or could not be reached, 2 usage error.
`;

interface RevokeAnswer {
  revocation: { kind: string; value: string; reason: string; revokedAt: string };
  bundles: { group: string; revision: number }[];
}

function isRevokeAnswer(v: unknown): v is RevokeAnswer {
  const a = v as RevokeAnswer | null;
  return typeof a?.revocation?.value === "string" && Array.isArray(a.bundles);
}

/** `edgeward revoke (--spiffe-id ID | --serial S) --reason R …`. */
export function run(argv: string[], io: CliIO): Promise<number> {
  if (argv[0] === "--help" || argv[0] === "-h") {
    io.stdout(USAGE);
    return Promise.resolve(0);
  }
  return runOperatorCommand("revoke", USAGE, io, async () => {
    const { values } = parseOperatorArgs(argv, { "spiffe-id": { type: "string" }, serial: { type: "string" }, reason: { type: "string" } }, 0);
    const spiffeId = values["spiffe-id"];
    const serial = values.serial;
    if ((spiffeId === undefined) === (serial === undefined)) throw new OperatorUsageError("give exactly one of --spiffe-id and --serial");
    if ((spiffeId ?? serial) === "") throw new OperatorUsageError(spiffeId === undefined ? "--serial is empty" : "--spiffe-id is empty");
    const reason = values.reason;
    if (reason === undefined || reason.trim() === "") throw new OperatorUsageError("missing --reason");
    const body = JSON.stringify(spiffeId === undefined ? { serial, reason } : { spiffeId, reason });
    const answer = await withClient(values, io, (client) => client.call("POST", "/v1/revocations", { body }));
    if (!isRevokeAnswer(answer)) throw new OperatorError("bad_answer", "the control plane's answer is not a revocation");
    const { kind, value, revokedAt } = answer.revocation;
    const lines = [`revoked ${kind} ${value} at ${revokedAt}`];
    if (answer.bundles.length === 0) lines.push("  no bundle revision was published (no release key, or no group has a bundle yet)");
    for (const b of answer.bundles) lines.push(`  group ${b.group}: bundle revision ${b.revision} carries it`);
    io.stdout(`${lines.join("\n")}\n`);
    return 0;
  });
}
