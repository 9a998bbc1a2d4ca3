import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { IpRoute } from "./iproute.js";
import { httpGet, startDaemon, type Daemon, type HttpAnswer } from "./daemon.js";
import { addNetns, deleteNetns, inNetns, ipIn } from "./netns.js";

/**
 * Simulated nodes for running the real twilld: a "gw" namespace holding an underlay bridge
 * (192.0.2.1/24) and one namespace per node with eth0 on that bridge, 192.0.2.(10+i)/24 and a
 * default route via the bridge, so the agent detects its underlay as on a real node. Names
 * carry a per-run prefix; destroy() deletes every namespace (and with them the veths).
 */

export const TWILLD = resolve(import.meta.dirname, "../dist/bin/twilld");
export const METRICS_PORT = 9402;

export interface SimNode {
  name: string;
  ns: string;
  ip: string;
  dir: string;
  subnetFile: string;
}

export class NodeNet {
  readonly gw: string;
  readonly nodes: SimNode[] = [];
  readonly dir: string;
  private readonly root = new IpRoute(null);
  private readonly namespaces: string[] = [];

  constructor(readonly prefix: string) {
    this.gw = `${prefix}gw`;
    this.dir = mkdtempSync(join(tmpdir(), `${prefix}`));
  }

  static async create(count: number): Promise<NodeNet> {
    const net = new NodeNet(`twd${process.pid.toString(36)}${Math.floor(Math.random() * 1296).toString(36)}-`);
    try {
      await net.addNamespace(net.gw);
      await ipIn(net.gw).batch(
        [
          ["link", "add", "br0", "type", "bridge"],
          ["addr", "add", "192.0.2.1/24", "dev", "br0"],
          ["link", "set", "br0", "up"],
        ],
        "set up the underlay bridge",
      );
      for (let i = 0; i < count; i++) await net.addNode(i);
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  async addNode(i: number): Promise<SimNode> {
    const name = `node-${i}`;
    const ns = `${this.prefix}n${i}`;
    const ip = `192.0.2.${10 + i}`;
    await this.addNamespace(ns);
    const hostEnd = `${this.prefix}v${i}`.slice(-15);
    await this.root.exec(["link", "add", hostEnd, "netns", this.gw, "type", "veth", "peer", "name", "eth0", "netns", ns], `create veth for ${name}`);
    await ipIn(this.gw).batch(
      [
        ["link", "set", hostEnd, "master", "br0"],
        ["link", "set", hostEnd, "up"],
      ],
      `attach ${name} to the underlay`,
    );
    await ipIn(ns).batch(
      [
        ["addr", "add", `${ip}/24`, "dev", "eth0"],
        ["link", "set", "eth0", "up"],
        ["route", "add", "default", "via", "192.0.2.1"],
      ],
      `address ${name}`,
    );
    const dir = join(this.dir, name);
    const node = { name, ns, ip, dir, subnetFile: join(dir, "subnet.json") };
    this.nodes.push(node);
    return node;
  }

  /** Starts `twilld ARGS` inside the node's namespace. */
  twilld(node: SimNode, args: readonly string[], tag = "run"): Daemon {
    return startDaemon(`twilld ${node.name}`, "ip", ["netns", "exec", node.ns, TWILLD, ...args], join(this.dir, `${node.name}-${tag}.log`));
  }

  /** GET http://127.0.0.1:9402/PATH from inside the node's namespace. */
  get(node: SimNode, path: string): Promise<HttpAnswer> {
    return httpGet(`http://127.0.0.1:${METRICS_PORT}${path}`, node.ns);
  }

  /** Runs twilld to completion inside the node's namespace (status, a config check). */
  exec(node: SimNode, args: readonly string[], env: Record<string, string> = {}) {
    return inNetns(node.ns, [TWILLD, ...args], { env });
  }

  /** A pod's namespace (empty: the CNI plugin attaches it), removed with the rest. */
  async addPodNamespace(i: number): Promise<string> {
    const ns = `${this.prefix}p${i}`;
    await this.addNamespace(ns);
    return ns;
  }

  async destroy(): Promise<void> {
    for (const ns of this.namespaces.splice(0).reverse()) await deleteNetns(ns);
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async addNamespace(name: string): Promise<void> {
    this.namespaces.push(name);
    await addNetns(name);
  }
}

/** The value of an unlabelled metric in a Prometheus text page. */
export function metricValue(page: string, name: string): number | undefined {
  const line = page.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}
