import type { Family } from "../../shared/net/cidr.js";
import type { Direction } from "./types.js";

/**
 * What the compiler hands on: the policy ruleset of one node as plain data (sets, chains,
 * verdict maps, counters) and what it enforces. ruleset.ts renders it as an `nft -f`
 * transaction; the engine reports from it.
 */

export interface NftSet {
  name: string;
  type: "ipv4_addr" | "ipv6_addr" | "ipv4_addr . inet_proto . inet_service" | "ipv6_addr . inet_proto . inet_service" | "inet_proto" | "inet_proto . inet_service";
  interval: boolean;
  elements: string[];
}

export interface NftChain {
  name: string;
  comment: string;
  rules: string[];
}

/** A verdict map from a pod address to its pod chain. */
export interface PodMap {
  name: `${Direction}${Family}`;
  family: Family;
  elements: [address: string, chain: string][];
}

export interface EnforcedPod {
  pod: string;
  ips: string[];
  /** Policies isolating the pod, per direction; absent: that direction is open. */
  ingress?: string[];
  egress?: string[];
}

export interface DropCounter {
  name: string;
  pod: string;
  direction: Direction;
  comment: string;
}

/** A policy selecting this node's pods that could not be compiled, and why. */
export interface RefusedPolicy {
  policy: string;
  reason: string;
  pods: string[];
}

export interface PolicyPlan {
  sets: NftSet[];
  chains: NftChain[];
  maps: PodMap[];
  counters: DropCounter[];
  /** This node's pods that at least one policy isolates. */
  pods: EnforcedPod[];
  /** Policies selecting at least one of this node's pods. */
  policies: { policy: string; types: Direction[]; pods: string[] }[];
  /** Compiled as allowing nothing: their pods are isolated in their directions, fail closed. */
  refused: RefusedPolicy[];
}

/**
 * From one plan to the next, as the kernel must see it: whole objects that come and go, and
 * within a set or map that stays, the elements that come and go. ruleset.ts renders it as one
 * update transaction; the incremental compiler (incremental.ts) makes it from an event, and
 * diffPlans from two plans.
 */
export interface PlanDelta {
  addSets: NftSet[];
  deleteSets: string[];
  /** Sets in both plans whose elements differ. */
  setElements: { name: string; add: string[]; delete: string[] }[];
  addCounters: DropCounter[];
  deleteCounters: string[];
  addChains: NftChain[];
  /** Chains in both plans whose rules differ: written anew. */
  changeChains: NftChain[];
  deleteChains: string[];
  /** Per verdict map: keys whose entry goes (or changes), and the entries that come. */
  mapElements: { name: PodMap["name"]; add: PodMap["elements"]; delete: string[] }[];
}

export const emptyDelta = (): PlanDelta => ({
  addSets: [],
  deleteSets: [],
  setElements: [],
  addCounters: [],
  deleteCounters: [],
  addChains: [],
  changeChains: [],
  deleteChains: [],
  mapElements: [],
});

export const isEmptyDelta = (d: PlanDelta): boolean => Object.values(d).every((list: unknown[]) => list.length === 0);
