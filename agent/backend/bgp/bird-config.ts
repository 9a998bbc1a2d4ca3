import { formatCidr, formatIp, parseIpOrNull, type Cidr, type Family } from "../../../shared/net/cidr.js";
import { admitPeers, checkLocal, configCidr, routerProtocolName, tryAs, type BirdConfigInput, type BirdRouter, type CheckedLocal, type CheckedPeer, type Refusal } from "./bird-input.js";

/**
 * bird.conf for one node, rendered from plain data (BIRD 2.0). The file is rewritten whole on
 * every change, and BIRD's `configure` compares it protocol by protocol: a protocol whose own
 * options are unchanged keeps its session, a changed filter only refreshes its routes, and a
 * changed protocol option (AS, addresses, timers, `allow local as`) restarts that session. So
 * everything that varies at run time (leases, this node's subnets) lives in filters and
 * `static` protocols, and a peer's protocol block depends only on that peer and this node.
 *
 * Nothing here is written to the kernel: there is no `kernel` protocol exporting, twilld
 * installs the learned routes itself (issue 23). Every value that reaches the text is a
 * number, a canonical address or prefix, or a symbol made here, never a string a peer chose:
 * one bad item would make BIRD refuse the whole file and keep the old one for every peer.
 */

export type { BirdConfigInput, BirdLocal, BirdPeer, BirdPeering, BirdRouter, Refusal } from "./bird-input.js";
export { meshProtocolName, routerProtocolName } from "./bird-input.js";

/** One BGP protocol of the rendered file: how status maps BIRD's names back to peers. */
export interface BirdSession {
  protocol: string;
  /** The peer node's name (mesh) or the router's address (routers). */
  peer: string;
  neighbor: string;
  local: string;
  as: number;
  families: Family[];
}

export interface BirdConfig {
  text: string;
  sessions: BirdSession[];
  /** What was left out of the file, and why (to report, not to fail on). */
  refused: Refusal[];
}

/** Kept across renders so a reload never restarts a session for a timer. Hold 9 s: a dead peer goes in 9 s, not 240. */
const TIMERS = ["connect delay time 1", "connect retry time 5", "error wait time 1, 30", "hold time 9", "keepalive time 3"];
/** How long peers keep this node's routes while it restarts (RFC 4724), in seconds. */
export const GRACEFUL_RESTART_TIME_S = 120;
/**
 * How long a BIRD started with `-R` waits for its peers before announcing: BIRD's 240 s
 * default would hold every announcement back while one configured peer is dead.
 */
const RESTART_WAIT = 10;
/** Route protocol of twill's own kernel routes: never learned back as underlay. */
const TWILL_RTPROTO = 150;
const FAMILIES: readonly Family[] = [4, 6];

const ipv = (f: Family): string => `ipv${f}`;
const pods = (f: Family): string => `twill_pods${f}`;
const underlayTable = (f: Family): string => `twill_underlay${f}`;
const acceptable = (f: Family): string => `twill_acceptable${f}`;
const importFilter = (protocol: string, f: Family): string => `${protocol}_import${f}`;
const routersFilter = (f: Family): string => `twill_routers_import${f}`;

export function renderBirdConfig(input: BirdConfigInput): BirdConfig {
  const refused: Refusal[] = [];
  const cluster = input.clusterCIDRs.map((c) => configCidr(c, "cluster CIDR"));
  const families = FAMILIES.filter((f) => cluster.some((c) => c.family === f));
  const local = checkLocal(input.local);
  const peers = admitPeers(input, cluster, local, refused);
  const out: string[] = [];
  out.push(...globals(local, families));
  out.push(...acceptableFunctions(families, cluster, local.subnets));
  const sessions =
    input.peering.mode === "mesh"
      ? meshSessions(out, local, families, peers, refused)
      : routerSessions(out, local, families, peers, input.peering.routers, refused);
  return { text: `${out.join("\n").trimEnd()}\n`, sessions, refused };
}

