import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { SuiteOptions } from "./suite.js";

/**
 * twill as a node runs it, for the suite: `twill` with `twill-ipam`, the node's subnet from a
 * subnet file the way twilld writes it. A second file with a /29 node subnet is the small
 * pool; a config naming a subnet file that does not exist is a node whose agent is not up
 * (STATUS must say 50).
 */

export const TWILL_BIN = resolve(import.meta.dirname, "../../dist/bin");

const subnetInfo = (nodeSubnet: string) => ({
  clusterCIDRs: ["10.251.0.0/16"],
  nodeSubnets: [nodeSubnet],
  mtu: 1450,
  backend: "vxlan",
  ipMasq: false,
});

const conflist = (subnetFile: string) => ({
  cniVersion: "1.1.0",
  name: "conformance",
  plugins: [
    {
      type: "twill",
      bridge: "cni0",
      isDefaultGateway: true,
      subnetFile,
      logFile: "/var/log/twill/conformance.log",
      capabilities: { ips: true, mac: true },
      ipam: { type: "twill-ipam", dataDir: "/var/lib/cni/networks" },
    },
  ],
});

export function twillSuiteOptions(dir: string): SuiteOptions {
  mkdirSync(dir, { recursive: true });
  const write = (name: string, value: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(value, null, 2) + "\n");
    return path;
  };
  const subnet = write("subnet.json", subnetInfo("10.251.3.0/24"));
  const small = write("subnet-small.json", subnetInfo("10.251.4.0/29"));
  return {
    plugin: join(TWILL_BIN, "twill"),
    cniPath: TWILL_BIN,
    config: write("twill.conflist", conflist(subnet)),
    smallPoolConfig: write("twill-small.conflist", conflist(small)),
    notReadyConfig: write("twill-not-ready.conflist", conflist(join(dir, "no-such-subnet.json"))),
    tempPaths: ["logFile", "ipam.dataDir"],
  };
}
