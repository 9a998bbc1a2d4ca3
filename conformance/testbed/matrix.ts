import type { Pod, TestNode } from "./testbed.js";
import { ping, tcpProbe } from "./traffic.js";

/** Every pod tries every other pod's address: ping and a TCP echo, with round-trip times. */

export interface PairResult {
  from: Pod;
  to: Pod;
  address: string;
  ping: { ok: boolean; ms?: number; output: string };
  tcp: { ok: boolean; ms?: number; error?: string };
}

export async function reachability(pods: readonly Pod[], family: 4 | 6 = 4): Promise<PairResult[]> {
  const out: PairResult[] = [];
  // One source pod at a time; TCP first, then the pings in parallel (they mostly wait), so
  // the TCP timings do not compete with ping processes for the CPU.
  for (const from of pods) {
    const targets = pods.filter((p) => p !== from).map((to) => ({ to, address: podAddress(to, family) }));
    const tcp = await tcpProbe(from.ns, targets.map((t) => t.address));
    const pings = await Promise.all(targets.map((t) => ping(from.ns, t.address, { count: 3, intervalS: 0.2 })));
    targets.forEach((t, i) => {
      const p = pings[i]!;
      const c = tcp[i]!;
      out.push({
        from,
        to: t.to,
        address: t.address,
        ping: { ok: p.ok, ...(p.rttMs !== undefined ? { ms: p.rttMs } : {}), output: p.output },
        tcp: { ok: c.ok, ...(c.ms !== undefined ? { ms: c.ms } : {}), ...(c.error ? { error: c.error } : {}) },
      });
    });
  }
  return out;
}

/** One line per failed pair, for an assertion message. */
export const failures = (results: readonly PairResult[]): string[] =>
  results
    .filter((r) => !r.ping.ok || !r.tcp.ok)
    .map((r) => `${r.from.name}(${r.from.node.name}) -> ${r.to.name}(${r.to.node.name}) ${r.address}: ping ${r.ping.ok ? "ok" : "FAILED"}, tcp ${r.tcp.ok ? "ok" : r.tcp.error}`);

export function podAddress(pod: Pod, family: 4 | 6 = 4): string {
  const a = pod.ips.find((ip) => (family === 6) === ip.includes(":"));
  if (!a) throw new Error(`${pod.name} has no IPv${family} address (${pod.ips.join(", ")})`);
  return a;
}

/**
 * From every pod, a ping to every node's underlay addresses of the pod's families (through
 * masquerade when remote). A link-local address is left out: it is not routable from a pod.
 */
export async function podsToNodes(pods: readonly Pod[], nodes: readonly TestNode[]): Promise<string[]> {
  const failed: string[] = [];
  for (const pod of pods) {
    const targets = nodes.flatMap((n) =>
      [n.ip, n.ip6]
        .filter((a): a is string => a !== undefined && !a.startsWith("fe80:"))
        .filter((a) => pod.ips.some((p) => p.includes(":") === a.includes(":")))
        .map((address) => ({ node: n, address })),
    );
    const results = await Promise.all(targets.map((t) => ping(pod.ns, t.address)));
    results.forEach((r, i) => {
      const t = targets[i]!;
      if (!r.ok) failed.push(`${pod.name} -> ${t.node.name} ${t.address}: ${r.output.trim().split("\n").pop()}`);
    });
  }
  return failed;
}
