import { describe, expect, it } from "vitest";
import type { IpLink } from "../../testkit/iproute.js";
import { attachmentProblems, hostInterfaces, hostSide, leftoverProblems, remainingProblems, routeKey, type NsState } from "./attachment.js";

const link = (ifname: string, ifindex: number, extra: Partial<IpLink> = {}): IpLink => ({ ifname, ifindex, flags: ["UP"], mtu: 1500, ...extra });

const NETNS = "/var/run/netns/pod";
const result = {
  cniVersion: "1.0.0",
  interfaces: [
    { name: "cni0", mac: "0a:00:00:00:00:01" },
    { name: "veth1", mac: "0a:00:00:00:00:02" },
    { name: "eth0", mac: "0a:00:00:00:00:03", sandbox: NETNS },
  ],
  ips: [{ address: "10.1.0.5/24", gateway: "10.1.0.1", interface: 2 }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.1" }, { dst: "10.9.0.0/16" }],
};

const pod = (): NsState => ({
  links: [link("lo", 1), link("eth0", 2, { address: "0a:00:00:00:00:03", link_index: 7, link_netnsid: 0, linkinfo: { info_kind: "veth" } })],
  addrs: [{ ifindex: 2, ifname: "eth0", addr_info: [{ family: "inet", local: "10.1.0.5", prefixlen: 24 }] }],
  routes: [
    { family: 4, route: { dst: "default", gateway: "10.1.0.1", dev: "eth0" } },
    { family: 4, route: { dst: "10.9.0.0/16", dev: "eth0" } },
  ],
});
const node = (): NsState => ({
  links: [
    link("cni0", 5, { address: "0a:00:00:00:00:01", linkinfo: { info_kind: "bridge" } }),
    link("veth1", 7, { address: "0a:00:00:00:00:02", linkinfo: { info_kind: "veth" } }),
  ],
  addrs: [],
  routes: [],
});
const where = { ifname: "eth0", netns: NETNS };

describe("routeKey", () => {
  it("writes destinations as ip -json does", () => {
    expect(routeKey("0.0.0.0/0")).toBe("default");
    expect(routeKey("::/0")).toBe("default");
    expect(routeKey("10.1.2.3/32")).toBe("10.1.2.3");
    expect(routeKey("10.1.2.3/24")).toBe("10.1.2.0/24");
    expect(routeKey("fd00::1/64")).toBe("fd00::/64");
  });
});

describe("attachmentProblems", () => {
  it("finds nothing wrong when the kernel holds what the result says", () => {
    expect(attachmentProblems(result, where, pod(), node())).toEqual([]);
  });

  it("names every difference", () => {
    const p = pod();
    p.links[1] = { ...p.links[1]!, address: "0a:00:00:00:00:99", flags: [] };
    p.addrs = [];
    p.routes = p.routes.slice(1);
    const n = node();
    n.links = n.links.slice(0, 1);
    expect(attachmentProblems(result, where, p, n)).toEqual([
      "interface veth1 from the result is not in the node namespace",
      "interface eth0 has MAC 0a:00:00:00:00:99, the result says 0a:00:00:00:00:03",
      "interface eth0 is not up",
      "address 10.1.0.5/24 is not on eth0 in the sandbox",
      "route 0.0.0.0/0 via 10.1.0.1 is not in the sandbox",
    ]);
  });

  it("wants the attachment in the result with CNI_NETNS as its sandbox", () => {
    const moved = { ...result, interfaces: result.interfaces.map((i) => ({ ...i, sandbox: i.sandbox ? "/other" : undefined })) };
    expect(attachmentProblems(moved, where, pod(), node())).toContain(`result lists no interface eth0 with sandbox ${NETNS}`);
    expect(attachmentProblems(moved, where, pod(), node())).toContain(
      `ips[0].interface points at eth0, not at an interface in ${NETNS}`,
    );
  });

  it("wants the gateway a route names", () => {
    const p = pod();
    p.routes[0] = { family: 4, route: { dst: "default", gateway: "10.1.0.254" } };
    expect(attachmentProblems(result, where, p, node())).toEqual(["route 0.0.0.0/0 via 10.1.0.1 is not in the sandbox"]);
  });
});

describe("after DEL", () => {
  it("finds the host veth by the sandbox interface's peer index and by the result", () => {
    expect(hostSide(result, "eth0", pod(), node()).map((l) => l.ifname)).toEqual(["veth1"]);
    expect(hostSide({}, "eth0", pod(), node()).map((l) => l.ifname)).toEqual(["veth1"]);
    expect(hostInterfaces(result, node(), "bridge")).toEqual(["cni0"]);
  });

  it("reports what remains, and a recreated name with another index is not a leftover", () => {
    const host = hostSide(result, "eth0", pod(), node());
    expect(remainingProblems("eth0", pod(), host, node())).toEqual(["interface eth0 is still in the sandbox", "veth veth1 is still on the node"]);
    const recreated = node();
    recreated.links[1] = { ...recreated.links[1]!, ifindex: 9 };
    expect(remainingProblems("eth0", null, host, recreated)).toEqual([]);
  });

  it("diffs the node around a failed ADD, ignoring bridges", () => {
    const before: NsState = { links: [link("lo", 1)], addrs: [], routes: [] };
    expect(leftoverProblems(where, null, before, node())).toEqual(["veth veth1 is still on the node"]);
  });
});