function globals(local: CheckedLocal, families: readonly Family[]): string[] {
  const channels = (body: (f: Family) => string): string => families.map((f) => `  ${ipv(f)} { ${body(f)} };`).join("\n");
  return [
    "# Rendered by twilld and replaced whole on every change: edits here do not last.",
    `router id ${local.routerId};`,
    "log stderr all;",
    // Dates always: BIRD's default drops the time of day after 20 hours, and `since` is an uptime.
    "timeformat protocol iso long ms;",
    "timeformat route iso long ms;",
    `graceful restart wait ${RESTART_WAIT};`,
    "",
    // Underlay routes, read only, to resolve a peer's next hop to the first hop twilld installs.
    ...families.map((f) => `${ipv(f)} table ${underlayTable(f)};`),
    "protocol device twill_device { scan time 10; }",
    "protocol direct twill_direct {",
    `  interface "${local.underlayDev}";`,
    channels((f) => `table ${underlayTable(f)};`),
    "}",
    ...families.map(
      (f) =>
        `protocol kernel twill_kernel${f} { learn; scan time 10; ${ipv(f)} { table ${underlayTable(f)}; ` +
        `import where krt_source != ${TWILL_RTPROTO}; export none; }; }`,
    ),
    "",
    // This node's subnets: unreachable in BIRD's table only (nothing exports to the kernel).
    ...families.map((f) => {
      const routes = local.subnets.filter((s) => s.family === f).map((s) => ` route ${formatCidr(s)} unreachable;`);
      return `protocol static ${pods(f)} { ${ipv(f)};${routes.join("")} }`;
    }),
    "",
  ];
}

/** What any import filter may accept at all: inside the cluster CIDRs, never this node's own subnets. */
function acceptableFunctions(families: readonly Family[], cluster: Cidr[], own: Cidr[]): string[] {
  return families.flatMap((f) => {
    const set = (list: Cidr[]): string => `[ ${list.map((c) => `${formatCidr(c)}+`).join(", ")} ]`;
    const ownOfF = own.filter((c) => c.family === f);
    const notOwn = ownOfF.length ? ` && !(net ~ ${set(ownOfF)})` : "";
    return [`function ${acceptable(f)}() { return net ~ ${set(cluster.filter((c) => c.family === f))}${notOwn}; }`];
  }).concat("");
}

function template(name: string, as: number): string[] {
  return [
    `template bgp ${name} {`,
    `  local as ${as};`,
    // Listen on the underlay address only, never on a pod-facing one (default: 0.0.0.0:179, [::]:179).
    "  strict bind yes;",
    "  graceful restart on;",
    `  graceful restart time ${GRACEFUL_RESTART_TIME_S};`,
    ...TIMERS.map((t) => `  ${t};`),
    "}",
    "",
  ];
}

function meshSessions(out: string[], local: CheckedLocal, families: readonly Family[], peers: CheckedPeer[], refused: Refusal[]): BirdSession[] {
  out.push(...template("twill_mesh", local.as));
  const sessions: BirdSession[] = [];
  for (const f of families) {
    if (!local.address[f]) refused.push({ subject: "local", reason: `no IPv${f} underlay address: IPv${f} pod subnets are not exchanged with mesh peers` });
  }
  for (const peer of peers) {
    const from = local.address[peer.family];
    if (!from) {
      refused.push({ subject: peer.nodeName, reason: `address ${peer.address} is IPv${peer.family} and this node has no IPv${peer.family} underlay address` });
      continue;
    }
    const carried = families.filter((f) => local.address[f]);
    for (const f of carried) {
      const nets = peer.subnets.filter((s) => s.family === f).map((s) => `net = ${formatCidr(s)}`);
      out.push(...filter(importFilter(peer.protocol, f), f, nets));
    }
    const channel = (f: Family): string => {
      // The session's own family sends this node's session address; the other one needs its address given.
      const nextHop = f === peer.family ? "next hop self" : `next hop address ${local.address[f]}`;
      return (
        `  ${ipv(f)} { import keep filtered on; igp table ${underlayTable(f)}; ${nextHop}; ` +
        `import filter ${importFilter(peer.protocol, f)}; export where proto = "${pods(f)}"; };`
      );
    };
    out.push(
      `protocol bgp ${peer.protocol} from twill_mesh {`,
      `  local ${from};`,
      `  neighbor ${peer.address} as ${local.as};`,
      ...carried.map(channel),
      "}",
      "",
    );
    sessions.push({ protocol: peer.protocol, peer: peer.nodeName, neighbor: peer.address, local: from, as: local.as, families: carried });
  }
  return sessions;
}

