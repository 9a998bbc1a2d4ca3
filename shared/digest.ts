/**
 * The stable hashes behind what twill derives instead of choosing at random, and the one way
 * a MAC is made from hash bytes ({@link localMac}). There are three hashes, and each stays:
 * its outputs are already on nodes, and a new function would change them on upgrade.
 * - {@link digest}: the plugin's veth names, index file names and bridge, veth and pod MACs
 *   (plugins/twill/names.ts). Cheap in a fresh Bun process, where every ADD starts.
 * - SHA-256 for the VTEP MAC (shared/kernel/vxlan.ts, `stableVtepMac`): every peer holds it
 *   in its FDB and neighbor entries, from the node's lease; a new value would break VXLAN to
 *   the node until every peer reprogrammed it.
 * - FNV-1a 64 of the node name (agent/allocate.ts, `nameHash`): where a node's search for a
 *   free subnet starts; a new value would move which subnet a new node is given first.
 */

/** A short stable digest for names derived from container IDs (veth names, index file names). */

/**
 * 8 bytes from two 32-bit FNV-1a lanes (different primes) over the UTF-16 code units, each
 * finalized with MurmurHash3's fmix32 so the high bits, which names use, depend on every
 * character. Not for secrets: names only need to be stable and spread. Plain 32-bit integer
 * math on purpose: the plugin derives names on every start, and in a fresh process loading
 * node:crypto, BigInt arithmetic and the first Buffer each cost more than the whole hash.
 */
export function digest(seed: string): number[] {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < seed.length; i++) {
    const x = seed.charCodeAt(i);
    a = Math.imul(a ^ x, 0x01000193);
    b = Math.imul(b ^ x, 0x5bd1e995);
  }
  const hi = fmix32(a);
  const lo = fmix32(b ^ a);
  return [hi >>> 24, (hi >>> 16) & 255, (hi >>> 8) & 255, hi & 255, lo >>> 24, (lo >>> 16) & 255, (lo >>> 8) & 255, lo & 255];
}

/** A locally administered unicast MAC (`x2:..`) from the first six bytes of a hash. */
export function localMac(hash: ArrayLike<number>): string {
  return formatMac([(hash[0]! & 0xfc) | 0x02, hash[1]!, hash[2]!, hash[3]!, hash[4]!, hash[5]!]);
}

// The MAC and hex texts are plain loops: in a fresh process, where every ADD runs them,
// Array.from and map with a callback cost several times the loop.
const byteHex = (x: number): string => (x < 16 ? "0" : "") + x.toString(16);

export function formatMac(bytes: ArrayLike<number>): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += (i > 0 ? ":" : "") + byteHex(bytes[i]!);
  return out;
}

export function hex(bytes: readonly number[]): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += byteHex(bytes[i]!);
  return out;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
