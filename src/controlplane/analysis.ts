import type { DecisionRecord } from "../decision-log/chain.ts";
import type { Finding, Severity, StoredBundle, StoredRevocation } from "./storage/index.ts";

/**
 * Retroactive analysis: each decision a node uploads is re-checked against what the centre knew at the decision's
 * time. Pure: the server passes the new records and the centre's knowledge, and stores the findings.
 */

export type NewFinding = Omit<Finding, "id">;

export interface AnalysisInput {
  node: string;
  /** The batch's new records, in seq order (contiguous). */
  records: readonly DecisionRecord[];
  revocations: readonly StoredRevocation[];
  /** The bundles published for the node's group (any order). */
  history: readonly Omit<StoredBundle, "archive">[];
  /** The latest record time of the node's previous uploads (null before its first). */
  previousLastTime: string | null;
  clockSkewMs: number;
  /** createdAt of the findings. */
  now: string;
}

const STAGE_SEVERITY: Record<string, Severity> = { grace: "low", restricted: "medium", locked: "medium" };
const STAGE_MEANING: Record<string, string> = {
  grace: "its bundle had expired and it was within the grace period",
  restricted: "its bundle was past the grace period, so only essential rules applied",
  locked: "its bundle was past the restricted period, so everything was denied",
};
/** How many distinct principals an explanation names before it says "and N more". */
const NAMED_PRINCIPALS = 5;

/** Istio and SPIFFE spellings of one identity compare equal ("example.org/ns/a/sa/b" and "spiffe://example.org/…"). */
function identity(principal: string): string {
  return principal.startsWith("spiffe://") ? principal.slice("spiffe://".length) : principal;
}

function ms(time: string): number {
  return Date.parse(time);
}

function range(from: number, to: number): string {
  return from === to ? `seq ${from}` : `seq ${from}-${to}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * Runs of consecutive records with the same non-null key: one finding per run, so a node that spent an hour
 * offline yields one finding for the hour, not one per request.
 */
function runs<K>(records: readonly DecisionRecord[], keyOf: (r: DecisionRecord) => K | null): { key: K; records: DecisionRecord[] }[] {
  const out: { key: K; records: DecisionRecord[] }[] = [];
  let current: { key: K; records: DecisionRecord[] } | null = null;
  for (const r of records) {
    const key = keyOf(r);
    if (key === null) {
      current = null;
    } else if (current !== null && current.key === key) {
      current.records.push(r);
    } else {
      current = { key, records: [r] };
      out.push(current);
    }
  }
  return out;
}

function revokedCallerAllowed(input: AnalysisInput): NewFinding[] {
  const revokedAt = new Map<string, StoredRevocation>();
  for (const r of input.revocations) {
    if (r.kind !== "spiffe-id") continue;
    const id = identity(r.value);
    const earlier = revokedAt.get(id);
    if (earlier === undefined || ms(r.revokedAt) < ms(earlier.revokedAt)) revokedAt.set(id, r);
  }
  if (revokedAt.size === 0) return [];
  const revocationOf = (r: DecisionRecord): StoredRevocation | null => {
    if (r.decision !== "ALLOW" || r.principal === null) return null;
    const revocation = revokedAt.get(identity(r.principal));
    return revocation !== undefined && ms(revocation.revokedAt) <= ms(r.time) ? revocation : null;
  };
  return runs(input.records, (r) => (revocationOf(r) === null ? null : "revoked")).map(({ records }) => {
    const named = new Map<string, StoredRevocation>();
    for (const r of records) named.set(r.principal!, revocationOf(r)!);
    const listed = [...named].slice(0, NAMED_PRINCIPALS).map(([p, rev]) => `${p} (revoked ${rev.revokedAt}: ${rev.reason})`);
    const more = named.size > NAMED_PRINCIPALS ? ` and ${named.size - NAMED_PRINCIPALS} more` : "";
    return finding(input, "revoked-caller-allowed", "high", records,
      `${plural(records.length, "ALLOW decision")} (${range(records[0]!.seq, records.at(-1)!.seq)}, ${records[0]!.time} to ${records.at(-1)!.time}) ` +
      `for callers revoked before them: ${listed.join(", ")}${more}. The node had not received the revocation (offline or behind).`);
  });
}

function supersededBundle(input: AnalysisInput): NewFinding[] {
  if (input.history.length === 0) return [];
  /** For a revision N: when a higher revision was first published, and the grace the bundle N allowed. */
  const supersession = (revision: number): { publishedAt: string; revision: number; graceSeconds: number } | null => {
    let newer: Omit<StoredBundle, "archive"> | null = null;
    for (const b of input.history) {
      if (b.revision > revision && (newer === null || ms(b.publishedAt) < ms(newer.publishedAt))) newer = b;
    }
    if (newer === null) return null;
    const own = input.history.find((b) => b.revision === revision);
    return { publishedAt: newer.publishedAt, revision: newer.revision, graceSeconds: (own ?? newer).graceSeconds };
  };
  const cache = new Map<number, ReturnType<typeof supersession>>();
  const keyOf = (r: DecisionRecord): string | null => {
    const match = r.revision === null ? null : /^(.+)@(\d+)$/.exec(r.revision);
    if (match === null) return null;
    const revision = Number(match[2]);
    if (!cache.has(revision)) cache.set(revision, supersession(revision));
    const s = cache.get(revision)!;
    return s !== null && ms(r.time) - ms(s.publishedAt) > s.graceSeconds * 1000 ? r.revision : null;
  };
  return runs(input.records, keyOf).map(({ key, records }) => {
    const s = cache.get(Number(/@(\d+)$/.exec(key)![1]))!;
    return finding(input, "superseded-bundle", "medium", records,
      `${plural(records.length, "decision")} (${range(records[0]!.seq, records.at(-1)!.seq)}) made under ${key}, although revision ${s.revision} ` +
      `was published at ${s.publishedAt}, more than the ${s.graceSeconds}s grace period before them: the node kept a superseded bundle.`);
  });
}

function degradedStage(input: AnalysisInput): NewFinding[] {
  return runs(input.records, (r) => (r.stage !== undefined && r.stage in STAGE_SEVERITY ? r.stage : null)).map(({ key, records }) =>
    finding(input, "degraded-stage", STAGE_SEVERITY[key]!, records,
      `${plural(records.length, "decision")} (${range(records[0]!.seq, records.at(-1)!.seq)}, ${records[0]!.time} to ${records.at(-1)!.time}) ` +
      `made in stage ${key}: ${STAGE_MEANING[key]}.`));
}

function clockRewind(input: AnalysisInput): NewFinding[] {
  if (input.previousLastTime === null) return [];
  const floor = ms(input.previousLastTime) - input.clockSkewMs;
  return runs(input.records, (r) => (ms(r.time) < floor ? "rewind" : null)).map(({ records }) => {
    const earliest = records.reduce((a, r) => (ms(r.time) < ms(a.time) ? r : a));
    return finding(input, "clock-rewind", "high", records,
      `${plural(records.length, "decision")} (${range(records[0]!.seq, records.at(-1)!.seq)}) carry times as early as ${earliest.time}, ` +
      `before ${input.previousLastTime}, the latest time the node had already uploaded, by more than the ${input.clockSkewMs / 1000}s clock skew allowed: ` +
      `the node's clock was set back.`);
  });
}

