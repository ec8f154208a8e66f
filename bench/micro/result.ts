/** What a microbenchmark returns; the harness prints `rows` as a Markdown table and stores them in JSON. */
export interface MicroResult {
  name: string;
  rows: Record<string, string | number>[];
  notes?: string[];
}

/** A Markdown table of the rows (columns in the order of the first row's keys). */
export function markdownTable(rows: readonly Record<string, string | number>[]): string {
  const first = rows[0];
  if (first === undefined) return "(no rows)";
  const columns = Object.keys(first);
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [
    line(columns),
    line(columns.map((c) => (typeof first[c] === "number" ? "---:" : "---"))),
    ...rows.map((r) => line(columns.map((c) => String(r[c] ?? "")))),
  ].join("\n");
}

/** Prints a result the way a standalone run shows it. */
export function printResult(result: MicroResult): void {
  console.log(`## ${result.name}\n\n${markdownTable(result.rows)}\n`);
  for (const note of result.notes ?? []) console.log(`- ${note}`);
}

/** The q-quantile (0..1) of ascending-sorted samples, nearest rank. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}
