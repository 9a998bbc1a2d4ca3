import { describe, expect, it } from "vitest";
import type { NetConf, Result } from "../../shared/cni/types.js";
import { parseConf } from "./config.js";
import { hostVethName } from "./names.js";
import type { NetStep } from "../../shared/kernel/pod-kernel.js";
import { stepLine } from "../../testkit/steps.js";
import type { Address } from "../../shared/kernel/types.js";
import { buildResult, missingGatewaySteps, planNode, planPod } from "./plan.js";

const conf = (extra: Record<string, unknown> = {}) =>
  parseConf({ cniVersion: "1.1.0", name: "net", type: "twill", ipam: { type: "host-local" }, ...extra } as NetConf);
const at = { containerId: "c1", ifname: "eth0", netns: "/var/run/netns/p1" };
const ipam: Result = { cniVersion: "1.1.0", ips: [{ address: "10.1.0.5/24", gateway: "10.1.0.1" }], routes: [{ dst: "10.96.0.0/12" }] };
const lines = (steps: { step: NetStep }[]) => steps.map((s) => stepLine(s.step).join(" "));

describe("planNode", () => {
  it("bridge settings, veth straight into the pod, bridge read back last; nothing from IPAM", () => {
    const p = planNode(conf(), 1400, at);
    const h = hostVethName("c1", "eth0");
    expect(lines(p.steps)).toEqual([
      "link set dev cni0 mtu 1400 up",
      `link add name ${h} mtu 1400 address ${p.veth.mac} master cni0 up type veth peer name eth0 mtu 1400 netns /var/run/netns/p1`,
    ]);
    expect(p.steps[p.vethStep]!.step.op).toBe("add-veth");
  });

  it("sets a MAC the runtime chose at creation", () => {
    const p = planNode(conf({ runtimeConfig: { mac: "02:aa:00:00:00:01" } }), undefined, at);
    expect(lines(p.steps)[1]).toContain("peer name eth0 address 02:aa:00:00:00:01 netns");
  });

  it("hairpin and promiscuous mode", () => {
    const h = hostVethName("c1", "eth0");
    expect(lines(planNode(conf({ hairpinMode: true }), undefined, at).steps)).toContain(`link set dev ${h} type bridge_slave hairpin on`);
    expect(lines(planNode(conf({ promiscMode: true }), undefined, at).steps)[0]).toBe("link set dev cni0 promisc on up");
  });
});

