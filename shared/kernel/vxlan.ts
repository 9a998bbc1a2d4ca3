import { createHash } from "node:crypto";
import { localMac } from "../digest.js";
import { formatAddress, formatIp, parseCidr } from "../net/cidr.js";
import { ensureFeaturesOff } from "./ethtool.js";
import type { LinkSettings, NodeKernel } from "./node-kernel.js";
import { KernelError, wrongKind, type Address, type Link } from "./types.js";
import { sameIp } from "./routes.js";

/**
 * The node's VXLAN tunnel endpoint (VTEP). Peers address it by its MAC, which they learn from
 * the datastore, so the MAC must not change behind their back: it is derived from the node name
 * and set explicitly, and a device recreated after a reboot or a deletion gets the same one
 * (flannel#1795: peers kept a stale MAC after flannel.1 came back with a new random one).
 */

export interface VxlanSpec {
  name: string;
  vni: number;
  port: number;
  /** The underlay address the tunnel is sourced from (the node's public IP). */
  local: string;
  /** The underlay device. */
  dev: string;
  mac: string;
  mtu: number;
  /**
   * Addresses on the device, `<node subnet network>/32` (`/128`); undefined leaves them as they
   * are (before the lease is known, a restarted agent must not drop what traffic uses).
   */
  addresses?: string[];
}

/** The VTEP device name for a VNI. */
export const vtepName = (vni: number): string => `twill.${vni}`;

/** A locally administered unicast MAC that depends only on the node name and the VNI. */
export function stableVtepMac(nodeName: string, vni: number): string {
  // SHA-256, not the plugin's digest: peers hold this MAC, so it must not change (shared/digest.ts).
  return localMac(createHash("sha256").update(`twill-vtep/${vni}/${nodeName}`).digest());
}

/**
 * Why the existing link cannot serve as the VTEP and must be recreated (a VXLAN's VNI, port,
 * source and underlay cannot be changed in place), or null when it can.
 */
export function vtepMismatch(link: Link, spec: VxlanSpec): string | null {
  const notVxlan = wrongKind(link, "vxlan", `"${spec.name}"`, "vxlan");
  if (notVxlan) return notVxlan;
  const d = link.vxlan;
  if (!d) return `no VXLAN settings, want VNI ${spec.vni}`;
  if (d.vni !== spec.vni) return `VNI ${d.vni}, want ${spec.vni}`;
  if (d.port !== spec.port) return `port ${d.port}, want ${spec.port}`;
  if (!d.local || !sameIp(d.local, spec.local)) return `local ${d.local ?? "(none)"}, want ${spec.local}`;
  if (d.underlay !== spec.dev) return `underlay ${d.underlay ?? "(none)"}, want ${spec.dev}`;
  if (d.learning) return "learning is on, want nolearning";
  return null;
}

/** One change that brings an existing VTEP towards its spec. */
export type VtepChange = { op: "set-link"; settings: LinkSettings } | { op: "del-address" | "add-address"; cidr: string };

/**
 * The changes that bring an existing, compatible VTEP to `spec`: MAC, MTU, addresses, up. A
 * device without a MAC of its own (the WireGuard device, a TUN) passes none.
 */
export function planVtepSettings(link: Link, addrs: readonly Address[], spec: Pick<VxlanSpec, "name" | "mtu" | "addresses"> & { mac?: string }): VtepChange[] {
  const changes: VtepChange[] = [];
  const settings: LinkSettings = { dev: spec.name };
  if (spec.mac !== undefined && link.mac !== spec.mac) settings.mac = spec.mac;
  if (link.mtu !== spec.mtu) settings.mtu = spec.mtu;
  if (settings.mac !== undefined || settings.mtu !== undefined) changes.push({ op: "set-link", settings });
  if (!link.up) changes.push({ op: "set-link", settings: { dev: spec.name, up: true } });
  if (!spec.addresses) return changes;
  const want = new Set(spec.addresses.map(canonicalAddress));
  const have = new Set(
    addrs.filter((a) => a.scope !== "link").map((a) => canonicalAddress(`${a.ip}/${a.prefixLength}`)),
  );
  for (const a of have) if (!want.has(a)) changes.push({ op: "del-address", cidr: a });
  for (const a of want) if (!have.has(a)) changes.push({ op: "add-address", cidr: a });
  return changes;
}

