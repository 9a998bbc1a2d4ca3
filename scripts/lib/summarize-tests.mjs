// Prints one closing line over every vitest JSON report given: "tests: N passed, N failed, N skipped".
// A test file that failed without a failed test (it did not load, a hook threw) counts as one
// failure; a file with failed tests adds only those.
import { readFileSync } from "node:fs";

let passed = 0, failed = 0, skipped = 0;
for (const file of process.argv.slice(2)) {
  const r = JSON.parse(readFileSync(file, "utf8"));
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  skipped += r.numPendingTests + (r.numTodoTests ?? 0);
  for (const suite of r.testResults ?? []) {
    const failedTests = (suite.assertionResults ?? []).filter((t) => t.status === "failed").length;
    if (suite.status === "failed" && failedTests === 0) failed += 1;
  }
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
