import { describe, expect, it } from "vitest";
import { deletedLink, touchesDatapath, touchesTable } from "./monitor.js";

describe("touchesDatapath", () => {
  it("counts every link, address and route event, and neighbors on the VTEP only", () => {
    const lines = [
      "[ROUTE]Deleted 10.128.1.0/24 via 10.128.1.0 dev twill.1 proto 150 onlink ",
      "[LINK]5: veth1@if2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default ",
      "[ADDR]4: twill.1    inet 10.244.0.0/32 scope global twill.1",
      "[NEIGH]172.16.0.9 dev twill.1 lladdr 02:00:00:00:00:01 NOARP PERMANENT ",
      "[NEIGH]10.244.0.7 dev cni0 lladdr 0a:58:0a:f4:00:07 REACHABLE ",
      "       valid_lft forever preferred_lft forever",
    ];
    expect(lines.map((l) => touchesDatapath(l, "twill.1"))).toEqual([true, true, true, true, false, false]);
    expect(touchesDatapath(lines[3]!, null)).toBe(false);
    expect(touchesDatapath("[NEIGH]10.0.0.1 dev twill.10 lladdr 02:00:00:00:00:02 PERMANENT ", "twill.1")).toBe(false);
  });
});

describe("deletedLink", () => {
  it("names the device of a deleted-link line only", () => {
    expect(deletedLink("[LINK]Deleted 7: twill.1: <BROADCAST,MULTICAST> mtu 1450 qdisc noqueue state DOWN group default ")).toBe("twill.1");
    expect(deletedLink("[LINK]Deleted 9: veth5@if3: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default ")).toBe("veth5");
    expect(deletedLink("[LINK]7: twill.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN ")).toBeNull();
    expect(deletedLink("[ROUTE]Deleted 10.128.1.0/24 via 10.128.1.0 dev twill.1 proto 150 onlink ")).toBeNull();
  });
});

describe("touchesTable", () => {
  it("counts changes of the one table, nothing of others or nft's own notes", () => {
    const lines = [
      "add rule inet twill postrouting ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade",
      "delete table inet twill",
      "delete rule inet twill postrouting handle 2",
      "add rule ip filter KUBE-SERVICES counter packets 0 bytes 0 ip daddr 10.96.0.1 jump inet",
      "add table inet twill-policy",
      "# new generation 5 by process 10786 (nft)",
    ];
    expect(lines.map((l) => touchesTable(l, "inet", "twill"))).toEqual([true, true, true, false, false, false]);
  });
});
