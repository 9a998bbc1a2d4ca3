import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { readSubnetFile } from "../shared/subnet-file.js";
import { parseCidr } from "../shared/net/cidr.js";
import { inNetns, netnsPath } from "./netns.js";

/**
 * Pods as a runtime makes them: a namespace, then the CNI plugin executed inside the node's
 * namespace with the CNI_* environment and the network config on stdin. The plugin is the real
 * `dist/bin/twill` (with twill-ipam in-process, node mode), or for comparison the reference
 * `bridge` + `host-local` built from the same node subnet file.
 */

export type PluginKind = "twill" | "bridge";

export const REPO = resolve(import.meta.dirname, "..");
export const DIST_BIN = join(REPO, "dist/bin");
const REFERENCE_CNI = "/usr/lib/cni";

export interface PodNetConf {
  /** Executable the runtime starts. */
  binary: string;
  /** CNI_PATH. */
  path: string;
  /** The plugin's config as a runtime passes it (name and cniVersion injected). */
  conf: Record<string, unknown>;
}

export interface NodeDirs {
  subnetFile: string;
  /** IPAM store and plugin log of this node. */
  dir: string;
}

/** twill-ipam's store of the node's pods (dataDir <node dir>/ipam, network "twill"). */
export const podIpamStore = (node: Pick<NodeDirs, "dir">): string => join(node.dir, "ipam", "twill");

export function podNetConf(kind: PluginKind, node: NodeDirs): PodNetConf {
  if (kind === "twill") {
    return {
      binary: join(DIST_BIN, "twill"),
      path: DIST_BIN,
      conf: {
        cniVersion: "1.1.0",
        name: "twill",
        type: "twill",
        bridge: "cni0",
        isDefaultGateway: true,
        subnetFile: node.subnetFile,
        logFile: join(node.dir, "twill.log"),
        ipam: { type: "twill-ipam", subnetFile: node.subnetFile, dataDir: join(node.dir, "ipam") },
      },
    };
  }
  // The reference plugins know nothing of the subnet file: build their config from it.
  const info = readSubnetFile(node.subnetFile);
  return {
    binary: join(REFERENCE_CNI, "bridge"),
    path: REFERENCE_CNI,
    conf: {
      cniVersion: "1.0.0",
      name: "twill-ref",
      type: "bridge",
      bridge: "cni0",
      isGateway: true,
      mtu: info.mtu,
      ipam: {
        type: "host-local",
        dataDir: join(node.dir, "host-local"),
        ranges: info.nodeSubnets.map((s) => [{ subnet: s }]),
        routes: info.nodeSubnets.map((s) => ({ dst: parseCidr(s).family === 4 ? "0.0.0.0/0" : "::/0" })),
      },
    },
  };
}

export interface CniCall {
  command: "ADD" | "DEL" | "CHECK";
  containerId: string;
  podNs: string;
  ifname?: string;
  /** CNI_ARGS, as kubelet passes them (`K8S_POD_NAMESPACE=...;K8S_POD_NAME=...`). */
  args?: string;
}

/** Runs the plugin inside `nodeNs` with a clean environment, as containerd does. */
export async function runCni(nodeNs: string, net: PodNetConf, call: CniCall): Promise<Record<string, unknown>> {
  if (!existsSync(net.binary)) throw new Error(`CNI plugin ${net.binary} is not built (run ./scripts/build)`);
  const r = await inNetns(nodeNs, [net.binary], {
    input: JSON.stringify(net.conf),
    extendEnv: false,
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      CNI_COMMAND: call.command,
      CNI_CONTAINERID: call.containerId,
      CNI_NETNS: netnsPath(call.podNs),
      CNI_IFNAME: call.ifname ?? "eth0",
      CNI_PATH: net.path,
      ...(call.args ? { CNI_ARGS: call.args } : {}),
    },
  });
  const out = String(r.stdout).trim();
  if (r.exitCode !== 0) {
    throw new Error(`CNI ${call.command} of ${call.containerId} in ${nodeNs} failed (exit ${r.exitCode}): ${out || String(r.stderr)}`);
  }
  return out ? (JSON.parse(out) as Record<string, unknown>) : {};
}

/** The pod addresses of an ADD result (`10.244.1.5`, without the prefix length). */
export function resultIps(result: Record<string, unknown>): string[] {
  const ips = (result.ips ?? []) as { address: string }[];
  return ips.map((i) => i.address.split("/")[0]!);
}
