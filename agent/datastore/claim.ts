import { formatCidr, parseCidr, type Cidr } from "../../shared/net/cidr.js";
import { inPool, pickSubnet, poolsOf, type Pool } from "../allocate.js";
import { DatastoreError, PoolExhaustedError } from "../errors.js";
import type { NetworkConfig } from "../types.js";

/**
 * The claim loop both claim-based datastores share: for each family's pool keep the subnet
 * the node already holds, else try the preferred ones, else pick a free one and claim it
 * atomically, picking again after every lost race. The store supplies what "hold" and
 * "claim" mean (a file, an etcd key); this decides what to try next.
 */

export interface ClaimOps {
  /** Subnets whose claims are live (owned by anyone) right now. */
  taken: Cidr[];
  /** Subnets whose claims name this node, live or lapsed-but-not-taken-over. */
  own: string[];
  /**
   * Claims one subnet atomically: true when it is now this node's (also when it already was:
   * the claim is refreshed), false when someone else holds it.
   */
  claim(subnet: string): Promise<boolean>;
  /** Gives a subnet back when the claim still names this node. */
  drop(subnet: string): Promise<void>;
}

export function requirePools(network: NetworkConfig | undefined): Pool[] {
  if (!network) throw new DatastoreError("acquire a subnet", "no network config given");
  return poolsOf(network);
}

/**
 * One subnet per pool, in pool order. On PoolExhaustedError (naming the full pool) the
 * subnets this call newly claimed go back; on success so do the node's claims that no pool
 * wants any more (an older subnet length or cluster CIDR).
 */
export async function claimSubnets(
  pools: readonly Pool[],
  nodeName: string,
  preferred: readonly string[],
  ops: ClaimOps,
): Promise<string[]> {
  const claimed: string[] = [];
  let subnets: string[];
  try {
    subnets = await claimEach(pools, nodeName, preferred, ops, claimed);
  } catch (err) {
    await Promise.allSettled(claimed.map((s) => ops.drop(s)));
    throw err;
  }
  await Promise.allSettled(ops.own.filter((s) => !subnets.includes(s)).map((s) => ops.drop(s)));
  return subnets;
}

async function claimEach(
  pools: readonly Pool[],
  nodeName: string,
  preferred: readonly string[],
  ops: ClaimOps,
  claimed: string[],
): Promise<string[]> {
  const result: string[] = [];
  for (const pool of pools) {
    const taken = [...ops.taken];
    let got: string | undefined;
    // The node's own claims first (a restart keeps its subnet), then the hinted ones.
    for (const candidate of [...ops.own, ...preferred]) {
      const c = parseCidr(candidate);
      if (!inPool(pool, c)) continue;
      if (await ops.claim(candidate)) {
        got = candidate;
        break;
      }
      taken.push(c);
    }
    while (got === undefined) {
      const pick = pickSubnet(pool, taken, nodeName);
      if (pick === null) throw new PoolExhaustedError(formatCidr(pool.cluster), pool.subnetLen);
      const text = formatCidr(pick);
      if (await ops.claim(text)) got = text;
      else taken.push(pick);
    }
    if (!ops.own.includes(got)) claimed.push(got);
    result.push(got);
  }
  return result;
}
