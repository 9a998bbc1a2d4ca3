import { ensureVtep, stableVtepMac, vtepAddress, vtepName, type VxlanSpec } from "../../shared/kernel/vxlan.js";
import { familyOfText, formatIp, parseCidr, type Family } from "../../shared/net/cidr.js";
import { hostGwPath } from "./host-gw.js";
import { canonical, type BackendKind, type DeviceContext, type PathFinder, type PeerPath } from "./kind.js";
import { emptyState } from "./plan.js";

/**
 * vxlan: one VTEP per node (shared/kernel/vxlan.ts), and per peer one FDB entry (the peer's
 * VTEP MAC -> its underlay IP) plus, per peer subnet, a permanent neighbor and an onlink
 * route via the peer's VTEP address. Works across L3 boundaries; costs the encapsulation in MTU.
 */

/** Outer IPv4 20 (IPv6 40) + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const vxlanOverhead = (underlayFamily: Family): number => (underlayFamily === 4 ? 50 : 70);

export const vxlanPath: PathFinder = (peer, view) => {
  const path: PeerPath = { route: "vxlan", entries: emptyState(), errors: [] };
  const fail = (why: string): PeerPath => ({ ...path, route: null, errors: [`peer ${peer.nodeName}: ${why}`] });
  const vtep = view.vtep;
  if (!vtep) return fail("this node has no VXLAN device");
  const mac = peer.backend.vtepMAC?.toLowerCase();
  if (!mac) {
    // A peer on host-gw (the cluster switching backend, node by node) routes to us directly;
    // on the same segment we answer in kind, so neither side black-holes while they differ.
    if (peer.backend.type === "host-gw") {
      const direct = hostGwPath(peer, view);
      if (direct.errors.length === 0) return direct;
    }
    return fail(`publishes no VTEP MAC (its backend is ${peer.backend.type}); it cannot be reached over VXLAN yet`);
  }
  if (peer.backend.vni !== undefined && peer.backend.vni !== vtep.vni) {
    return fail(`uses VNI ${peer.backend.vni}, this node ${vtep.vni}`);
  }
  if (peer.backend.port !== undefined && peer.backend.port !== vtep.port) {
    return fail(`uses VXLAN port ${peer.backend.port}, this node ${vtep.port}`);
  }
  if (familyOfText(peer.publicIP) !== familyOfText(view.local.publicIP)) {
    return fail(`underlay address ${peer.publicIP} is not of the family of this node's ${view.local.publicIP}`);
  }
  // The peer's FDB entry: frames for its VTEP MAC go, encapsulated, to its underlay address.
  path.entries.fdb.push({ mac, dst: peer.publicIP, dev: vtep.dev });
  for (const subnet of peer.subnets) {
    const c = parseCidr(subnet);
    const vtepIp = formatIp(c.family, c.network);
    path.entries.neighbors.push({ ip: vtepIp, mac, dev: vtep.dev });
    path.entries.routes.push({ dst: canonical(subnet), via: vtepIp, dev: vtep.dev, onlink: true });
  }
  return path;
};

/** The VTEP's hooks, shared by vxlan and auto. */
export const vtepDevice: Pick<BackendKind, "prepare" | "ensureDevice"> = {
  async prepare(ctx) {
    const spec = vtepSpec(ctx, undefined);
    const result = await ensureVtep(ctx.kernel, spec);
    if (result.recreated) ctx.logger.warn("Recreated VXLAN device with other settings", { device: spec.name, reason: result.recreated });
    warnOffload(ctx, spec.name, result.offloadWarning);
    return { vtepMAC: spec.mac, vni: spec.vni, port: spec.port };
  },
  async ensureDevice(ctx, subnets) {
    const spec = vtepSpec(ctx, subnets);
    // Each round, so a VTEP deleted or altered under a running agent comes back (with the
    // same MAC, so peers' entries stay right) and its routes with it.
    const result = await ensureVtep(ctx.kernel, spec);
    if (result.created) ctx.logger.warn("Created missing VXLAN device", { device: spec.name, ...(result.recreated ? { reason: result.recreated } : {}) });
    warnOffload(ctx, spec.name, result.offloadWarning);
    return { vtep: { dev: spec.name, vni: spec.vni, port: spec.port }, changes: result.changes };
  },
};

/** The VTEP works with the offload on; only kernels before 5.7 stall on it (README). */
function warnOffload(ctx: DeviceContext, device: string, warning: string | undefined): void {
  if (warning) ctx.logger.warn("Could not turn off TX checksum offload on the VXLAN device", { device, error: warning });
}

export const vxlan: BackendKind = { type: "vxlan", overhead: vxlanOverhead, reach: vxlanPath, ...vtepDevice };

function vtepSpec({ network, local }: DeviceContext, subnets: readonly string[] | undefined): VxlanSpec {
  const { vni, port } = network.backend;
  return {
    name: vtepName(vni),
    vni,
    port,
    local: local.publicIP,
    dev: local.underlayDev,
    mac: stableVtepMac(local.nodeName, vni),
    mtu: local.underlayMTU - vxlanOverhead(familyOfText(local.publicIP)),
    ...(subnets ? { addresses: subnets.map(vtepAddress) } : {}),
  };
}
