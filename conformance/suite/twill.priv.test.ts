import { mkdtempSync, rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allCases } from "./cases/index.js";
import type { SuiteSetup } from "./context.js";
import { disposeSuite, prepareSuite, runCase } from "./suite.js";
import { twillSuiteOptions } from "./twill-fixture.js";

// The whole conformance suite against the built twill: one test per case, so a failure
// names the case and its reason. A case that cannot apply (n/a) is skipped with its reason.
describe("twill against the CNI conformance suite", () => {
  let dir: string;
  let setup: SuiteSetup;

  beforeAll(async () => {
    dir = mkdtempSync("/tmp/twill-conformance-");
    setup = await prepareSuite(twillSuiteOptions(dir));
  });

  afterAll(async () => {
    if (setup) await disposeSuite(setup);
    rmSync(dir, { recursive: true, force: true });
  });

  for (const c of allCases) {
    it(`${c.id} ${c.name}`, async (t) => {
      const r = await runCase(setup, c);
      if (r.result === "n/a") t.skip(`n/a: ${r.reason}`);
      expect(r.result, r.reason).toBe("pass");
    });
  }
});
