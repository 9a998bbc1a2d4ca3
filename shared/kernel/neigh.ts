/**
 * The permanent neighbors behind VXLAN peers: peer VTEP IP -> VTEP MAC on the VTEP device, so
 * the kernel never ARPs across the overlay. The FDB entry that goes with each is in fdb.ts.
 */

export interface NeighSpec {
  ip: string;
  mac: string;
  dev: string;
}
