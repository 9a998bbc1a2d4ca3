import { familyOfText, isLinkLocal6, parseCidr, parseIp, type Family } from "../../shared/net/cidr.js";
import { vtepName } from "../../shared/kernel/vxlan.js";
import type { NodeLease } from "../types.js";
import { canonical, onLinkPrefix, type BackendKind, type NodeView, type PathFinder, type PeerPath } from "./kind.js";
import { emptyState } from "./plan.js";

/**
 * host-gw: a route to each peer's pod subnets via the peer's underlay address. No
 * encapsulation, so no MTU overhead and no device of its own; it needs every peer on this
 * node's L2 segment, and a peer elsewhere is reported, not routed.
 */

export const hostGwPath: PathFinder = (peer, view) => {
  const path: PeerPath = { route: "host-gw", entries: emptyState(), errors: [] };
  const dev = view.local.underlayDev;
  if (!onLinkPrefix(peer.publicIP, view.underlayPrefixes)) {
    path.errors.push(notAdjacent(peer.nodeName, peer.publicIP, view));
    return { ...path, route: null };
  }
  for (const subnet of peer.subnets) {
    const family = parseCidr(subnet).family;
    const via = nextHop(peer, family);
    if (!via) {
      path.errors.push(
        `peer ${peer.nodeName} subnet ${subnet} is IPv${family} but the peer has no IPv${family} underlay address: ` +
          "host-gw routes a pod family only via a next hop of the same family; use vxlan or auto",
      );
      continue;
    }
    // A link-local next hop has no prefix to check; the peer's public IP above showed it is on this link.
    if (!isLinkLocal(via) && !onLinkPrefix(via, view.underlayPrefixes)) {
      path.errors.push(notAdjacent(peer.nodeName, via, view));
      continue;
    }
    path.entries.routes.push({ dst: canonical(subnet), via, dev, onlink: false });
  }
  return path;
};

export const hostGw: BackendKind = {
  type: "host-gw",
  overhead: () => 0,
  reach: hostGwPath,
  async prepare({ kernel, logger, network }) {
    // A node switched from vxlan: its VTEP would keep answering for routes host-gw now owns.
    const name = vtepName(network.backend.vni);
    if (await kernel.deleteLink(name, "VTEP")) logger.info("Deleted VXLAN device left by another backend", { device: name });
    return {};
  },
  ensureDevice: async () => ({ vtep: null, changes: 0 }),
};

const notAdjacent = (peer: string, ip: string, view: NodeView): string => {
  const where = view.underlayPrefixes.length ? view.underlayPrefixes.join(", ") : "no connected prefix";
  return `peer ${peer} ${ip} is not on the same L2 segment as ${view.local.underlayDev} (${where}): ` +
    "host-gw needs L2-adjacent nodes; use vxlan or auto";
};

/** A peer's host-gw next hop for a pod family: its public IP, or the underlay address of that family it publishes. */
function nextHop(peer: NodeLease, family: Family): string | null {
  if (familyOfText(peer.publicIP) === family) return peer.publicIP;
  return peer.backend.underlayIPs?.find((a) => familyOfText(a) === family) ?? null;
}

const isLinkLocal = (ip: string): boolean => isLinkLocal6(parseIp(ip));
