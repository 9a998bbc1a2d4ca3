import { chmodSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BackendConfig, NetworkConfig } from "../../agent/types.js";
import { nullLogger, type Logger } from "../../shared/log.js";
import { releaseSync, trackResources, untrack, type Resources } from "./cleanup.js";
import { InprocAgents } from "./inproc-agents.js";
import { TwilldCluster } from "./twilld-agent.js";
import { addNetns, deleteNetns, ipIn, listNetns } from "../../testkit/netns.js";
import { podNetConf, resultIps, runCni, type PluginKind } from "../../testkit/pods.js";
import { attachNode, createUnderlay, SEGMENTS, type Segment, type Underlay, type UnderlayFamily, type UnderlayOptions } from "./topology.js";
import { startEcho, type EchoServer } from "./traffic.js";
import { wireguardDir, wireguardKeyFile } from "./wireguard-node.js";
import { listOwnedRoutes } from "../../testkit/iproute.js";
import { until } from "../../testkit/until.js";
import { ROUTER_AS, startFrrRouter, type FrrRouter } from "./frr-router.js";

/**
 * A cluster on one machine, made of network namespaces: an underlay switch and router, N node
 * namespaces running the node agent, pods attached by the real CNI plugin. Names carry a
 * per-run prefix; destroy() (also run on SIGINT/SIGTERM and exit) removes every namespace,
 * process and temp dir. The machine's own namespace is never changed.
 */

export interface TestbedOptions {
  nodes?: number;
  backend?: BackendConfig["type"];
  /**
   * bgp backend: `routers` (the default) makes the underlay's router a BGP router (FRR, AS
   * 65000) and every node peer with its segment's leg of it in an AS of its own (65000 + its
   * number); `mesh` peers the nodes with each other (iBGP, AS 64512).
   */
  bgpMode?: "mesh" | "routers";
  /** 1-based node numbers placed on segment "b", behind the router. */
  remoteNodes?: number[];
  /**
   * The address families of nodes and pods: 4 (the default), 6 (IPv6-only underlay, nodes and
   * pods) or "dual" (dual-stack underlay, IPv4 primary, and dual-stack pods).
   */
  ipFamily?: IpFamily;
  /** Dual-stack only: nodes have link-local IPv6 addresses only (host-gw's link-local next hops). */
  linkLocal6?: boolean;
  /** IPv4 cluster CIDR, split into /24 node subnets. */
  clusterCIDR?: string;
  /** Also give every node an IPv6 /64 from this CIDR (dual-stack pods) on an IPv4 underlay. */
  clusterCIDRv6?: string;
  ipMasq?: boolean;
  underlayMTU?: number;
  plugin?: PluginKind;
  /** Agent resync period (the agent's default is 10 s). */
  resyncMs?: number;
  /**
   * `twilld`: the real agent executable in each node namespace (local datastore shared by all);
   * `inproc`: the real agent loop run in this process, on an in-memory datastore (lets a test
   * read each reconcile report).
   */
  agent?: "twilld" | "inproc";
  /** Progress lines (the demo prints them). */
  progress?: (msg: string) => void;
  logger?: Logger;
  prefix?: string;
}

export interface TestNode {
  /** Node name in the cluster (`node-1`). */
  name: string;
  index: number;
  ns: string;
  segment: Segment;
  /** Underlay address (the node's public IP). */
  ip: string;
  /** Its IPv6 underlay address beside an IPv4 public IP (dual-stack underlay). */
  ip6?: string;
  subnets: string[];
  dir: string;
  subnetFile: string;
  /** More flags for its twilld. */
  args?: string[];
}

export interface Pod {
  name: string;
  ns: string;
  node: TestNode;
  containerId: string;
  ips: string[];
  echo?: EchoServer;
}

export type IpFamily = UnderlayFamily;
/** The bgp testbed's nodes' AS in a mesh; in routers mode node N's is the router's (ROUTER_AS) + N. */
export const BGP_MESH_AS = 64512;
export const DEFAULT_CLUSTER_CIDR6 = "fd00:10:244::/56";
/** The wireguard testbed's WireGuard port (every node's). */
export const WIREGUARD_PORT = 51820;

let counter = 0;
/** A prefix unique to this process and testbed: `tw<pid base36><n>-`. */
export const runPrefix = (): string => `tw${process.pid.toString(36)}${(counter++).toString(36)}-`;

export class Testbed {
  readonly nodes: TestNode[] = [];
  readonly pods: Pod[] = [];
  readonly network: NetworkConfig;
  /** The agents, when run in-process (`agent: "inproc"`). */
  readonly inproc: InprocAgents | null = null;
  /** The agents, when run as twilld processes. */
  readonly twilld: TwilldCluster | null = null;
  underlay!: Underlay;
  /** The underlay's router speaking BGP (FRR), for the bgp backend in routers mode. */
  router: FrrRouter | null = null;

