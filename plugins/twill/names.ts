import { digest, formatMac, hex, localMac } from "../../shared/digest.js";
import { parseCidr } from "../../shared/net/cidr.js";

export { digest };

/**
 * Names and MACs twill derives instead of choosing at random, so DEL and CHECK find the node end
 * of a pod's veth from the container ID and interface name alone (no prevResult needed), and ADD
 * never has to read a MAC back from the kernel.
 */

/** "veth" + 11 hex digits: 15 characters, the longest name Linux allows. */
export const hostVethName = (containerId: string, ifname: string): string =>
  `veth${hex(digest(`${containerId}/${ifname}`)).slice(0, 11)}`;

/** A locally administered unicast MAC that depends only on `seed`. */
export const seededMac = (seed: string): string => localMac(digest(seed));

export const bridgeMac = (bridge: string): string => seededMac(`twill-bridge/${bridge}`);

export const hostVethMac = (containerId: string, ifname: string): string => seededMac(`twill-host/${containerId}/${ifname}`);

/**
 * The pod interface's MAC when nobody chose one: `0a:58:` + the IPv4 address. A reused IP then
 * comes back with the same MAC, so neighbors' ARP entries for it stay right instead of sending
 * to a dead MAC until they expire (plugins#858). Without IPv4, a MAC seeded by the attachment.
 */
export function podMac(addresses: readonly string[], containerId: string, ifname: string): string {
  for (const a of addresses) {
    const c = parseCidr(a);
    if (c.family !== 4) continue;
    const v = Number(c.ip);
    return formatMac([0x0a, 0x58, (v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255]);
  }
  return seededMac(`twill-pod/${containerId}/${ifname}`);
}
