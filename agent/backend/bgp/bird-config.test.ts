import { describe, expect, it } from "vitest";
import { ConfigError } from "../../errors.js";
import { meshProtocolName, renderBirdConfig, routerProtocolName, type BirdConfigInput, type BirdPeer } from "./bird-config.js";

/**
 * The rendered file is read back by a small reader of BIRD's syntax (statements and blocks),
 * so the tests check the pieces that matter (which protocols, which filter conditions, which
 * options) rather than a snapshot of the whole text.
 */

interface Statement {
  /** The text before the block or the `;` (`protocol bgp mesh_node_2 from twill_mesh`). */
  head: string;
  /** The statements inside `{ }`, or null for a plain `x;` statement. */
  body: Statement[] | null;
}

/** Splits BIRD config text into nested statements; quotes and comments are honoured, like BIRD's lexer. */
function readConfig(text: string): Statement[] {
  let i = 0;
  const block = (closing: boolean): Statement[] => {
    const out: Statement[] = [];
    let head = "";
    while (i < text.length) {
      const c = text[i++]!;
      if (c === "#") {
        while (i < text.length && text[i] !== "\n") i++;
      } else if (c === '"') {
        const end = text.indexOf('"', i);
        if (end < 0) throw new Error("unterminated string");
        head += text.slice(i - 1, end + 1);
        i = end + 1;
      } else if (c === "{") {
        const body = block(true);
        // `ipv4 { ... };` and `protocol x { ... }` end alike.
        if (text[i] === ";") i++;
        out.push({ head: head.trim().replace(/\s+/g, " "), body });
        head = "";
      } else if (c === "}") {
        if (!closing) throw new Error("unbalanced }");
        if (head.trim()) out.push({ head: head.trim().replace(/\s+/g, " "), body: null });
        return out;
      } else if (c === ";") {
        out.push({ head: head.trim().replace(/\s+/g, " "), body: null });
        head = "";
      } else {
        head += c;
      }
    }
    if (closing) throw new Error("unbalanced {");
    if (head.trim()) throw new Error(`trailing text ${JSON.stringify(head)}`);
    return out;
  };
  return block(false);
}

const heads = (list: Statement[]): string[] => list.map((s) => s.head);
const find = (list: Statement[], head: string): Statement => {
  const found = list.filter((s) => s.head === head);
  if (found.length !== 1) throw new Error(`${found.length} statements "${head}" in:\n${heads(list).join("\n")}`);
  return found[0]!;
};
const bodyOf = (list: Statement[], head: string): Statement[] => find(list, head).body ?? [];
/** A filter's accepting conditions, `net = X` (and what else each one checks). */
const accepts = (config: Statement[], name: string): string[] =>
  heads(bodyOf(config, `filter ${name}`))
    .filter((h) => h.endsWith(" then accept"))
    .map((h) => h.replace(/^if /, "").replace(/ then accept$/, ""));
const protocolHeads = (config: Statement[]): string[] => heads(config).filter((h) => h.startsWith("protocol "));
/** The options of a protocol's channel as plain statements (`import filter x`, `next hop self`). */
const channel = (config: Statement[], protocol: string, family: "ipv4" | "ipv6"): string[] => heads(bodyOf(bodyOf(config, protocol), family));

const peer = (nodeName: string, n: number, extra: Partial<BirdPeer> = {}): BirdPeer => ({
  nodeName,
  address: `192.0.2.1${n}`,
  subnets: [`10.244.${n}.0/24`, `fd10:244:${n}::/64`],
  as: 65000 + n,
  ...extra,
});

const mesh = (peers: BirdPeer[], over: Partial<BirdConfigInput> = {}): BirdConfigInput => ({
  nodeName: "node-1",
  clusterCIDRs: ["10.244.0.0/16", "fd10:244::/32"],
  local: { routerId: "192.0.2.11", addresses: ["192.0.2.11", "2001:db8::11"], underlayDev: "eth0", subnets: ["10.244.1.0/24", "fd10:244:1::/64"], as: 64512 },
  peering: { mode: "mesh" },
  peers,
  ...over,
});

