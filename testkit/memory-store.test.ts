import { describe } from "vitest";
import { MemoryDatastore } from "./memory-store.js";
import { subnetStoreContract } from "./store-contract.js";

describe("in-memory datastore", () => {
  subnetStoreContract({
    fresh: async () => {
      const db = new MemoryDatastore();
      return (network, leaseTTLMs) => db.open(network, leaseTTLMs);
    },
  });
});
