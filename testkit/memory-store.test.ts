import { describe } from "vitest";
import { MemoryDatastore } from "./memory-store.js";
import { subnetStoreContract } from "./store-contract.js";

describe("in-memory datastore", () => {
  subnetStoreContract({
    clocked: true,
    fresh: async () => {
      let db: MemoryDatastore | undefined;
      return (network, leaseTTLMs, clock) => (db ??= new MemoryDatastore(clock)).open(network, leaseTTLMs);
    },
  });
});