const routers = (peers: BirdPeer[], list = [{ address: "192.0.2.1", as: 65000 }, { address: "2001:db8::1", as: 65000 }]): BirdConfigInput =>
  mesh(peers, { peering: { mode: "routers", routers: list }, local: { ...mesh([]).local, as: 65001 } });

describe("renderBirdConfig, node mesh", () => {
  const two = renderBirdConfig(mesh([peer("node-2", 2), peer("node-3", 3)]));
  const config = readConfig(two.text);

  it("has one iBGP session per peer over its public address, from this node's address of that family", () => {
    expect(two.refused).toEqual([]);
    expect(protocolHeads(config).filter((h) => h.startsWith("protocol bgp"))).toEqual([
      "protocol bgp mesh_node_2 from twill_mesh",
      "protocol bgp mesh_node_3 from twill_mesh",
    ]);
    expect(heads(bodyOf(config, "protocol bgp mesh_node_2 from twill_mesh")).slice(0, 2)).toEqual(["local 192.0.2.11", "neighbor 192.0.2.12 as 64512"]);
    expect(heads(bodyOf(config, "template bgp twill_mesh"))).toEqual([
      "local as 64512",
      "strict bind yes",
      "graceful restart on",
      "graceful restart time 120",
      "connect delay time 1",
      "connect retry time 5",
      "error wait time 1, 30",
      "hold time 9",
      "keepalive time 3",
    ]);
    expect(two.sessions).toEqual([
      { protocol: "mesh_node_2", peer: "node-2", neighbor: "192.0.2.12", local: "192.0.2.11", as: 64512, families: [4, 6] },
      { protocol: "mesh_node_3", peer: "node-3", neighbor: "192.0.2.13", local: "192.0.2.11", as: 64512, families: [4, 6] },
    ]);
  });

  it("accepts from each peer exactly its leased subnets, and announces only this node's", () => {
    expect(accepts(config, "mesh_node_2_import4")).toEqual(["net = 10.244.2.0/24"]);
    expect(accepts(config, "mesh_node_2_import6")).toEqual(["net = fd10:244:2::/64"]);
    expect(accepts(config, "mesh_node_3_import4")).toEqual(["net = 10.244.3.0/24"]);
    for (const name of ["mesh_node_2_import4", "mesh_node_3_import6"]) {
      const rules = heads(bodyOf(config, `filter ${name}`));
      expect(rules[0]).toMatch(/^if !twill_acceptable[46]\(\) then reject$/);
      expect(rules.at(-1)).toBe("reject");
    }
    expect(heads(bodyOf(config, "function twill_acceptable4()"))).toEqual(["return net ~ [ 10.244.0.0/16+ ] && !(net ~ [ 10.244.1.0/24+ ])"]);
    expect(heads(bodyOf(config, "protocol static twill_pods4"))).toEqual(["ipv4", "route 10.244.1.0/24 unreachable"]);
    expect(heads(bodyOf(config, "protocol static twill_pods6"))).toEqual(["ipv6", "route fd10:244:1::/64 unreachable"]);
    expect(channel(config, "protocol bgp mesh_node_2 from twill_mesh", "ipv4")).toEqual([
      "import keep filtered on",
      "igp table twill_underlay4",
      "next hop self",
      "import filter mesh_node_2_import4",
      'export where proto = "twill_pods4"',
    ]);
    // IPv6 over an IPv4 session: the next hop is this node's IPv6 underlay address, given.
    expect(channel(config, "protocol bgp mesh_node_2 from twill_mesh", "ipv6")).toContain("next hop address 2001:db8::11");
    expect(channel(config, "protocol bgp mesh_node_2 from twill_mesh", "ipv6")).toContain("import keep filtered on");
  });

  it("writes nothing to the kernel and resolves next hops only on the underlay device", () => {
    expect(heads(config).slice(0, 6)).toEqual([
      "router id 192.0.2.11",
      "log stderr all",
      "timeformat protocol iso long ms",
      "timeformat route iso long ms",
      "graceful restart wait 10",
      "ipv4 table twill_underlay4",
    ]);
    for (const f of ["4", "6"]) {
      const kernel = bodyOf(config, `protocol kernel twill_kernel${f}`);
      expect(heads(kernel)).toEqual(["learn", "scan time 10", `ipv${f}`]);
      expect(channel(config, `protocol kernel twill_kernel${f}`, `ipv${f}` as "ipv4")).toEqual([
        `table twill_underlay${f}`,
        "import where krt_source != 150",
        "export none",
      ]);
    }
    expect(heads(bodyOf(config, "protocol direct twill_direct"))).toEqual(['interface "eth0"', "ipv4", "ipv6"]);
    expect(protocolHeads(config).filter((h) => h.startsWith("protocol kernel"))).toHaveLength(2);
  });

  it("keeps every unchanged peer's blocks byte for byte when a peer joins, and whatever the input order", () => {
    const before = readConfig(renderBirdConfig(mesh([peer("node-3", 3), peer("node-2", 2)])).text);
    expect(before).toEqual(config);
    const after = readConfig(renderBirdConfig(mesh([peer("node-2", 2), peer("node-4", 4), peer("node-3", 3)])).text);
    const removed = before.filter((s) => !after.some((t) => JSON.stringify(t) === JSON.stringify(s)));
    expect(removed).toEqual([]);
    expect(heads(after.filter((s) => !before.some((t) => JSON.stringify(t) === JSON.stringify(s))))).toEqual([
      "filter mesh_node_4_import4",
      "filter mesh_node_4_import6",
      "protocol bgp mesh_node_4 from twill_mesh",
    ]);
  });

  it("changes only a peer's filter when its lease changes, never its protocol", () => {
    const moved = readConfig(renderBirdConfig(mesh([peer("node-2", 2, { subnets: ["10.244.9.0/24"] }), peer("node-3", 3)])).text);
    const changed = config.filter((s) => !moved.some((t) => JSON.stringify(t) === JSON.stringify(s)));
    expect(heads(changed)).toEqual(["filter mesh_node_2_import4", "filter mesh_node_2_import6"]);
    expect(accepts(moved, "mesh_node_2_import4")).toEqual(["net = 10.244.9.0/24"]);
    expect(accepts(moved, "mesh_node_2_import6")).toEqual([]);
  });

  it("refuses subnets outside the cluster CIDRs or over this node's own, and keeps the peer's others", () => {
    const r = renderBirdConfig(mesh([peer("node-2", 2, { subnets: ["10.244.2.0/24", "198.51.100.0/24", "10.244.1.128/25", "10.244.0.0/16", "0.0.0.0/0"] })]));
    expect(accepts(readConfig(r.text), "mesh_node_2_import4")).toEqual(["net = 10.244.2.0/24"]);
    expect(r.refused).toEqual([
      { subject: "node-2", reason: "subnet 198.51.100.0/24 is outside the cluster CIDRs" },
      { subject: "node-2", reason: "subnet 10.244.1.128/25 overlaps this node's own subnet" },
      { subject: "node-2", reason: "subnet 10.244.0.0/16 overlaps this node's own subnet" },
      { subject: "node-2", reason: "subnet 0.0.0.0/0 is outside the cluster CIDRs" },
    ]);
  });

  it("refuses a prefix two leases claim, in both, and peers sharing an address or this node's", () => {
    const r = renderBirdConfig(
      mesh([
        peer("node-2", 2, { subnets: ["10.244.2.0/24", "10.244.7.0/24"] }),
        peer("node-3", 3, { subnets: ["10.244.3.0/24", "10.244.2.128/25"] }),
        peer("node-4", 4, { address: "192.0.2.13" }),
        peer("node-5", 5, { address: "192.0.2.11" }),
      ]),
    );
    const config = readConfig(r.text);
    expect(protocolHeads(config).filter((h) => h.startsWith("protocol bgp"))).toEqual([
      "protocol bgp mesh_node_2 from twill_mesh",
    ]);
    expect(accepts(config, "mesh_node_2_import4")).toEqual(["net = 10.244.7.0/24"]);
    expect(r.refused).toEqual([
      { subject: "node-2", reason: "subnet 10.244.2.0/24 overlaps another peer's lease" },
      { subject: "node-3", reason: "subnet 10.244.2.128/25 overlaps another peer's lease" },
      { subject: "node-3", reason: "address 192.0.2.13 is also another peer's" },
      { subject: "node-4", reason: "address 192.0.2.13 is also another peer's" },
      { subject: "node-5", reason: "address 192.0.2.11 is also this node's" },
    ]);
  });

  it("leaves out this node's own lease, and a pod family this node has no underlay address for", () => {
    const r = renderBirdConfig(mesh([peer("node-1", 1), peer("node-2", 2)], { local: { ...mesh([]).local, addresses: ["192.0.2.11"] } }));
    const config = readConfig(r.text);
    expect(r.sessions.map((s) => [s.protocol, s.families])).toEqual([["mesh_node_2", [4]]]);
    expect(heads(bodyOf(config, "protocol bgp mesh_node_2 from twill_mesh"))).toEqual(["local 192.0.2.11", "neighbor 192.0.2.12 as 64512", "ipv4"]);
    expect(r.refused).toEqual([{ subject: "local", reason: "no IPv6 underlay address: IPv6 pod subnets are not exchanged with mesh peers" }]);
  });

  it("peers over IPv6 with an IPv6 peer, giving the IPv4 next hop, and refuses a peer of a family it has no address of", () => {
    const local = { ...mesh([]).local, addresses: ["2001:db8::11", "192.0.2.11"] };
    const r = renderBirdConfig(mesh([peer("node-2", 2, { address: "2001:db8::12" })], { local }));
    const config = readConfig(r.text);
    expect(heads(bodyOf(config, "protocol bgp mesh_node_2 from twill_mesh")).slice(0, 2)).toEqual(["local 2001:db8::11", "neighbor 2001:db8::12 as 64512"]);
    expect(channel(config, "protocol bgp mesh_node_2 from twill_mesh", "ipv4")).toContain("next hop address 192.0.2.11");
    expect(channel(config, "protocol bgp mesh_node_2 from twill_mesh", "ipv6")).toContain("next hop self");

    const v4only = renderBirdConfig(mesh([peer("node-2", 2, { address: "2001:db8::12" })], { local: { ...local, addresses: ["192.0.2.11"] } }));
    expect(v4only.sessions).toEqual([]);
    expect(v4only.refused).toContainEqual({ subject: "node-2", reason: "address 2001:db8::12 is IPv6 and this node has no IPv6 underlay address" });
  });

  it("renders only the cluster's families", () => {
    const r = renderBirdConfig(mesh([peer("node-2", 2)], { clusterCIDRs: ["10.244.0.0/16"] }));
    const config = readConfig(r.text);
    expect(heads(bodyOf(config, "protocol bgp mesh_node_2 from twill_mesh"))).toEqual(["local 192.0.2.11", "neighbor 192.0.2.12 as 64512", "ipv4"]);
    expect(protocolHeads(config).filter((h) => /6\b/.test(h))).toEqual([]);
    expect(r.refused).toEqual([{ subject: "node-2", reason: "subnet fd10:244:2::/64 is outside the cluster CIDRs" }]);
  });
});

