import { describe, expect, it } from "vitest";
import { anyFailed, renderMarkdownTable, renderTable, summary, type CaseResult } from "./report.js";

const results: CaseResult[] = [
  { id: "1.1", name: "VERSION answers", result: "pass" },
  { id: "12.3", name: "DEL | empty netns", result: "fail", reason: "veth vethab is still on the node", notes: ["exhausted after 3 pods"] },
  { id: "16.1", name: "STATUS", result: "n/a", reason: "no 1.1.0" },
];

describe("report", () => {
  it("counts verdicts and fails the run on any failure", () => {
    expect(summary(results)).toBe("3 cases: 1 pass, 1 fail, 1 n/a");
    expect(anyFailed(results)).toBe(true);
    expect(anyFailed([results[0]!, results[2]!])).toBe(false);
  });

  it("aligns the table and keeps the whole reason with its notes", () => {
    const lines = renderTable(results).split("\n");
    expect(lines[0]).toBe("case  name               result  reason");
    expect(lines[3]).toBe("12.3  DEL | empty netns  fail    veth vethab is still on the node (exhausted after 3 pods)");
    expect(lines[4]).toBe("16.1  STATUS             n/a     no 1.1.0");
  });

  it("escapes pipes in Markdown and marks failures", () => {
    const md = renderMarkdownTable(results);
    expect(md).toContain("| 12.3 | DEL \\| empty netns | **fail** | veth vethab is still on the node (exhausted after 3 pods) |");
    expect(md).toContain("| 1.1 | VERSION answers | pass |  |");
  });
});