function finding(input: AnalysisInput, kind: string, severity: Severity, records: readonly DecisionRecord[], explanation: string): NewFinding {
  return { node: input.node, kind, severity, seqFrom: records[0]!.seq, seqTo: records.at(-1)!.seq, explanation, createdAt: input.now };
}

const KIND_ORDER = ["revoked-caller-allowed", "clock-rewind", "superseded-bundle", "degraded-stage"];

/** Every finding about the new records, ordered by seq, then by kind (most severe first). */
export function analyze(input: AnalysisInput): NewFinding[] {
  return [...revokedCallerAllowed(input), ...clockRewind(input), ...supersededBundle(input), ...degradedStage(input)]
    .sort((a, b) => a.seqFrom! - b.seqFrom! || KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind));
}

/** The finding a refused upload raises on its node. */
export function refusalFinding(node: string, code: "gap" | "fork" | "chain" | "tampered" | "foreign-chain", seq: number, message: string, now: string): NewFinding {
  return { node, kind: `upload-${code}`, severity: "critical", seqFrom: seq, seqTo: seq, explanation: `upload refused (${code}): ${message}`, createdAt: now };
}

/** What a node's call claimed (its x-edgeward-* headers), and what the centre knows to check it against. */
export interface ClaimInput {
  node: string;
  group: string;
  claimed: { bundleRevision?: number; stage?: string; logSeq?: number };
  /** Whether the claimed bundle revision was published to the node's group (meaningless when none was claimed). */
  revisionPublished: boolean;
  /** The newest revision published to the group; null while it has none. */
  newestRevision: number | null;
  /** The last record of the node's log that the control plane acknowledged (0 before its first upload). */
  ackSeq: number;
  /** createdAt of the findings. */
  now: string;
}

/**
 * The contradictions between what a node claims and what the centre knows. A claim is the node's word: a node that
 * runs a bundle the centre never published to its group (another group's, one it was handed locally, or none at
 * all), or whose log ends before records it already uploaded (replaced, restored, cut), says so only if it is honest;
 * these findings catch the ones that are not, or are broken.
 */
export function claimFindings(input: ClaimInput): NewFinding[] {
  const { node, group, claimed, now } = input;
  const found: NewFinding[] = [];
  const revision = claimed.bundleRevision;
  if (revision !== undefined && !input.revisionPublished) {
    const newest = input.newestRevision;
    const why = newest === null
      ? `but no bundle was ever published to group ${group}`
      : revision > newest
        ? `newer than any published to group ${group} (the newest is ${newest})`
        : `which was never published to group ${group} (its newest is ${newest})`;
    found.push({
      node, kind: "claim-unpublished-revision", severity: "high", seqFrom: null, seqTo: null, createdAt: now,
      explanation: `the node claims to enforce bundle revision ${revision}, ${why}: it runs a bundle the control plane did not give its group, or misreports it.`,
    });
  }
  const logSeq = claimed.logSeq;
  if (logSeq !== undefined && logSeq < input.ackSeq) {
    found.push({
      node, kind: "claim-log-behind", severity: "high", seqFrom: logSeq + 1, seqTo: input.ackSeq, createdAt: now,
      explanation: `the node claims its decision log ends at seq ${logSeq}, but the control plane holds its records up to seq ${input.ackSeq}: ` +
        "its log was replaced, restored from an older copy or cut, or the node misreports it.",
    });
  }
  return found;
}
