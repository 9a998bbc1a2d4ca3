/**
 * The agent's errors, each with a stable code. main maps any of them to a message and a
 * non-zero exit; the run loop tells the retryable ones (pool exhausted, store unreachable)
 * from the fatal ones (a config that cannot work).
 */

export type AgentErrorCode =
  | "CONFIG_INVALID"
  | "POOL_EXHAUSTED"
  | "LEASE_LOST"
  | "DATASTORE"
  | "UNDERLAY";

export class AgentError extends Error {
  constructor(
    readonly code: AgentErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "AgentError";
  }
}

/** The network config cannot be used; names the field and the value. */
export class ConfigError extends AgentError {
  constructor(message: string) {
    super("CONFIG_INVALID", message);
    this.name = "ConfigError";
  }
}

/** Every node subnet of a cluster CIDR (within SubnetMin..SubnetMax) is claimed. */
export class PoolExhaustedError extends AgentError {
  constructor(readonly clusterCIDR: string, readonly subnetLen: number) {
    super("POOL_EXHAUSTED", `no free /${subnetLen} subnet left in ${clusterCIDR}: every node subnet is claimed`);
    this.name = "PoolExhaustedError";
  }
}

/** The node's claim lapsed and its subnet is no longer its own (or the store lost it). */
export class LeaseLostError extends AgentError {
  constructor(readonly nodeName: string, why: string) {
    super("LEASE_LOST", `lease of node "${nodeName}" lost: ${why}`);
    this.name = "LeaseLostError";
  }
}

export class DatastoreError extends AgentError {
  constructor(op: string, why: string) {
    super("DATASTORE", `datastore: failed to ${op}: ${why}`);
    this.name = "DatastoreError";
  }
}

export class UnderlayError extends AgentError {
  constructor(message: string) {
    super("UNDERLAY", message);
    this.name = "UnderlayError";
  }
}

export const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));
