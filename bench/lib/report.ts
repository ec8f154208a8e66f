import { DIRECT, MINIMAL_MTLS, MINIMAL_PLAIN, differencePerRound, ratioPerRound, roundRatios, type BenchResults, type Check, type ScenarioResult } from "./results.ts";

const EDGEWARD = "edgeward";
const PORTKEY = "portkey";
const NGINX_MTLS = "nginx-mtls";

function fmt(value: number | undefined, digits: number): string {
  if (value === undefined || !Number.isFinite(value)) return "—";
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function ratio(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? "—" : `${value.toFixed(2)}×`;
}

function signed(value: number | undefined, digits: number): string {
  if (value === undefined || !Number.isFinite(value)) return "—";
  return `${value >= 0 ? "+" : ""}${value.toFixed(digits)}`;
}

/** A Markdown table; the first `textColumns` columns are left-aligned, the rest (figures) right-aligned. */
function table(header: string[], rows: string[][], textColumns = 1): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map((_, i) => (i < textColumns ? "---" : "---:"))), ...rows.map(line)].join("\n");
}

/** One table per scenario: medians across rounds, ratios to the minimal proxy, differences to direct. */
export function scenarioTable(s: ScenarioResult, targets: readonly string[]): string {
  const header = ["target"];
  for (const m of s.metrics) {
    header.push(m.label);
    if (m.ratio) header.push(`${m.label} ÷ min. mTLS`);
    if (m.overDirect) header.push(`${m.label} over direct`);
  }
  const rows = targets.filter((t) => s.medians[t] !== undefined && Object.keys(s.medians[t]!).length > 0).map((t) => {
    const cells = [t];
    for (const m of s.metrics) {
      cells.push(fmt(s.medians[t]![m.key], m.digits));
      if (m.ratio) cells.push(ratio(s.ratioToMinimalMtls[t]?.[m.key]));
      if (m.overDirect) cells.push(signed(s.overDirect[t]?.[m.key], 2));
    }
    return cells;
  });
  const failed = targets.flatMap((t) => s.rounds.flatMap((r, i) => {
    const m = r[t];
    return m !== undefined && "failed" in m ? [`- ${t}, round ${i + 1}: failed — ${String(m.failed)}`] : [];
  }));
  const params = Object.entries(s.params).map(([k, v]) => `${k} ${String(v)}`).join(", ");
  return [`### ${s.title}`, "", `${params}; medians of ${s.rounds.length} interleaved round(s).`, "", table(header, rows), ...(failed.length ? ["", ...failed] : [])].join("\n");
}