  private constructor(
    readonly prefix: string,
    readonly dir: string,
    readonly plugin: PluginKind,
    private readonly res: Resources,
    network: NetworkConfig,
    agent: "twilld" | "inproc",
    logger: Logger,
    resyncMs: number,
    private readonly progress: (msg: string) => void,
  ) {
    this.network = network;
    if (agent === "inproc") this.inproc = new InprocAgents(network, logger, resyncMs);
    else this.twilld = new TwilldCluster(network, dir, res, resyncMs);
  }

  static async create(o: TestbedOptions = {}): Promise<Testbed> {
    const prefix = o.prefix ?? runPrefix();
    const res = trackResources();
    const dir = mkdtempSync(join(tmpdir(), prefix));
    res.dirs.add(dir);
    const family = o.ipFamily ?? 4;
    const v4 = family === 6 ? null : (o.clusterCIDR ?? "10.244.0.0/16");
    const v6 = family === 4 ? (o.clusterCIDRv6 ?? null) : (o.clusterCIDRv6 ?? DEFAULT_CLUSTER_CIDR6);
    const network: NetworkConfig = {
      clusterCIDRs: [v4, v6].filter((c) => c !== null),
      subnetLen: { ...(v4 ? { 4: 24 } : {}), ...(v6 ? { 6: 64 } : {}) },
      backend: {
        type: o.backend ?? "vxlan", vni: 1, port: 4789,
        ...(o.backend === "bgp" ? { bgp: { mode: o.bgpMode ?? "routers", as: BGP_MESH_AS, routers: [] } } : {}),
        ...(o.backend === "wireguard" ? { wireguard: { listenPort: WIREGUARD_PORT, persistentKeepalive: 0, mode: "auto" as const, allowUnencryptedFrom: [] } } : {}),
      },
      ipMasq: o.ipMasq ?? true,
    };
    const progress = o.progress ?? (() => {});
    const tb = new Testbed(
      prefix, dir, o.plugin ?? "twill", res, network, o.agent ?? "twilld", o.logger ?? nullLogger, o.resyncMs ?? 10_000, progress,
    );
    try {
      await tb.build(o.nodes ?? 3, new Set(o.remoteNodes ?? []), {
        mtu: o.underlayMTU ?? 1500, family, ...(o.linkLocal6 ? { linkLocal6: true } : {}),
      });
    } catch (err) {
      await tb.destroy();
      throw err;
    }
    return tb;
  }

  private async build(count: number, remote: Set<number>, underlay: UnderlayOptions): Promise<void> {
    const segments: Segment[] = remote.size ? ["a", "b"] : ["a"];
    const fam = underlay.family === "dual" ? "dual-stack" : `IPv${underlay.family}`;
    this.progress(`underlay (${fam}): switch and router (${segments.map((s) => `segment ${s}`).join(", ")})`);
    this.underlay = await createUnderlay(this.prefix, underlay, segments, this.res);
    if (this.network.backend.bgp?.mode === "routers") {
      // FRR runs as user frr, which must enter the testbed's directory (made 0700) to reach its own.
      chmodSync(this.dir, 0o711);
      this.router = await startFrrRouter(
        { ns: this.underlay.routerNs, dir: join(this.dir, "frr"), family: underlay.family, segments, clusterCIDRs: this.network.clusterCIDRs, subnetLen: this.network.subnetLen },
        this.res,
      );
      this.progress(`router: FRR (bgpd + zebra), AS ${ROUTER_AS}, accepting BGP from every node of ${segments.map((s) => `segment ${s}`).join(" and ")}`);
    }
    for (let i = 1; i <= count; i++) {
      const segment: Segment = remote.has(i) ? "b" : "a";
      const u = await attachNode(this.underlay, `${this.prefix}n${i}`, i, segment, this.res);
      const dir = join(this.dir, `node-${i}`);
      mkdirSync(dir, { recursive: true });
      this.nodes.push({
        name: `node-${i}`, index: i, ns: u.ns, segment, ip: u.ip, ...(u.ip6 ? { ip6: u.ip6 } : {}),
        ...(this.network.backend.bgp?.mode === "routers" ? { args: bgpRouterArgs(i, segment, underlay.family) } : {}),
        // Nodes share this machine's filesystem: each wireguard-go's socket in the node's own directory.
        ...(this.network.backend.wireguard ? { args: ["--wireguard-dir", wireguardDir({ dir }), "--wireguard-key", wireguardKeyFile({ dir })] } : {}),
        // Known once its agent holds a lease.
        subnets: [],
        dir, subnetFile: join(dir, "subnet.json"),
      });
      this.progress(`node-${i}: ${[u.ip, u.ip6].filter(Boolean).join(" ")} on segment ${segment}`);
    }
  }

