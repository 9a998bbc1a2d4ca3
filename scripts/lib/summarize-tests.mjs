// Prints one closing line over every vitest JSON report given: "tests: N passed, N failed, N skipped",
// after the name and first message line of each failure, so that the end of a run's log says
// what failed without a search through it.
// A test file that failed without a failed test (it did not load, a hook threw) counts as one
// failure; a file with failed tests adds only those.
import { readFileSync } from "node:fs";
import { relative } from "node:path";

let passed = 0, failed = 0, skipped = 0;
const failures = [];
const firstLine = (messages) => String(messages?.[0] ?? "").split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
for (const file of process.argv.slice(2)) {
  const r = JSON.parse(readFileSync(file, "utf8"));
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  skipped += r.numPendingTests + (r.numTodoTests ?? 0);
  for (const suite of r.testResults ?? []) {
    const where = relative(process.cwd(), suite.name ?? "");
    const failedTests = (suite.assertionResults ?? []).filter((t) => t.status === "failed");
    for (const t of failedTests) failures.push(`${where} > ${t.fullName ?? t.title}: ${firstLine(t.failureMessages)}`);
    if (suite.status === "failed" && failedTests.length === 0) {
      failed += 1;
      failures.push(`${where}: ${String(suite.message ?? "").split("\n")[0] || "the file failed outside its tests"}`);
    }
  }
}
for (const f of failures) console.log(`FAILED ${f.slice(0, 400)}`);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
