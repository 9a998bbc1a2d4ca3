import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log.js";
import { writePolicyReady } from "../../shared/policy-ready.js";
import { addressesAwaitingPolicy, waitForPolicy } from "./policy-wait.js";

describe("addressesAwaitingPolicy", () => {
  const ready = { namespaces: ["shop"], ips: ["10.0.0.5"] };
  it("waits for an address of a pod in a namespace with policies until the agent lists it", () => {
    expect(addressesAwaitingPolicy(ready, "shop", ["10.0.0.6", "10.0.0.5"])).toEqual(["10.0.0.6"]);
    expect(addressesAwaitingPolicy(ready, "shop", ["10.0.0.5"])).toEqual([]);
  });
  it("does not wait in a namespace without policies, without a namespace, or without the agent's file", () => {
    expect(addressesAwaitingPolicy(ready, "other", ["10.0.0.6"])).toEqual([]);
    expect(addressesAwaitingPolicy(ready, undefined, ["10.0.0.6"])).toEqual([]);
    expect(addressesAwaitingPolicy(null, "shop", ["10.0.0.6"])).toEqual([]);
  });
});

describe("waitForPolicy", () => {
  let dir = "";
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("returns once the agent lists the address, and goes on with a warning when it never does", async () => {
    dir = mkdtempSync(join(tmpdir(), "twill-policy-wait-"));
    const file = join(dir, "policy-ready.json");
    const logs: { msg: string }[] = [];
    const log = createLogger((line) => logs.push(JSON.parse(line)));
    writePolicyReady(file, { namespaces: ["shop"], ips: [] });
    setTimeout(() => writePolicyReady(file, { namespaces: ["shop"], ips: ["10.0.0.6"] }), 50);
    await waitForPolicy(file, "shop", ["10.0.0.6"], log, 5_000);
    expect(logs.map((l) => l.msg)).toEqual(["NetworkPolicy in force for the pod"]);

    await waitForPolicy(file, "shop", ["10.0.0.7"], log, 100);
    expect(logs.map((l) => l.msg)).toContain("NetworkPolicy not yet in force for the pod; going on (is twilld running?)");
  });
});
