/**
 * The VXLAN forwarding database: one static entry per peer on the VTEP, the peer's VTEP MAC ->
 * the peer's underlay IP, so the device knows where to send the encapsulated frame. The VTEP
 * runs with `nolearning`: these entries are the whole truth. The peer's MAC comes from its
 * lease (agent/backend/vxlan.ts decides the entry; agent/backend/datapath.ts applies it).
 */

export interface FdbSpec {
  mac: string;
  /** The peer's underlay address: the outer destination. */
  dst: string;
  dev: string;
}
