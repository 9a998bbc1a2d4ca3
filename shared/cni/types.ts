/**
 * CNI network configuration and result types (SPEC.md, spec-v1.1.0). Results are held in the
 * 1.1.0 shape internally; shared/cni/version.ts converts to and from the shape of the version
 * a runtime asked for.
 */

export interface IpamConf {
  type: string;
  [key: string]: unknown;
}

export interface DnsConf {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  ipam?: IpamConf;
  dns?: DnsConf;
  prevResult?: unknown;
  runtimeConfig?: Record<string, unknown>;
  args?: { cni?: Record<string, unknown>; [key: string]: unknown };
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface IpConfig {
  /** CIDR form: the address with the prefix length of its subnet. */
  address: string;
  gateway?: string;
  /** Index into `interfaces`; absent in IPAM results. */
  interface?: number;
}

export interface Route {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IpConfig[];
  routes?: Route[];
  dns?: DnsConf;
}

/** One attachment as the runtime names it in GC's `cni.dev/valid-attachments`. */
export interface Attachment {
  containerID: string;
  ifname: string;
}
