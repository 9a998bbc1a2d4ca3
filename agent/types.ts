/**
 * The contracts inside twilld. A datastore decides which node owns which pod subnet (the
 * subnet manager); a backend makes packets reach peers' subnets (the datapath). The agent
 * loop joins them: acquire a lease, publish what peers need, reconcile the backend on every
 * change of the peer set, on a timer, and at start-up.
 */

/** Data a backend publishes so peers can reach this node (VXLAN: the VTEP's MAC). */
export interface BackendData {
  type: string;
  vtepMAC?: string;
  vni?: number;
  port?: number;
  /** The node's underlay MTU, so the cluster can agree on the smallest. */
  underlayMTU?: number;
  /**
   * The node's underlay addresses, one per family, the public IP first: host-gw's next hop
   * for pods of the other family on a dual-stack underlay (an IPv6 one may be link-local).
   */
  underlayIPs?: string[];
  /** bgp: the AS this node's announcements originate from (routers mode: its own or its rack's). */
  as?: number;
  /** wireguard: the node's public key (base64, as `wg pubkey` writes it); the private key never leaves the node. */
  wgPublicKey?: string;
  /** wireguard: the UDP port the node's WireGuard device listens on. */
  wgPort?: number;
}

/** One node's claim on the cluster network, as every peer sees it. */
export interface NodeLease {
  nodeName: string;
  /** One CIDR per address family, inside the cluster CIDRs. */
  subnets: string[];
  /** The underlay address peers send to (VXLAN outer destination, host-gw next hop). */
  publicIP: string;
  backend: BackendData;
  /** Unix ms after which the claim lapses unless renewed; absent where the store enforces expiry itself. */
  expiresAt?: number;
  /** Unix ms when the node first claimed these subnets (kept across renewals and restarts). */
  acquiredAt?: number;
}

export interface BackendConfig {
  type: "vxlan" | "host-gw" | "auto" | "bgp" | "wireguard";
  vni: number;
  port: number;
  /** bgp only: how nodes peer, and the AS. */
  bgp?: BgpConfig;
  /** wireguard only: the device's port, keepalive and mode. */
  wireguard?: WireguardConfig;
}

/**
 * The wireguard backend's cluster-wide settings (net-conf `Backend`): `kernel` uses the
 * kernel's WireGuard device, `userspace` wireguard-go (a TUN device), `auto` the kernel's
 * when it has one (issue 24, docs/wireguard-design.md).
 */
export interface WireguardConfig {
  listenPort: number;
  /** Seconds; 0 is off (the mesh has no NAT to keep open). */
  persistentKeepalive: number;
  mode: "auto" | "kernel" | "userspace";
  /**
   * Underlay hosts that are not members (a control plane that runs no twilld, a monitoring
   * host) whose packets may reach pods in clear: canonical CIDRs. Every other packet for a pod
   * arriving on the underlay device is dropped.
   */
  allowUnencryptedFrom: string[];
}

/** A BGP router a node peers with (its top-of-rack): the address and the router's AS. */
export interface BgpRouterConfig {
  address: string;
  as: number;
}

/**
 * The bgp backend's cluster-wide settings (net-conf `Backend`): `mesh`, every node peers with
 * every other in one AS (iBGP); `routers`, every node peers with the routers listed, in its
 * own AS. A node may override the AS and the routers (twilld's --bgp-as, --bgp-routers).
 */
export interface BgpConfig {
  mode: "mesh" | "routers";
  as: number;
  routers: BgpRouterConfig[];
}

/** The cluster network config (a JSON file; a ConfigMap in a cluster), validated. */
export interface NetworkConfig {
  clusterCIDRs: string[];
  /** Prefix length of a node subnet, per family. */
  subnetLen: { 4?: number; 6?: number };
  /** Optional bounds inside the IPv4 cluster CIDR, as flannel's SubnetMin/SubnetMax. */
  subnetMin?: string;
  subnetMax?: string;
  backend: BackendConfig;
  ipMasq: boolean;
}

export interface AcquireRequest {
  nodeName: string;
  publicIP: string;
  backend: BackendData;
  /**
   * Subnets to try first (those of the node's last subnet file). Only a hint: they are
   * claimed atomically like any other, so a stale file can never yield a duplicate (flannel#1182).
   */
  preferredSubnets?: string[];
}

/** A record the datastore holds but cannot decode: a claim (never free) or a node record. */
export interface UnreadableRecord {
  kind: "claim" | "node";
  /** The file path, etcd key or `Lease <namespace>/<name>`. */
  key: string;
  reason: string;
}

export interface SubnetStore {
  /**
   * Claims subnets for the node, or gets back the ones it already holds: a restarted agent
   * keeps its subnets and never takes new ones while the old are still its own.
   */
  acquire(req: AcquireRequest): Promise<NodeLease>;
  /**
   * Keeps the claim alive and republishes the node's data (a changed VTEP MAC, say). Throws
   * LeaseLostError when the claim lapsed and is no longer the node's; the caller acquires again.
   */
  renew(lease: NodeLease): Promise<NodeLease>;
  /** Every live lease, this node's included. */
  list(): Promise<NodeLease[]>;
  /**
   * Calls `onChange` with the full set of live leases whenever it changes, recovering from
   * errors by itself (resume, relist); `onError` reports them. Returns a stop function.
   */
  watch(onChange: (leases: NodeLease[]) => void, onError: (err: Error) => void): () => void;
  /**
   * Records the store holds but could not decode, as of its last read (list, watch, acquire):
   * claims among them count as taken, node records keep their last good view.
   */
  unreadable(): UnreadableRecord[];
  /** Gives the node's subnets back (node removed for good). */
  release(nodeName: string): Promise<void>;
  close(): Promise<void>;
}

/** What the agent knows about its own node when it drives a backend. */
export interface LocalNode {
  nodeName: string;
  publicIP: string;
  underlayDev: string;
  underlayMTU: number;
}

export interface PeerError {
  peer: string;
  message: string;
}

export interface ReconcileReport {
  /** Kernel changes applied this round (0 when already in sync). */
  changes: number;
  /** Peers that cannot be reached by this backend, with the reason (host-gw off-link, ...). */
  errors: PeerError[];
}

export interface Backend {
  readonly type: BackendConfig["type"];
  /** Bytes encapsulation takes from the underlay MTU, for an underlay of this family. */
  overhead(underlayFamily: 4 | 6): number;
  /** Creates node-local devices (the VTEP) and returns what peers need to reach us. */
  prepare(local: LocalNode): Promise<BackendData>;
  /**
   * Makes the kernel match the peer set: adds what is missing, removes everything twill
   * owns that no current peer needs (peers that left while the agent was down too).
   */
  reconcile(local: NodeLease, peers: NodeLease[]): Promise<ReconcileReport>;
  /**
   * A peer event: brings only the entries of the peers named in `changed` (joined, left or
   * changed; `peers` is the whole current set) in line, without reading the kernel.
   */
  reconcilePeers(local: NodeLease, peers: NodeLease[], changed: readonly string[]): Promise<ReconcileReport>;
  /** The underlay device's MTU changed: devices made from it follow at the next reconcile. */
  underlayChanged?(mtu: number): void;
  /** Ends what the backend keeps running (its kernel monitor); the datapath stays. */
  close?(): void;
}
