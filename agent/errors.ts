/**
 * The agent's errors, each with a stable code, which main logs beside the message before a
 * non-zero exit. What ends twilld is decided by where an error is thrown, not by its class: a
 * config that cannot work (ConfigError) and a missing underlay (UnderlayError) fail before or
 * during start-up. Once the lease loop runs it retries every error (acquire with backoff,
 * renew on the next period, reconcile on the next resync) and tells only LeaseLostError apart:
 * it acquires again instead of renewing.
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