/** The targets, computed from per-round ratios and differences of this run. */
export function checks(scenarios: readonly ScenarioResult[], measuredTargets: readonly string[]): Check[] {
  const out: Check[] = [];
  const has = (t: string) => measuredTargets.includes(t);
  const byName = (n: string) => scenarios.find((s) => s.name === n);
  if (!has(EDGEWARD)) return out;
  const closed = byName("chat-closed-loop");
  if (closed && has(MINIMAL_MTLS)) {
    const cpu = ratioPerRound(closed.rounds, EDGEWARD, MINIMAL_MTLS, "cpuUsPerReq");
    const floor = has(NGINX_MTLS) ? `; nginx-mtls ${fmt(closed.medians[NGINX_MTLS]?.cpuUsPerReq, 0)} µs` : "";
    const rounds = roundRatios(closed.rounds, EDGEWARD, MINIMAL_MTLS, "cpuUsPerReq").map((r) => r.toFixed(2)).join(", ");
    out.push({
      target: "proxy CPU per request, edgeward ÷ minimal mTLS proxy",
      measured: `${ratio(cpu)} (rounds ${rounds}; medians ${fmt(closed.medians[EDGEWARD]?.cpuUsPerReq, 0)} vs ${fmt(closed.medians[MINIMAL_MTLS]?.cpuUsPerReq, 0)} µs${floor})`,
      goal: "≤ 1.0× (never > 1.3×)",
      met: Number.isFinite(cpu) ? cpu <= 1.0 : null,
    });
    const rps = ratioPerRound(closed.rounds, EDGEWARD, MINIMAL_MTLS, "rps");
    const rpsRounds = roundRatios(closed.rounds, EDGEWARD, MINIMAL_MTLS, "rps").map((r) => r.toFixed(2)).join(", ");
    out.push({ target: "throughput, edgeward ÷ minimal mTLS proxy", measured: `${ratio(rps)} (rounds ${rpsRounds})`, goal: "≥ 0.85×", met: Number.isFinite(rps) ? rps >= 0.85 : null });
  }
  if (closed && has(PORTKEY)) {
    const rps = ratioPerRound(closed.rounds, EDGEWARD, PORTKEY, "rps");
    out.push({ target: "throughput, edgeward (mTLS) ÷ Portkey (plain HTTP)", measured: ratio(rps), goal: "≥ 6×", met: Number.isFinite(rps) ? rps >= 6 : null });
  }
  const open = byName("chat-open-loop");
  if (open && has(DIRECT)) {
    const rate = open.params["rate req/s"];
    for (const [key, goal] of [["p50", 0.3], ["p99", 1.5]] as const) {
      const added = differencePerRound(open.rounds, EDGEWARD, DIRECT, key);
      out.push({ target: `added ${key} latency over direct at ${String(rate)} req/s (open loop)`, measured: `${signed(added, 2)} ms`, goal: `≤ ${goal} ms`, met: Number.isFinite(added) ? added <= goal : null });
    }
  }
  if (open && has(MINIMAL_MTLS)) {
    // A closed loop gives a faster target more requests per event-loop turn (cheaper each); at one fixed rate
    // every target carries the same load, so this is the like-for-like CPU figure.
    const cpu = ratioPerRound(open.rounds, EDGEWARD, MINIMAL_MTLS, "cpuUsPerReq");
    out.push({
      target: `proxy CPU per request at ${String(open.params["rate req/s"])} req/s, edgeward ÷ minimal mTLS proxy`,
      measured: `${ratio(cpu)} (medians ${fmt(open.medians[EDGEWARD]?.cpuUsPerReq, 0)} vs ${fmt(open.medians[MINIMAL_MTLS]?.cpuUsPerReq, 0)} µs)`,
      goal: "≤ 1.0× (never > 1.3×)",
      met: Number.isFinite(cpu) ? cpu <= 1.0 : null,
    });
  }
  for (const s of scenarios.filter((x) => x.name.startsWith("stream-"))) {
    if (!has(DIRECT)) break;
    const added = differencePerRound(s.rounds, EDGEWARD, DIRECT, "ttfbP50");
    out.push({ target: `stream time to first byte over direct (${s.title.toLowerCase()})`, measured: `${signed(added, 2)} ms`, goal: "≤ +0.5 ms", met: Number.isFinite(added) ? added <= 0.5 : null });
  }
  const slow = byName("slow-streams");
  if (slow) {
    const errors = Math.max(...slow.rounds.map((r) => {
      const m = r[EDGEWARD];
      return m === undefined || "failed" in m ? Number.POSITIVE_INFINITY : (m.errors ?? 0);
    }));
    const med = slow.medians[EDGEWARD] ?? {};
    out.push({
      target: `${String(slow.params.streams)} concurrent streams: errors, gateway RSS`,
      measured: `${Number.isFinite(errors) ? errors : "failed"} errors; RSS ${fmt(med.rssStartMB, 0)} → max ${fmt(med.rssMaxMB, 0)} → end ${fmt(med.rssEndMB, 0)} MB`,
      goal: "0 errors, ≤ 150 MB, flat",
      met: errors === 0 && (med.rssMaxMB ?? Number.POSITIVE_INFINITY) <= 150,
    });
  }
  return out;
}

export function markdownReport(results: BenchResults): string {
  const m = results.machine;
  const measured = results.targets.filter((t) => t.unavailable === null).map((t) => t.name);
  const parts = [
    "# Edgeward benchmark results",
    "",
    `${m.date} — ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}; profile \`${String(results.config.profile)}\`, ` +
      `${String(results.config.rounds)} round(s), ${results.durationSeconds.toFixed(0)} s in all.`,
    "",
    "## Targets",
    "",
    table(["target", "protocol", "status", "RSS when started, MB"], results.targets.map((t) => [
      t.name, t.mtls ? "mTLS" : "plain HTTP", t.unavailable === null ? "measured" : `unavailable: ${t.unavailable}`, fmt(t.rssIdleMB ?? undefined, 1),
    ]), 3),
  ];
  if (results.checks.length > 0) {
    parts.push("", "## Goals", "", table(["goal", "measured", "target", "met"], results.checks.map((c) => [c.target, c.measured, c.goal, c.met === null ? "—" : c.met ? "yes" : "**no**"]), 3));
  }
  parts.push("", "## Scenarios", "", `Ratios are medians of per-round ratios to \`${MINIMAL_MTLS}\`; "over direct" is the median per-round difference to \`${DIRECT}\`. ` +
    `Plain-HTTP targets compare with \`${MINIMAL_PLAIN}\` in the JSON (ratioToMinimalPlain).`);
  for (const s of results.scenarios) parts.push("", scenarioTable(s, measured));
  if (results.micro.length > 0) {
    parts.push("", "## Microbenchmarks");
    for (const e of results.micro) {
      if (e.failed !== undefined || e.result === undefined) {
        parts.push("", `### ${e.file}`, "", `failed: ${e.failed ?? "no result"}`);
        continue;
      }
      const rows = e.result.rows;
      const columns = Object.keys(rows[0] ?? {});
      parts.push("", `### ${e.result.name}`, "", rows.length === 0 ? "(no rows)" : table(columns, rows.map((r) => columns.map((c) => String(r[c] ?? ""))), columns.filter((c) => typeof rows[0]![c] !== "number").length));
      for (const note of e.result.notes ?? []) parts.push(`- ${note}`);
    }
  }
  return `${parts.join("\n")}\n`;
}
