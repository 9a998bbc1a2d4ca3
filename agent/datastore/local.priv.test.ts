import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe } from "vitest";
import { LocalStore } from "./local.js";
import { subnetStoreContract } from "./store-contract.js";

describe("local datastore", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  subnetStoreContract({
    fresh: async () => {
      const dir = mkdtempSync(join(tmpdir(), "twill-local-store-"));
      dirs.push(dir);
      return (network, leaseTTLMs) => new LocalStore({ dir, network, leaseTTLMs, pollMs: 100 });
    },
  });
});