  node(name: string): TestNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name} in the testbed`);
    return n;
  }

  /** Starts the agent on every node (or the given ones); a node's subnets are known after. */
  async startAgents(nodes: readonly TestNode[] = this.nodes): Promise<void> {
    for (const n of nodes) {
      n.subnets = await (this.twilld ?? this.inproc!).start(n);
      this.progress(`${n.name}: agent running, subnets ${n.subnets.join(", ")}`);
    }
    await this.inproc?.settled();
  }

  /**
   * Waits until every node (of `nodes`) has a twill route to every other one's subnets: what
   * the bgp backend installs once BGP has converged (the others program theirs at once).
   * Returns how long it took.
   */
  async routesConverged(nodes: readonly TestNode[] = this.nodes, deadlineMs = 30_000): Promise<number> {
    const start = Date.now();
    await until("every node routes every other node's subnets", async () => {
      for (const n of nodes) {
        const want = nodes.filter((o) => o !== n).flatMap((o) => o.subnets).sort();
        const have = (await listOwnedRoutes(this.ip(n))).map((r) => r.dst).sort();
        if (have.join() !== want.join()) return false;
      }
      return true;
    }, deadlineMs);
    return Date.now() - start;
  }

  /** Stops a node's agent; lease, subnet file and datapath stay. */
  async stopAgent(node: TestNode): Promise<void> {
    await (this.twilld ?? this.inproc!).stop(node.name);
  }

  /** The node leaves the cluster: its agent stops and its lease is released (`twilld leave`). */
  async leave(node: TestNode): Promise<void> {
    if (this.twilld) await this.twilld.leave(node);
    else await this.inproc!.leave(node.name);
    await this.inproc?.settled();
  }

  /**
   * A pod on `node`, attached by the CNI plugin; `echo` also starts the TCP echo in it, `named`
   * names it to the plugin as kubelet does (K8S_POD_NAMESPACE=default, K8S_POD_NAME=its name).
   */
  async addPod(node: TestNode, { echo = true, named = false } = {}): Promise<Pod> {
    const k = this.pods.filter((p) => p.node === node).length + 1;
    const name = `pod-${node.index}${String.fromCharCode(96 + k)}`;
    const ns = `${this.prefix}p${node.index}-${k}`;
    await addNetns(ns);
    this.res.namespaces.add(ns);
    const containerId = `${this.prefix}${name}`;
    const args = named ? { args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name}` } : {};
    const result = await runCni(node.ns, podNetConf(this.plugin, node), { command: "ADD", containerId, podNs: ns, ...args });
    const pod: Pod = { name, ns, node, containerId, ips: resultIps(result) };
    if (echo) {
      pod.echo = await startEcho(ns);
      this.res.pids.add(pod.echo.pid);
    }
    this.pods.push(pod);
    this.progress(`${name} on ${node.name}: ${pod.ips.join(", ")}`);
    return pod;
  }

  async deletePod(pod: Pod): Promise<void> {
    if (pod.echo) {
      await pod.echo.stop();
      this.res.pids.delete(pod.echo.pid);
    }
    await runCni(pod.node.ns, podNetConf(this.plugin, pod.node), { command: "DEL", containerId: pod.containerId, podNs: pod.ns });
    await deleteNetns(pod.ns);
    this.res.namespaces.delete(pod.ns);
    this.pods.splice(this.pods.indexOf(pod), 1);
  }

  ip(node: TestNode) {
    return ipIn(node.ns);
  }

  /** Removes everything the testbed made; safe to call twice. */
  async destroy(): Promise<void> {
    await this.inproc?.stopAll().catch(() => undefined);
    await this.twilld?.stopAll().catch(() => undefined);
    for (const p of this.pods) await p.echo?.stop().catch(() => undefined);
    releaseSync(this.res);
    // Anything with the prefix that escaped the bookkeeping (an interrupted create).
    for (const ns of await listNetns(this.prefix)) await deleteNetns(ns);
  }

  /** Keep everything after this process exits (`demo --keep`); `removeByPrefix` undoes it. */
  detach(): void {
    untrack(this.res);
  }
}

/** Removes the namespaces of a kept testbed by its prefix. */
export async function removeByPrefix(prefix: string): Promise<string[]> {
  const names = (await listNetns(prefix)).reverse();
  for (const ns of names) await deleteNetns(ns);
  return names;
}

/** A node's twilld flags in routers mode: its own AS, and its segment's router leg per family. */
function bgpRouterArgs(index: number, segment: Segment, family: UnderlayFamily): string[] {
  const { prefix, prefix6 } = SEGMENTS[segment];
  const legs = [...(family !== 6 ? [`${prefix}.1`] : []), ...(family !== 4 ? [`${prefix6}:1`] : [])];
  return ["--bgp-as", String(ROUTER_AS + index), "--bgp-routers", legs.map((a) => `${a}@${ROUTER_AS}`).join(",")];
}
