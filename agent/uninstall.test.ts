import { describe, expect, it } from "vitest";
import type { Link } from "../shared/kernel/types.js";
import { describeStep, nftTables, planUninstall, twillPath, type NodeState } from "./uninstall.js";

const paths = {
  cniBinDir: "/opt/cni/bin",
  cniConfDir: "/etc/cni/net.d",
  subnetFile: "/run/twill/subnet.json",
  stateDir: "/var/lib/twill",
  ipamStore: "/var/lib/cni/networks/twill",
  bgpDir: "/run/twill/bird",
  logDir: "/var/log/twill",
  wireguardKey: "/var/lib/twill/wireguard/private.key",
};

const link = (name: string, kind?: string, master?: string): Link => ({ name, index: 1, up: true, lowerUp: true, mtu: 1500, ...(kind ? { kind } : {}), ...(master ? { master } : {}) });

function node(o: Partial<NodeState> & { files?: string[] } = {}): NodeState {
  const files = new Set(o.files ?? Object.values(paths).concat("/var/lib/twill/wireguard", "/opt/cni/bin/twill", "/opt/cni/bin/twill-ipam", "/run/twill", "/etc/cni/net.d/10-twill.conflist", "/etc/cni/net.d/.10-twill.conflist.tmp"));
  return {
    links: o.links ?? [link("lo"), link("eth0", "veth"), link("cni0", "bridge"), link("twill.1", "vxlan"), link("flannel.1", "vxlan")],
    routes: o.routes ?? ["10.244.2.0/24", "fd00:10:244:2::/64"],
    tables: o.tables ?? ["inet twill", "inet twill-policy", "inet twill-masq-abc123", "inet filter", "ip twill"],
    exists: (p) => files.has(p),
    list: (dir) => (dir === "/etc/cni/net.d" ? ["10-twill.conflist", ".10-twill.conflist.tmp", "10-flannel.conflist"] : []),
  };
}

describe("planUninstall", () => {
  it("takes off the wireguard backend's device and underlay filter, not another TUN", () => {
    const plan = planUninstall(node({ links: [link("twill-wg", "tun"), link("tun0", "tun")], tables: ["inet twill-wg"] }), paths, "cni0");
    expect(plan.steps.map(describeStep).slice(0, 3)).toEqual([
      "delete link twill-wg (the WireGuard device)",
      "delete twill's 2 route(s) (protocol 150)",
      "delete nftables table inet twill-wg",
    ]);
  });

  it("takes off exactly what is twill's: its bridge, VTEP, routes, inet tables, files", () => {
    const plan = planUninstall(node(), paths, "cni0");
    expect(plan.refusals).toEqual([]);
    expect(plan.steps.map(describeStep)).toEqual([
      "delete link cni0 (the pod bridge)",
      "delete link twill.1 (the VXLAN device (with its FDB and neighbour entries))",
      "delete twill's 2 route(s) (protocol 150)",
      "delete nftables table inet twill",
      "delete nftables table inet twill-policy",
      "delete nftables table inet twill-masq-abc123",
      "remove /opt/cni/bin/twill",
      "remove /opt/cni/bin/twill-ipam",
      "remove /etc/cni/net.d/10-twill.conflist",
      "remove /etc/cni/net.d/.10-twill.conflist.tmp",
      "remove /run/twill/subnet.json",
      "remove /run/twill/bird",
      "remove /var/lib/cni/networks/twill",
      "remove /var/lib/twill",
      "remove /var/log/twill",
      "remove /run/twill",
      "remove /var/lib/twill/wireguard",
    ]);
  });

  it("refuses while pods are attached to the bridge, naming them", () => {
    const plan = planUninstall(node({ links: [link("cni0", "bridge"), link("veth1234", "veth", "cni0"), link("veth5678", "veth", "cni0")] }), paths, "cni0");
    expect(plan.refusals).toEqual([expect.stringMatching(/^2 pod interface\(s\) still attached to cni0 \(veth1234, veth5678\): remove the pods/)]);
  });

  it("leaves a cni0 that is not a bridge, and paths not named for twill, saying so", () => {
    const plan = planUninstall(node({ links: [link("cni0", "dummy")], files: ["/", "/opt/cni/bin/twill"] }), { ...paths, stateDir: "/" }, "cni0");
    expect(plan.refusals).toEqual(['"cni0" is a dummy, not twill\'s bridge: left alone', '/ does not look like twill\'s (no "twill" in its path): left alone']);
    expect(plan.steps.map(describeStep)).toEqual(["delete twill's 2 route(s) (protocol 150)", "delete nftables table inet twill", "delete nftables table inet twill-policy", "delete nftables table inet twill-masq-abc123", "remove /opt/cni/bin/twill"]);
  });

  it("has nothing to do on a clean node", () => {
    expect(planUninstall(node({ links: [link("lo")], routes: [], tables: ["inet filter"], files: [] }), paths, "cni0")).toEqual({ steps: [], refusals: [] });
  });
});

describe("twillPath", () => {
  it("is an absolute path below the root, named for twill, with no way up", () => {
    expect(twillPath("/var/lib/twill")).toBe(true);
    expect(twillPath("/opt/cni/bin/twill-ipam")).toBe(true);
    for (const p of ["/", "/twill", "var/lib/twill", "/var/lib/cni", "/var/lib/twill/../../etc"]) expect(twillPath(p), p).toBe(false);
  });
});

describe("nftTables", () => {
  it("reads `nft -j list tables`", () => {
    const json = JSON.stringify({ nftables: [{ metainfo: { version: "1.0.6" } }, { table: { family: "inet", name: "twill", handle: 1 } }, { table: { family: "ip", name: "nat", handle: 2 } }] });
    expect(nftTables(json)).toEqual(["inet twill", "ip nat"]);
  });
});
