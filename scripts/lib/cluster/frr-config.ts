// The racks' router of scripts/cluster as a BGP speaker: writes FRR's zebra.conf and bgpd.conf
// into DIR, rendered as the namespace testbed's router renders them (conformance/testbed/
// frr-router.ts: listen ranges per family, `remote-as external`, inbound prefix-lists taking only
// pod subnets of the cluster CIDRs, graceful restart), gives DIR to user frr and has FRR check
// both files inside the router's namespace NS. scripts/cluster then starts zebra and bgpd.
//
//   bun frr-config.ts --ns NS --dir DIR --router-id 192.168.90.1 --as 65000 \
//     --listen 192.168.90.0/24 --listen fd00:90::/64 ... --cluster 10.244.0.0/16 ... \
//     --subnet-len4 24 --subnet-len6 64
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseCidr, type Family } from "../../../shared/net/cidr.js";
import { checkFrrConfig, renderFrrConfig } from "../../../conformance/testbed/frr-router.js";

const { values: o } = parseArgs({
  options: {
    ns: { type: "string" },
    dir: { type: "string" },
    "router-id": { type: "string" },
    as: { type: "string" },
    listen: { type: "string", multiple: true, default: [] },
    cluster: { type: "string", multiple: true, default: [] },
    "subnet-len4": { type: "string" },
    "subnet-len6": { type: "string" },
  },
});
if (!o.ns || !o.dir || !o["router-id"] || !o.as || o.listen.length === 0 || o.cluster.length === 0) {
  console.error("usage: frr-config.ts --ns NS --dir DIR --router-id IP --as AS --listen CIDR... --cluster CIDR... [--subnet-len4 N] [--subnet-len6 N]");
  process.exit(2);
}
const listen: Partial<Record<Family, string[]>> = {};
for (const cidr of o.listen) (listen[parseCidr(cidr).family] ??= []).push(cidr);
const subnetLen: Partial<Record<Family, number>> = {};
if (o["subnet-len4"]) subnetLen[4] = Number(o["subnet-len4"]);
if (o["subnet-len6"]) subnetLen[6] = Number(o["subnet-len6"]);

const config = renderFrrConfig({ as: Number(o.as), routerId: o["router-id"], listen, clusterCIDRs: o.cluster, subnetLen });
mkdirSync(o.dir, { recursive: true });
writeFileSync(join(o.dir, "zebra.conf"), config.zebra);
writeFileSync(join(o.dir, "bgpd.conf"), config.bgpd);
// The daemons drop to user frr before they read their files and make their sockets there.
execFileSync("chown", ["-R", "frr:frr", o.dir]);
await checkFrrConfig(o.ns, o.dir);
