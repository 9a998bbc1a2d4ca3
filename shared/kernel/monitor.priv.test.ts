import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNetns, deleteNetns, ipIn, sysctls } from "../../testkit/netns.js";
import { until } from "../../testkit/until.js";
import { DatapathChanges, NftTableChanges } from "./monitor.js";

const ns = `twmon${process.pid.toString(36)}`;
const changes = new DatapathChanges(ipIn(ns));
const table = new NftTableChanges(ipIn(ns), "inet", "twill");

beforeAll(async () => {
  await addNetns(ns);
  // No IPv6 addresses: their duplicate detection ends with events seconds later.
  await sysctls(ns, { "net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1 });
  await ipIn(ns).batch(
    [["link", "add", "d0", "type", "veth", "peer", "name", "d1"], ["link", "set", "d0", "up"], ["link", "set", "d1", "up"], ["addr", "add", "172.16.0.1/16", "dev", "d0"],
      ["link", "add", "twill.1", "type", "vxlan", "id", "1", "dstport", "4789", "local", "172.16.0.1", "dev", "d0", "nolearning"], ["link", "set", "twill.1", "up"]],
    "set up the namespace",
  );
});

afterAll(async () => {
  changes.close();
  table.close();
  await deleteNetns(ns);
});

/** Waits until the monitor has been quiet for a second (IPv6 set-up events come late). */
async function settle(): Promise<void> {
  let quiet = 0;
  await until("the monitor settled", async () => {
    await new Promise((r) => setTimeout(r, 250));
    quiet = (await changes.sinceLast("twill.1")).entries ? 0 : quiet + 1;
    return quiet >= 4;
  });
}

describe("DatapathChanges, on a real ip monitor", () => {
  it("reports a change at first, then none while nothing changes", async () => {
    expect((await changes.sinceLast("twill.1")).entries).toBe(true);
    await settle();
    await new Promise((r) => setTimeout(r, 300));
    expect(await changes.sinceLast("twill.1")).toEqual({ entries: false, devicesDeleted: false });
  });

  it("reports a route or FDB entry added or deleted behind the agent's back, and not ARP on another device", async () => {
    const ip = ipIn(ns);
    await settle();
    await ip.exec(["route", "replace", "10.128.1.0/24", "via", "172.16.0.2", "proto", "150"], "add a route");
    await until("the route event seen", async () => (await changes.sinceLast("twill.1")).entries);
    await settle();
    await ip.bridge(["fdb", "replace", "02:00:00:00:00:01", "dev", "twill.1", "dst", "172.16.0.9", "self", "permanent"], "add an FDB entry");
    await until("the FDB event seen", async () => (await changes.sinceLast("twill.1")).entries);
    await settle();
    await ip.exec(["neigh", "replace", "172.16.0.5", "lladdr", "02:00:00:00:00:05", "dev", "d0", "nud", "reachable"], "add a neighbor on d0");
    await new Promise((r) => setTimeout(r, 500));
    expect(await changes.sinceLast("twill.1")).toEqual({ entries: false, devicesDeleted: false });
  });

  it("tells when a device it is asked about was deleted", async () => {
    const ip = ipIn(ns);
    await settle();
    await ip.exec(["link", "add", "d2", "type", "veth", "peer", "name", "d3"], "add d2");
    await ip.exec(["link", "del", "d2"], "delete d2");
    await until("the deletion seen", async () => (await changes.sinceLast("twill.1", ["d2"])).devicesDeleted);
  });
});

describe("NftTableChanges, on a real nft monitor", () => {
  it("reports a change of its table, not of another", async () => {
    const ip = ipIn(ns);
    expect(await table.sinceLast()).toBe(true);
    await until("nft monitor quiet", async () => !(await table.sinceLast()));
    await ip.nft(["-f", "-"], "add another table", "table ip other {\n  chain c {\n  }\n}\n");
    await new Promise((r) => setTimeout(r, 500));
    expect(await table.sinceLast()).toBe(false);
    await ip.nft(["-f", "-"], "add twill", "table inet twill {\n  chain c {\n  }\n}\n");
    await until("the twill table change seen", () => table.sinceLast());
    await ip.nft(["delete", "table", "inet", "twill"], "delete twill");
    await until("its deletion seen", () => table.sinceLast());
  });
});