describe("renderBirdConfig, routers", () => {
  const r = renderBirdConfig(routers([peer("node-2", 2), peer("node-3", 3, { as: 65001 })]));
  const config = readConfig(r.text);

  it("has one session per router address, of its family, and no node sessions", () => {
    expect(r.refused).toEqual([]);
    expect(protocolHeads(config).filter((h) => h.startsWith("protocol bgp"))).toEqual([
      "protocol bgp tor4_192_0_2_1 from twill_router",
      "protocol bgp tor6_2001_db8__1 from twill_router",
    ]);
    expect(heads(bodyOf(config, "protocol bgp tor4_192_0_2_1 from twill_router"))).toEqual(["local 192.0.2.11", "neighbor 192.0.2.1 as 65000", "allow local as 1", "ipv4"]);
    expect(heads(bodyOf(config, "protocol bgp tor6_2001_db8__1 from twill_router"))).toEqual(["local 2001:db8::11", "neighbor 2001:db8::1 as 65000", "allow local as 1", "ipv6"]);
    expect(channel(config, "protocol bgp tor4_192_0_2_1 from twill_router", "ipv4")).toEqual([
      "import keep filtered on",
      "import filter twill_routers_import4",
      'export where proto = "twill_pods4"',
    ]);
    expect(heads(bodyOf(config, "template bgp twill_router"))[0]).toBe("local as 65001");
  });

  it("accepts each lease only from the AS its node announces from (this node's AS also by an empty path)", () => {
    expect(accepts(config, "twill_routers_import4")).toEqual([
      "net = 10.244.2.0/24 && bgp_path.last = 65002",
      "net = 10.244.3.0/24 && (bgp_path.len = 0 || bgp_path.last = 65001)",
    ]);
    expect(accepts(config, "twill_routers_import6")).toEqual([
      "net = fd10:244:2::/64 && bgp_path.last = 65002",
      "net = fd10:244:3::/64 && (bgp_path.len = 0 || bgp_path.last = 65001)",
    ]);
  });

  it("resolves an iBGP router's next hops through the underlay and needs no allow local as there", () => {
    const ibgp = readConfig(renderBirdConfig(routers([peer("node-2", 2)], [{ address: "192.0.2.1", as: 65001 }])).text);
    expect(heads(bodyOf(ibgp, "protocol bgp tor4_192_0_2_1 from twill_router"))).toEqual(["local 192.0.2.11", "neighbor 192.0.2.1 as 65001", "ipv4"]);
    expect(channel(ibgp, "protocol bgp tor4_192_0_2_1 from twill_router", "ipv4")).toContain("igp table twill_underlay4");
  });

  it("refuses a lease without a usable AS, and routers it cannot peer with", () => {
    const bad = renderBirdConfig(
      routers(
        [peer("node-2", 2, { as: undefined }), peer("node-3", 3, { as: 0 }), peer("node-4", 4)],
        [
          { address: "192.0.2.1", as: 65000 },
          { address: "192.0.2.1", as: 65009 },
          { address: "2001:db8::1", as: 2 ** 32 },
          { address: "10.0.0.1; export all", as: 65000 },
        ],
      ),
    );
    expect(accepts(readConfig(bad.text), "twill_routers_import4")).toEqual(["net = 10.244.4.0/24 && bgp_path.last = 65004"]);
    expect(bad.sessions.map((s) => s.protocol)).toEqual(["tor4_192_0_2_1"]);
    expect(bad.refused).toEqual([
      { subject: "node-2", reason: "AS undefined is not a 32-bit AS number: its routes cannot be told from a hijack" },
      { subject: "node-3", reason: "AS 0 is not a 32-bit AS number: its routes cannot be told from a hijack" },
      { subject: "192.0.2.1", reason: "router 192.0.2.1 is listed twice" },
      { subject: "2001:db8::1", reason: 'router "2001:db8::1" AS 4294967296 is not an address and a 32-bit AS number' },
      { subject: "10.0.0.1; export all", reason: 'router "10.0.0.1; export all" AS 65000 is not an address and a 32-bit AS number' },
    ]);
  });
});