async function applyVtepChange(kernel: NodeKernel, dev: string, c: VtepChange): Promise<void> {
  const op = `configure VXLAN device "${dev}"`;
  if (c.op === "set-link") return kernel.setLink(c.settings, op);
  if (c.op === "del-address") return kernel.deleteAddress(dev, c.cidr, op);
  return kernel.replaceAddress(dev, c.cidr, op);
}

export interface VtepResult {
  /** Kernel changes made (0 when the device was already right). */
  changes: number;
  /** Set when an incompatible device was deleted and created again, with the reason. */
  recreated?: string;
  created: boolean;
  /** Why the offloads in VTEP_OFFLOADS_OFF could not be turned off (the device works, maybe stalling). */
  offloadWarning?: string;
}

/**
 * Offloads the VTEP runs without. With TX checksum offload, kernels before 5.7 send VXLAN
 * packets with a bad UDP checksum once the inner packet went through MASQUERADE
 * --random-fully (kube-proxy's): the receiver drops them and a TCP connection gets through
 * only after its SYN's retries, 63 s (flannel#1279, calico#3145). Some NATed underlays break
 * it on newer kernels too. Turning it off also turns off TSO on the VTEP (GSO still batches).
 */
export const VTEP_OFFLOADS_OFF = ["tx-checksum-ip-generic"] as const;

/**
 * The ifindex of the VTEP whose offloads were last seen to, per handle and device name: the
 * features live as long as the device, so they are read once per device, not once per round.
 */
const offloadsSeen = new WeakMap<NodeKernel, Map<string, number>>();

/** Creates the VTEP or brings it to `spec`, recreating it when it cannot be changed in place. */
export async function ensureVtep(kernel: NodeKernel, spec: VxlanSpec): Promise<VtepResult> {
  let link = await kernel.link(spec.name);
  let recreated: string | undefined;
  let created = false;
  let changes = 0;
  if (link) {
    recreated = vtepMismatch(link, spec) ?? undefined;
    if (recreated) {
      await kernel.deleteLink(spec.name, "VTEP");
      link = null;
      changes++;
    }
  }
  if (!link) {
    try {
      await kernel.createVxlan(spec);
      created = true;
      changes++;
    } catch (err) {
      // Another writer made it first: fine if it is what we want, checked below.
      if (!(err instanceof KernelError && err.exists)) throw err;
    }
    link = await kernel.link(spec.name);
    if (!link) throw new KernelError(`read VXLAN device "${spec.name}"`, "device vanished after create");
    const still = vtepMismatch(link, spec);
    if (still) throw new KernelError(`create VXLAN device "${spec.name}"`, `device exists with other settings: ${still}`);
  }
  const [addrs] = await kernel.addrs(spec.name);
  const settings = planVtepSettings(link, addrs?.addresses ?? [], spec);
  for (const c of settings) await applyVtepChange(kernel, spec.name, c);
  changes += settings.length;
  const offload = await ensureVtepOffloads(kernel, spec.name, link.index);
  changes += offload.changes;
  return {
    changes, created, ...(recreated ? { recreated } : {}), ...(offload.warning ? { offloadWarning: offload.warning } : {}),
  };
}

/**
 * Turns VTEP_OFFLOADS_OFF off on a VTEP not seen to before. A failure (no ethtool, a driver
 * that refuses) is reported, not thrown: with the offload on, the tunnel still works on most
 * kernels, while failing here would leave the node without a VTEP on all of them. It is not
 * retried on that device.
 */
async function ensureVtepOffloads(kernel: NodeKernel, dev: string, ifindex: number): Promise<{ changes: number; warning?: string }> {
  let seen = offloadsSeen.get(kernel);
  if (!seen) offloadsSeen.set(kernel, (seen = new Map()));
  if (seen.get(dev) === ifindex) return { changes: 0 };
  seen.set(dev, ifindex);
  try {
    return { changes: (await ensureFeaturesOff(kernel, dev, VTEP_OFFLOADS_OFF)).length };
  } catch (err) {
    return { changes: 0, warning: err instanceof Error ? err.message : String(err) };
  }
}

/** The VTEP address for a node subnet: its network address as a host address. */
export function vtepAddress(subnet: string): string {
  const c = parseCidr(subnet);
  return `${formatIp(c.family, c.network)}/${c.family === 4 ? 32 : 128}`;
}

const canonicalAddress = (a: string): string => formatAddress(parseCidr(a));
