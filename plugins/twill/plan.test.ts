import { describe, expect, it } from "vitest";
import type { NetConf, Result } from "../../shared/cni/types.js";
import { parseConf } from "./config.js";
import { hostVethName } from "./names.js";
import { buildResult, planAttach } from "./plan.js";

const conf = (extra: Record<string, unknown> = {}) =>
  parseConf({ cniVersion: "1.1.0", name: "net", type: "twill", ipam: { type: "host-local" }, ...extra } as NetConf);
const at = { containerId: "c1", ifname: "eth0", netns: "/var/run/netns/p1" };
const ipam: Result = { cniVersion: "1.1.0", ips: [{ address: "10.1.0.5/24", gateway: "10.1.0.1" }], routes: [{ dst: "10.96.0.0/12" }] };
const lines = (steps: { line: readonly (string | number)[] }[]) => steps.map((s) => s.line.join(" "));

describe("planAttach", () => {
  it("node batch: bridge settings, veth straight into the pod, bridge read back last", () => {
    const p = planAttach(conf(), 1400, at, ipam);
    const h = hostVethName("c1", "eth0");
    expect(lines(p.nodeSteps)).toEqual([
      "link set dev cni0 mtu 1400 up",
      `link add name ${h} mtu 1400 address ${p.veth.mac} master cni0 up type veth peer name eth0 mtu 1400 address 0a:58:0a:01:00:05 netns /var/run/netns/p1`,
      "link show dev cni0",
    ]);
    expect(p.nodeSteps[p.vethStep]!.line[1]).toBe("add");
    expect(p.forwarding).toEqual([]);
  });

  it("pod batch: lo, addresses, link up, then routes (a gateway must be on-link first)", () => {
    const p = planAttach(conf(), undefined, at, ipam);
    expect(lines(p.podSteps)).toEqual([
      "link set dev lo up",
      "addr add 10.1.0.5/24 dev eth0",
      "link set dev eth0 up",
      "route add 10.96.0.0/12 via 10.1.0.1 dev eth0",
    ]);
  });

  it("isDefaultGateway: gateway on the bridge, forwarding, default route", () => {
    const p = planAttach(conf({ isDefaultGateway: true }), undefined, at, ipam);
    expect(lines(p.nodeSteps)).toContain("addr replace 10.1.0.1/24 dev cni0");
    expect(p.forwarding).toEqual(["net.ipv4.ip_forward"]);
    expect(p.routes).toEqual([{ dst: "10.96.0.0/12" }, { dst: "0.0.0.0/0", gw: "10.1.0.1" }]);
    expect(lines(p.podSteps)).toContain("route add 0.0.0.0/0 via 10.1.0.1 dev eth0");
  });

  it("does not add a second default route when IPAM gives one", () => {
    const withDefault = { ...ipam, routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.254" }] };
    expect(planAttach(conf({ isDefaultGateway: true }), undefined, at, withDefault).routes).toEqual([{ dst: "0.0.0.0/0", gw: "10.1.0.254" }]);
  });

  it("isGateway without an IPAM gateway uses the subnet's first address", () => {
    const p = planAttach(conf({ isGateway: true }), undefined, at, { cniVersion: "1.1.0", ips: [{ address: "10.2.0.9/16" }] });
    expect(p.ips[0]!.gateway).toBe("10.2.0.1");
    expect(lines(p.nodeSteps)).toContain("addr replace 10.2.0.1/16 dev cni0");
  });

  it("dual stack: IPv6 without DAD, both forwarding keys, both default routes", () => {
    const dual: Result = {
      cniVersion: "1.1.0",
      ips: [
        { address: "10.1.0.5/24", gateway: "10.1.0.1" },
        { address: "fd00:1::5/64", gateway: "fd00:1::1" },
      ],
    };
    const p = planAttach(conf({ isDefaultGateway: true }), undefined, at, dual);
    expect(lines(p.podSteps)).toContain("addr add fd00:1::5/64 dev eth0 nodad");
    expect(lines(p.nodeSteps)).toContain("addr replace fd00:1::1/64 dev cni0 nodad");
    expect(p.forwarding).toEqual(["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]);
    expect(p.routes.map((r) => r.dst)).toEqual(["0.0.0.0/0", "::/0"]);
    expect(p.podSubnets).toEqual(["10.1.0.0/24", "fd00:1::/64"]);
  });

  it("hairpin and promiscuous mode", () => {
    const h = hostVethName("c1", "eth0");
    expect(lines(planAttach(conf({ hairpinMode: true }), undefined, at, ipam).nodeSteps)).toContain(
      `link set dev ${h} type bridge_slave hairpin on`,
    );
    expect(lines(planAttach(conf({ promiscMode: true }), undefined, at, ipam).nodeSteps)[0]).toBe("link set dev cni0 promisc on up");
  });

  it("uses a MAC the runtime chose", () => {
    const p = planAttach(conf({ runtimeConfig: { mac: "02:aa:00:00:00:01" } }), undefined, at, ipam);
    expect(p.veth.peer.mac).toBe("02:aa:00:00:00:01");
  });
});

describe("buildResult", () => {
  it("lists bridge, node end, pod end; ips point at the pod end in its sandbox", () => {
    const p = planAttach(conf({ isDefaultGateway: true }), 1400, at, ipam);
    const r = buildResult("1.1.0", null, p, "02:00:00:00:00:01", undefined, undefined);
    expect(r.interfaces!.map((i) => [i.name, i.sandbox])).toEqual([
      ["cni0", undefined],
      [hostVethName("c1", "eth0"), undefined],
      ["eth0", "/var/run/netns/p1"],
    ]);
    expect(r.interfaces![2]!.mtu).toBe(1400);
    expect(r.ips).toEqual([{ address: "10.1.0.5/24", gateway: "10.1.0.1", interface: 2 }]);
    expect(r.routes).toHaveLength(2);
    expect(r.dns).toBeUndefined();
  });

  it("keeps prevResult and appends to it, indices shifted", () => {
    const prev: Result = {
      cniVersion: "1.1.0",
      interfaces: [{ name: "net1", sandbox: "/var/run/netns/p1" }],
      ips: [{ address: "192.168.0.2/24", interface: 0 }],
      routes: [{ dst: "192.168.1.0/24" }],
      dns: { nameservers: ["192.168.0.53"] },
    };
    const r = buildResult("1.1.0", prev, planAttach(conf(), undefined, at, ipam), "02:00:00:00:00:01", undefined, undefined);
    expect(r.interfaces!.map((i) => i.name)[0]).toBe("net1");
    expect(r.ips!.map((i) => i.interface)).toEqual([0, 3]);
    expect(r.routes!.map((x) => x.dst)).toEqual(["192.168.1.0/24", "10.96.0.0/12"]);
    expect(r.dns).toEqual({ nameservers: ["192.168.0.53"] });
  });

  it("DNS: the config's, else IPAM's", () => {
    const p = planAttach(conf(), undefined, at, ipam);
    expect(buildResult("1.1.0", null, p, "m", { nameservers: ["1.1.1.1"] }, { nameservers: ["9.9.9.9"] }).dns).toEqual({ nameservers: ["9.9.9.9"] });
    expect(buildResult("1.1.0", null, p, "m", { nameservers: ["1.1.1.1"] }, {}).dns).toEqual({ nameservers: ["1.1.1.1"] });
  });
});
