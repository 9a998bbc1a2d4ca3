/** How results are shown: a terminal table, JSON, and the Markdown of docs/conformance.md. Pure. */

export type Verdict = "pass" | "fail" | "n/a";

export interface CaseResult {
  id: string;
  name: string;
  result: Verdict;
  reason?: string;
  notes?: string[];
  ms?: number;
}

export function summary(results: readonly CaseResult[]): string {
  const count = (v: Verdict) => results.filter((r) => r.result === v).length;
  return `${results.length} cases: ${count("pass")} pass, ${count("fail")} fail, ${count("n/a")} n/a`;
}

/** A plain-text table; the reason column takes what is left and is never cut. */
export function renderTable(results: readonly CaseResult[]): string {
  const rows = results.map((r) => [r.id, r.name, r.result, [r.reason, ...(r.notes ?? []).map((n) => `(${n})`)].filter(Boolean).join(" ")]);
  const header = ["case", "name", "result", "reason"];
  const widths = [0, 1, 2].map((i) => Math.max(header[i]!.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c)).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w)).concat("------")), ...rows.map(line), "", summary(results)].join("\n") + "\n";
}

const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\s+/g, " ").trim();

/** One plugin's results as a Markdown table. */
export function renderMarkdownTable(results: readonly CaseResult[]): string {
  const rows = results.map((r) => {
    const why = [r.reason, ...(r.notes ?? []).map((n) => `(${n})`)].filter(Boolean).join(" ");
    return `| ${r.id} | ${cell(r.name)} | ${r.result === "fail" ? "**fail**" : r.result} | ${cell(why)} |`;
  });
  return ["| case | assertion | result | reason |", "|---|---|---|---|", ...rows, "", summary(results)].join("\n") + "\n";
}

/** Whether any case failed: the exit status of a run. */
export const anyFailed = (results: readonly CaseResult[]): boolean => results.some((r) => r.result === "fail");