describe("protocol names", () => {
  const symbol = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

  it("read as the node name where it is a plain DNS name, and are BIRD symbols with room for the filter suffix", () => {
    expect(meshProtocolName("node-2")).toBe("mesh_node_2");
    expect(meshProtocolName("ip-10-0-1-23.eu-west-1.compute.internal")).toBe("mesh_ip_10_0_1_23__eu_west_1__compute__internal");
    for (const name of ["node-2", "a".repeat(253), "Ünïcode", "x\n}", "", "--", "a..b"]) {
      expect(meshProtocolName(name)).toMatch(symbol);
      expect(`${meshProtocolName(name)}_import6`).toMatch(symbol);
    }
    expect(routerProtocolName("192.0.2.1")).toBe("tor4_192_0_2_1");
    expect(routerProtocolName("2001:DB8:0::1")).toBe("tor6_2001_db8__1");
  });

  it("never give two node names one protocol", () => {
    const names = ["a-b", "a.b", "a_b", "A-b", "a--b", "a-.b", "a__b", "a-b-", "ab", "a.b.c", "a-b.c", "a.b-c", "a" .repeat(60), `${"a".repeat(60)}b`];
    const protocols = names.map(meshProtocolName);
    expect(new Set(protocols).size).toBe(names.length);
    // The hashed form (three underscores) cannot be produced by a plain name.
    expect(meshProtocolName("a_b")).toMatch(/^mesh_a_b___[0-9a-f]{16}$/);
  });
});

