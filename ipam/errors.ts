import type { CodeNumber } from "../shared/cni/errors.js";

/**
 * twill-ipam's own error codes, from the plugin-specific space (SPEC.md reserves 0-99).
 * None of these is 11 ("try again later"): an exhausted pool or a taken address stays so until
 * pods are deleted or the config changes, and a runtime that retries on 11 would only spin.
 * Nor is exhaustion 5 (I/O failure): nothing failed to read or write, and a runtime or an
 * operator should be able to tell a full pool from a broken disk by the code alone.
 */
export const IpamCode = {
  /** No free address left in a range set. */
  PoolExhausted: 110 as CodeNumber,
  /** ADD for an attachment that already holds an address (a second ADD without DEL). */
  DuplicateAllocation: 111 as CodeNumber,
  /** A requested address (runtimeConfig.ips, args.cni.ips, IP=) is held by another attachment. */
  AddressTaken: 112 as CodeNumber,
  /** CHECK: the attachment holds no address, or not the one its result names. */
  NotReserved: 113 as CodeNumber,
};
