/**
 * What the kernel reader (shared/kernel/netlink/flow-events.ts) hands over: conntrack events
 * and packets the policy table sent to its nflog group. The contract, kept here until that
 * module exports these same shapes; then this file goes and the imports point there.
 */

export type FlowProtocol = "TCP" | "UDP" | "SCTP" | "ICMP" | "ICMPv6" | `proto-${number}`;

/** A conntrack entry confirmed ("new") or destroyed ("end"). */
export interface ConntrackEvent {
  kind: "new" | "end";
  id: number | null;
  family: 4 | 6;
  protocol: FlowProtocol;
  /** The original direction, as the client sent it. */
  src: string;
  dst: string;
  sport: number | null;
  dport: number | null;
  /** The reply direction: NAT shows here (a Service's DNAT gives replySrc = the backend pod). */
  replySrc: string;
  replyDst: string;
  replySport: number | null;
  replyDport: number | null;
  /** [original, reply], when the kernel counts (nf_conntrack_acct). */
  packets: [number, number] | null;
  bytes: [number, number] | null;
}

/** A packet a pod chain denied, as its nflog group hands it on; `prefix` is the drop counter's name. */
export interface DroppedPacket {
  prefix: string;
  family: 4 | 6;
  protocol: FlowProtocol;
  src: string;
  dst: string;
  sport: number | null;
  dport: number | null;
  inIfindex: number | null;
  outIfindex: number | null;
}