function routerSessions(
  out: string[],
  local: CheckedLocal,
  families: readonly Family[],
  peers: CheckedPeer[],
  routers: readonly BirdRouter[],
  refused: Refusal[],
): BirdSession[] {
  out.push(...template("twill_router", local.as));
  for (const f of families) {
    const nets: string[] = [];
    for (const peer of peers) {
      const as = tryAs(peer.as);
      if (as === null) {
        if (f === families[0]) refused.push({ subject: peer.nodeName, reason: `AS ${JSON.stringify(peer.as)} is not a 32-bit AS number: its routes cannot be told from a hijack` });
        continue;
      }
      // The origin is the AS path's last hop, or this node's own AS when the path is empty (iBGP within it).
      const origin = as === local.as ? `(bgp_path.len = 0 || bgp_path.last = ${as})` : `bgp_path.last = ${as}`;
      for (const s of peer.subnets.filter((s) => s.family === f)) nets.push(`net = ${formatCidr(s)} && ${origin}`);
    }
    out.push(...filter(routersFilter(f), f, nets));
  }
  const sessions: BirdSession[] = [];
  const seen = new Set<string>();
  for (const router of routers) {
    const ip = parseIpOrNull(router.address);
    const as = tryAs(router.as);
    if (!ip || as === null) {
      refused.push({ subject: String(router.address), reason: `router ${JSON.stringify(router.address)} AS ${JSON.stringify(router.as)} is not an address and a 32-bit AS number` });
      continue;
    }
    const f = ip.family;
    const address = formatIp(f, ip.value);
    const from = local.address[f];
    const why = !families.includes(f)
      ? `is IPv${f} and the cluster has no IPv${f} pods`
      : !from
        ? `is IPv${f} and this node has no IPv${f} underlay address`
        : seen.has(address)
          ? "is listed twice"
          : null;
    if (why || !from) {
      refused.push({ subject: address, reason: `router ${address} ${why}` });
      continue;
    }
    seen.add(address);
    const protocol = routerProtocolName(address);
    const ibgp = as === local.as;
    // eBGP: another node of this AS (AS per rack) is otherwise dropped as a loop; this node's own
    // subnets are refused by the filter anyway. Always on, as whether a peer shares the AS
    // changes with the leases, and changing the option would restart the session.
    const session = ibgp ? `igp table ${underlayTable(f)}; ` : "";
    out.push(
      `protocol bgp ${protocol} from twill_router {`,
      `  local ${from};`,
      `  neighbor ${address} as ${as};`,
      ...(ibgp ? [] : ["  allow local as 1;"]),
      `  ${ipv(f)} { import keep filtered on; ${session}import filter ${routersFilter(f)}; export where proto = "${pods(f)}"; };`,
      "}",
      "",
    );
    sessions.push({ protocol, peer: address, neighbor: address, local: from, as, families: [f] });
  }
  return sessions;
}

/** An import filter accepting exactly `conditions` (each one lease's prefix), within what is acceptable at all. */
function filter(name: string, f: Family, conditions: readonly string[]): string[] {
  return [
    `filter ${name} {`,
    `  if !${acceptable(f)}() then reject;`,
    ...conditions.map((c) => `  if ${c} then accept;`),
    "  reject;",
    "}",
  ];
}
