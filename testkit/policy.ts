import { parseIp } from "../shared/net/cidr.js";
import type { PolicyPlan } from "../agent/policy/plan.js";
import { REJECT_CHAIN } from "../agent/policy/ruleset.js";
import type { NamespaceInfo, NetworkPolicy, PodInfo } from "../agent/policy/types.js";

/**
 * NetworkPolicy test support. What the compiled plan does to one new connection, read the way
 * nft reads the rules the compiler writes: the compiler's tests state semantics (this pod may
 * reach that one on port 80) rather than rule text. Replies are not modelled: conntrack accepts
 * them before any of this runs. And a small cluster to compile for.
 */

export interface Packet {
  src: string;
  dst: string;
  proto: "tcp" | "udp" | "sctp" | "icmp";
  port?: number;
}

/** "drop": denied, rejected or dropped. */
export type Verdict = "accept" | "drop";

export function simulate(plan: PolicyPlan, pkt: Packet): Verdict {
  for (const d of ["egress", "ingress"] as const) {
    const addr = d === "ingress" ? pkt.dst : pkt.src;
    const fam = addr.includes(":") ? 6 : 4;
    const entry = plan.maps.find((m) => m.name === `${d}${fam}`)?.elements.find(([ip]) => ip === addr);
    if (!entry) continue;
    if (runChain(plan, entry[1], pkt) !== "accept") return "drop";
  }
  return "accept";
}

/** A pod chain's deny: counted, then dropped, or rejected (whatever it is) by the reject chain. */
const DENY = new RegExp(`^counter name "[^"]+" (?:drop|goto ${REJECT_CHAIN})$`);

/** One chain of the plan run on the packet: its verdict, or "return" when no rule ended it. */
export function runChain(plan: PolicyPlan, name: string, pkt: Packet): Verdict | "return" {
  const chain = plan.chains.find((c) => c.name === name);
  if (!chain) throw new Error(`no chain ${name}`);
  for (const rule of chain.rules) {
    const jump = /^jump (\S+)$/.exec(rule);
    if (jump) {
      const v = runChain(plan, jump[1]!, pkt);
      if (v !== "return") return v;
      continue;
    }
    if (rule.startsWith("limit ")) continue;
    if (DENY.test(rule)) return "drop";
    if (matches(plan, rule.replace(/ ?accept$/, ""), pkt)) return "accept";
  }
  return "return";
}

function matches(plan: PolicyPlan, text: string, pkt: Packet): boolean {
  let rest = text.trim();
  while (rest) {
    let m: RegExpExecArray | null;
    if ((m = /^(ip6?) (saddr|daddr) @(\S+)\s*/.exec(rest))) {
      const addr = m[2] === "saddr" ? pkt.src : pkt.dst;
      if ((m[1] === "ip6") !== addr.includes(":")) return false;
      if (!inSet(plan, m[3]!, addr)) return false;
    } else if ((m = /^(ip6?) daddr \. meta l4proto \. th dport @(\S+)\s*/.exec(rest))) {
      if ((m[1] === "ip6") !== pkt.dst.includes(":")) return false;
      const set = plan.sets.find((s) => s.name === m![2])!;
      if (!set.elements.includes(`${pkt.dst} . ${pkt.proto} . ${pkt.port}`)) return false;
    } else if ((m = /^meta l4proto \. th dport @(\S+)\s*/.exec(rest))) {
      const ok = setElements(plan, m[1]!).some((e) => {
        const [proto, range] = e.split(" . ") as [string, string];
        const [lo, hi] = range.split("-").map(Number) as [number, number | undefined];
        return proto === pkt.proto && pkt.port !== undefined && pkt.port >= lo && pkt.port <= (hi ?? lo);
      });
      if (!ok) return false;
    } else if ((m = /^meta l4proto @(\S+)\s*/.exec(rest))) {
      if (!setElements(plan, m[1]!).includes(pkt.proto)) return false;
    } else {
      throw new Error(`cannot simulate "${rest}"`);
    }
    rest = rest.slice(m[0].length);
  }
  return true;
}

function setElements(plan: PolicyPlan, name: string): string[] {
  const set = plan.sets.find((s) => s.name === name);
  if (!set) throw new Error(`no set ${name}`);
  return set.elements;
}

function inSet(plan: PolicyPlan, name: string, addr: string): boolean {
  const v = parseIp(addr).value;
  return setElements(plan, name).some((e) => {
    const [a, b] = e.split("-") as [string, string | undefined];
    return parseIp(a).value <= v && v <= parseIp(b ?? a).value;
  });
}

/** The node the compiler compiles for. */
export const NODE = "node-a";

export function pod(namespace: string, name: string, ips: string[], labels: Record<string, string> = {}, extra: Partial<PodInfo> = {}): PodInfo {
  return { namespace, name, nodeName: NODE, labels, ips, ports: [], ...extra };
}
export function policy(namespace: string, name: string, spec: Partial<NetworkPolicy>): NetworkPolicy {
  return { namespace, name, podSelector: {}, policyTypes: ["ingress"], ingress: [], egress: [], ...spec };
}
export const ns = (name: string, labels: Record<string, string> = {}): NamespaceInfo => ({ name, labels: { "kubernetes.io/metadata.name": name, ...labels } });

/** default/web (10.0.0.10, fd00::10) on this node; clients here and on another node. */
export const web = pod("default", "web", ["10.0.0.10", "fd00::10"], { app: "web" }, { ports: [{ name: "http", port: 8080, protocol: "TCP" }, { name: "dns", port: 5353, protocol: "UDP" }] });
export const client = pod("default", "client", ["10.0.0.11", "fd00::11"], { app: "client" });
export const stranger = pod("default", "stranger", ["10.0.0.12"], { app: "stranger" });
export const remoteClient = pod("team-x", "client", ["10.0.1.20", "fd00:1::20"], { app: "client" }, { nodeName: "node-b" });
export const remoteOther = pod("team-x", "other", ["10.0.1.21"], { app: "other" }, { nodeName: "node-b" });
export const namespaces = [ns("default"), ns("team-x", { team: "x" }), ns("team-y", { team: "y" })];
export const allPods = [web, client, stranger, remoteClient, remoteOther];

export const tcp = (src: PodInfo | string, dst: PodInfo | string, port: number, family: 4 | 6 = 4): Packet => ({ src: addr(src, family), dst: addr(dst, family), proto: "tcp", port });
export const udp = (src: PodInfo | string, dst: PodInfo | string, port: number): Packet => ({ ...tcp(src, dst, port), proto: "udp" });
export const addr = (p: PodInfo | string, family: 4 | 6): string => (typeof p === "string" ? p : p.ips.find((ip) => ip.includes(":") === (family === 6))!);

export const webOnly = { podSelector: { matchLabels: { app: "web" } } };
