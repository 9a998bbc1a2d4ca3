import { invalidConfig } from "../../shared/cni/errors.js";
import type { Result, Route } from "../../shared/cni/types.js";
import { wrongKind, type LinkAddresses, type Link, type Route as KernelRoute } from "../../shared/kernel/types.js";
import { sameIp } from "../../shared/kernel/routes.js";
import { parseCidr } from "../../shared/net/cidr.js";
import type { Attachment } from "./plan.js";

/**
 * CHECK compares what the kernel holds with the result ADD returned (prevResult). The reads
 * happen elsewhere; everything here works on plain data, and every problem is a sentence that
 * names the object, so an operator can act on it.
 */

export interface Expected {
  bridge: string;
  hostVeth: string;
  ifname: string;
  netns: string;
  mac?: string;
  /** `ip/prefix` on the pod interface. */
  addresses: string[];
  routes: Route[];
}

/** What prevResult says this plugin set up. Throws when it does not describe this attachment. */
export function expectedFromResult(prev: Result, at: Attachment, bridge: string, hostVeth: string): Expected {
  const index = (prev.interfaces ?? []).findIndex((i) => i.name === at.ifname && i.sandbox === at.netns);
  if (index < 0) throw invalidConfig(`prevResult has no interface "${at.ifname}" in ${at.netns}`);
  const pod = prev.interfaces![index]!;
  return {
    bridge,
    hostVeth,
    ifname: at.ifname,
    netns: at.netns,
    ...(pod.mac ? { mac: pod.mac } : {}),
    addresses: (prev.ips ?? []).filter((ip) => ip.interface === index).map((ip) => ip.address),
    routes: prev.routes ?? [],
  };
}

/** Problems in the node namespace: the bridge and the node end of the veth. */
export function nodeProblems(links: readonly Link[], exp: Expected): string[] {
  const problems: string[] = [];
  const bridge = links.find((l) => l.name === exp.bridge);
  const notBridge = bridge && wrongKind(bridge, "bridge");
  if (!bridge) problems.push(`bridge "${exp.bridge}" does not exist`);
  else if (notBridge) problems.push(notBridge);
  else if (!bridge.up) problems.push(`bridge "${exp.bridge}" is down`);

  const host = links.find((l) => l.name === exp.hostVeth);
  if (!host) problems.push(`host interface "${exp.hostVeth}" does not exist`);
  else {
    const notVeth = wrongKind(host, "veth", `host interface "${exp.hostVeth}"`);
    if (notVeth) problems.push(notVeth);
    if (host.master !== exp.bridge) problems.push(`host interface "${exp.hostVeth}" is not attached to bridge "${exp.bridge}" (master: ${host.master ?? "none"})`);
    if (!host.up) problems.push(`host interface "${exp.hostVeth}" is down`);
  }
  return problems;
}

/** Problems inside the pod: its interface (and that it is the veth's peer), addresses, routes. */
export function podProblems(
  links: readonly Link[],
  addrs: readonly LinkAddresses[],
  routes: readonly KernelRoute[],
  exp: Expected,
  hostPeerIndex: number | undefined,
): string[] {
  const where = `"${exp.ifname}" in ${exp.netns}`;
  const pod = links.find((l) => l.name === exp.ifname);
  if (!pod) return [`interface ${where} does not exist`];
  const problems: string[] = [];
  const notVeth = wrongKind(pod, "veth", `interface ${where}`);
  if (notVeth) problems.push(notVeth);
  else if (hostPeerIndex !== undefined && pod.index !== hostPeerIndex) problems.push(`interface ${where} is not the peer of host interface "${exp.hostVeth}"`);
  if (exp.mac && pod.mac !== exp.mac.toLowerCase()) problems.push(`interface ${where} has MAC ${pod.mac ?? "none"}, want ${exp.mac}`);
  if (!pod.up) problems.push(`interface ${where} is down`);

  const have = addrs.find((a) => a.name === exp.ifname)?.addresses ?? [];
  for (const want of exp.addresses) {
    const w = parseCidr(want);
    const found = have.some((a) => a.prefixLength === w.prefix && sameIp(a.ip, want.split("/")[0]!));
    if (!found) problems.push(`interface ${where} has no address ${want}`);
  }

  for (const want of exp.routes) {
    if (!routes.some((r) => routeMatches(r, want))) {
      problems.push(`no route to ${want.dst}${want.gw ? ` via ${want.gw}` : ""} in ${exp.netns}`);
    }
  }
  return problems;
}

/** A kernel route serves `want` when the destination is the same prefix and, if `want` names one, the gateway too. */
export function routeMatches(r: KernelRoute, want: Route): boolean {
  let w, d;
  try {
    w = parseCidr(want.dst);
    d = parseCidr(r.dst);
  } catch {
    return false;
  }
  if (d.family !== w.family || d.prefix !== w.prefix || d.network !== w.network) return false;
  return !want.gw || (r.gateway !== undefined && sameIp(r.gateway, want.gw));
}
