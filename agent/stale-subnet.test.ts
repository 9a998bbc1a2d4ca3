import { describe, expect, it } from "vitest";
import type { Address, LinkAddresses } from "../shared/kernel/types.js";
import { staleAddresses, staleReservations } from "./stale-subnet.js";

const CLUSTER = ["10.244.0.0/16", "fd00:10:244::/56"];

describe("staleAddresses", () => {
  it("finds cluster addresses outside the node's subnets, leaving the VTEP, the underlay and link-local alone", () => {
    const v4 = (ip: string, prefixLength: number): Address => ({ family: 4, ip, prefixLength, scope: "global" });
    const links: LinkAddresses[] = [
      { index: 1, name: "cni0", addresses: [v4("10.244.3.1", 24), v4("10.244.7.1", 24), { family: 6, ip: "fe80::1", prefixLength: 64, scope: "link" }] },
      { index: 2, name: "twill.1", addresses: [v4("10.244.3.0", 32)] },
      { index: 3, name: "eth0", addresses: [v4("192.0.2.10", 24)] },
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