describe("hostile inputs", () => {
  const hostile = 'x"; } protocol kernel k { ipv4 { export all; }; } #';

  it("cannot add a statement or a block through a node name, a subnet, an address or an AS", () => {
    const clean = readConfig(renderBirdConfig(mesh([peer("node-2", 2)])).text);
    const r = renderBirdConfig(
      mesh([
        peer("node-2", 2),
        peer(hostile, 3),
        peer("node-4", 4, { subnets: ["10.244.4.0/24 ] then accept; #", "10.244.4.0/24\n}"] }),
        peer("node-5", 5, { address: "192.0.2.15; export all" }),
        peer("node-6", 6, { as: "65000; allow local as 10" as unknown as number }),
      ]),
    );
    const config = readConfig(r.text);
    // Same globals, one protocol per admitted peer, nothing else.
    expect(heads(config).filter((h) => !/^(filter|protocol bgp) mesh_/.test(h))).toEqual(heads(clean).filter((h) => !/^(filter|protocol bgp) mesh_/.test(h)));
    expect(protocolHeads(config).filter((h) => h.startsWith("protocol bgp"))).toEqual([
      "protocol bgp mesh_node_2 from twill_mesh",
      "protocol bgp mesh_node_4 from twill_mesh",
      "protocol bgp mesh_node_6 from twill_mesh",
      `protocol bgp ${meshProtocolName(hostile)} from twill_mesh`,
    ]);
    expect(accepts(config, `${meshProtocolName(hostile)}_import4`)).toEqual(["net = 10.244.3.0/24"]);
    expect(accepts(config, "mesh_node_4_import4")).toEqual([]);
    expect(r.text).not.toContain("export all");
    expect(r.refused).toEqual([
      { subject: "node-4", reason: 'subnet "10.244.4.0/24 ] then accept; #" is not a CIDR' },
      { subject: "node-4", reason: 'subnet "10.244.4.0/24\\n}" is not a CIDR' },
      { subject: "node-5", reason: 'address "192.0.2.15; export all" is not an IP address' },
    ]);
  });

  it("throws a configuration error for this node's own values, naming the value", () => {
    const local = mesh([]).local;
    const bad: [Partial<typeof local>, RegExp][] = [
      [{ routerId: "fd00::1" }, /router ID "fd00::1" is not an IPv4 address/],
      [{ routerId: "1.2.3.4; protocol kernel" }, /router ID/],
      [{ addresses: ["192.0.2.11 }"] }, /underlay address "192.0.2.11 }"/],
      [{ underlayDev: 'eth0"; } #' }, /underlay device/],
      [{ underlayDev: "eth*" }, /underlay device/],
      [{ subnets: ["10.244.1.0/24; route 0.0.0.0/0 unreachable"] }, /pod subnet/],
      [{ as: 0 }, /BGP AS 0 of this node/],
      [{ as: 1.5 }, /BGP AS 1.5 of this node/],
    ];
    for (const [override, message] of bad) {
      expect(() => renderBirdConfig(mesh([], { local: { ...local, ...override } }))).toThrow(ConfigError);
      expect(() => renderBirdConfig(mesh([], { local: { ...local, ...override } }))).toThrow(message);
    }
    expect(() => renderBirdConfig(mesh([], { clusterCIDRs: ["10.244.0.0/16 ]"] }))).toThrow(/cluster CIDR/);
  });
});
