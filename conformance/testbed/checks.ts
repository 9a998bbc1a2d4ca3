import { listFdb, listOwnedRoutes, listPermanentNeighbors } from "../../testkit/iproute.js";
import { stableVtepMac, vtepName } from "../../shared/kernel/vxlan.js";
import { ipIn } from "../../testkit/netns.js";
import type { TestNode } from "./testbed.js";

/** What `on` still holds that leads to `peer`: routes to its subnets, its FDB entry and neighbors. */
export async function entriesFor(on: TestNode, peer: TestNode, vni = 1): Promise<string[]> {
  const ip = ipIn(on.ns);
  const dev = vtepName(vni);
  const mac = stableVtepMac(peer.name, vni);
  const [routes, fdb, neigh] = await Promise.all([listOwnedRoutes(ip), listFdb(ip, dev), listPermanentNeighbors(ip, dev)]);
  const vtepIps = peer.subnets.map((s) => s.split("/")[0]);
  return [
    ...routes.filter((r) => peer.subnets.includes(r.dst)).map((r) => `route ${r.dst} via ${r.via}`),
    ...fdb.filter((f) => f.mac === mac).map((f) => `fdb ${f.mac} dst ${f.dst}`),
    ...neigh.filter((n) => vtepIps.includes(n.ip)).map((n) => `neigh ${n.ip} ${n.mac}`),
  ];
}