describe("planPod", () => {
  it("lo, addresses, MAC and link up, then routes (a gateway must be on-link first)", () => {
    const p = planPod(conf(), at, ipam);
    expect(lines(p.steps)).toEqual([
      "link set dev lo up",
      "addr add 10.1.0.5/24 dev eth0",
      "link set dev eth0 address 0a:58:0a:01:00:05 up",
      "route add 10.96.0.0/12 via 10.1.0.1 dev eth0",
    ]);
    expect(p.mac).toBe("0a:58:0a:01:00:05");
    expect(p.forwarding).toEqual([]);
    expect(p.gateways).toEqual([]);
  });

  it("leaves a MAC the runtime chose alone", () => {
    const p = planPod(conf({ runtimeConfig: { mac: "02:aa:00:00:00:01" } }), at, ipam);
    expect(lines(p.steps)).toContain("link set dev eth0 up");
    expect(p.mac).toBe("02:aa:00:00:00:01");
  });

  it("isDefaultGateway: gateway for the bridge, forwarding, default route", () => {
    const p = planPod(conf({ isDefaultGateway: true }), at, ipam);
    expect(p.gateways).toEqual(["10.1.0.1/24"]);
    expect(p.forwarding).toEqual(["net.ipv4.ip_forward"]);
    expect(p.routes).toEqual([{ dst: "10.96.0.0/12" }, { dst: "0.0.0.0/0", gw: "10.1.0.1" }]);
    expect(lines(p.steps)).toContain("route add 0.0.0.0/0 via 10.1.0.1 dev eth0");
  });

  it("does not add a second default route when IPAM gives one", () => {
    const withDefault = { ...ipam, routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.254" }] };
    expect(planPod(conf({ isDefaultGateway: true }), at, withDefault).routes).toEqual([{ dst: "0.0.0.0/0", gw: "10.1.0.254" }]);
  });

  it("isGateway without an IPAM gateway uses the subnet's first address", () => {
    const p = planPod(conf({ isGateway: true }), at, { cniVersion: "1.1.0", ips: [{ address: "10.2.0.9/16" }] });
    expect(p.ips[0]!.gateway).toBe("10.2.0.1");
    expect(p.gateways).toEqual(["10.2.0.1/16"]);
  });

  it("dual stack: IPv6 without DAD, both forwarding keys, both default routes", () => {
    const dual: Result = {
      cniVersion: "1.1.0",
      ips: [
        { address: "10.1.0.5/24", gateway: "10.1.0.1" },
        { address: "fd00:1::5/64", gateway: "fd00:1::1" },
      ],
    };
    const p = planPod(conf({ isDefaultGateway: true }), at, dual);
    expect(lines(p.steps)).toContain("addr add fd00:1::5/64 dev eth0 nodad");
    expect(p.gateways).toEqual(["10.1.0.1/24", "fd00:1::1/64"]);
    expect(p.forwarding).toEqual(["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]);
    expect(p.routes.map((r) => r.dst)).toEqual(["0.0.0.0/0", "::/0"]);
    expect(p.podSubnets).toEqual(["10.1.0.0/24", "fd00:1::/64"]);
  });
});

describe("missingGatewaySteps", () => {
  const bridge = planNode(conf(), undefined, at).bridge;
  it("adds only what the bridge lacks, with replace, IPv6 without DAD", () => {
    const have: Address[] = [{ family: 4, ip: "10.1.0.1", prefixLength: 24, scope: "global" }];
    expect(missingGatewaySteps(bridge, have, ["10.1.0.1/24"])).toEqual([]);
    expect(missingGatewaySteps(bridge, have, ["10.1.0.1/24", "fd00:1::1/64"]).map((l) => stepLine(l).join(" "))).toEqual([
      "addr replace fd00:1::1/64 dev cni0 nodad",
    ]);
    expect(missingGatewaySteps(bridge, [], ["10.1.0.1/24"]).map((l) => stepLine(l).join(" "))).toEqual(["addr replace 10.1.0.1/24 dev cni0"]);
  });
});

describe("buildResult", () => {
  const build = (extra: Record<string, unknown>, prev: Result | null, ipamDns?: Result["dns"], confDns?: Result["dns"]) =>
    buildResult("1.1.0", prev, planNode(conf(extra), 1400, at), planPod(conf(extra), at, ipam), "02:00:00:00:00:01", ipamDns, confDns);

  it("lists bridge, node end, pod end; ips point at the pod end in its sandbox", () => {
    const r = build({ isDefaultGateway: true }, null);
    expect(r.interfaces!.map((i) => [i.name, i.sandbox])).toEqual([
      ["cni0", undefined],
      [hostVethName("c1", "eth0"), undefined],
      ["eth0", "/var/run/netns/p1"],
    ]);
    expect(r.interfaces![2]).toMatchObject({ mtu: 1400, mac: "0a:58:0a:01:00:05" });
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
    const r = build({}, prev);
    expect(r.interfaces!.map((i) => i.name)[0]).toBe("net1");
    expect(r.ips!.map((i) => i.interface)).toEqual([0, 3]);
    expect(r.routes!.map((x) => x.dst)).toEqual(["192.168.1.0/24", "10.96.0.0/12"]);
    expect(r.dns).toEqual({ nameservers: ["192.168.0.53"] });
  });

  it("DNS: the config's, else IPAM's", () => {
    expect(build({}, null, { nameservers: ["1.1.1.1"] }, { nameservers: ["9.9.9.9"] }).dns).toEqual({ nameservers: ["9.9.9.9"] });
    expect(build({}, null, { nameservers: ["1.1.1.1"] }, {}).dns).toEqual({ nameservers: ["1.1.1.1"] });
  });
});
