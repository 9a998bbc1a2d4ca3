import { describe, expect, it } from "vitest";
import { staleAddresses, staleReservations } from "./stale-subnet.js";

const CLUSTER = ["10.244.0.0/16", "fd00:10:244::/56"];

describe("staleAddresses", () => {
  it("finds cluster addresses outside the node's subnets, leaving the VTEP, the underlay and link-local alone", () => {
    const links = [
      { ifindex: 1, ifname: "cni0", addr_info: [
        { family: "inet" as const, local: "10.244.3.1", prefixlen: 24 },
        { family: "inet" as const, local: "10.244.7.1", prefixlen: 24 },
        { family: "inet6" as const, local: "fe80::1", prefixlen: 64, scope: "link" },
      ] },
      { ifindex: 2, ifname: "twill.1", addr_info: [{ family: "inet" as const, local: "10.244.3.0", prefixlen: 32 }] },
      { ifindex: 3, ifname: "eth0", addr_info: [{ family: "inet" as const, local: "192.0.2.10", prefixlen: 24 }] },
    ];
    expect(staleAddresses(links, CLUSTER, ["10.244.7.0/24"], ["twill.1", "eth0"])).toEqual([{ dev: "cni0", address: "10.244.3.1/24" }]);
    expect(staleAddresses(links, CLUSTER, ["10.244.3.0/24", "10.244.7.0/24"], ["twill.1", "eth0"])).toEqual([]);
  });
});

describe("staleReservations", () => {
  it("picks the reservation files of addresses outside the node's subnets, not the store's other files", () => {
    const names = ["10.244.3.5", "10.244.7.2", "fd00:10:244:3::5", "last_reserved_ip.0", "lock", ".twill", "192.0.2.9"];
    expect(staleReservations(names, CLUSTER, ["10.244.7.0/24", "fd00:10:244:7::/64"])).toEqual(["10.244.3.5", "fd00:10:244:3::5"]);
  });
});
