// Prints a kubectl List of three Node objects no kubelet runs, written as a buggy or
// compromised node (or a hand edit) could write them: twill's backend data that does not
// decode, a pod CIDR over the underlay, and another node's VTEP MAC on an address of the
// writer's. twilld refuses each for itself alone; `scripts/e2e --hostile-nodes` runs
// Kubernetes' tests with them in the cluster.
//
//   node scripts/lib/cluster/hostile-nodes.mjs UNDERLAY_CIDR UNSEEN_POD_CIDR_1 UNSEEN_POD_CIDR_2 NODE1_BACKEND_DATA
const [underlay, cidrA, cidrB, victimData] = process.argv.slice(2);
if (!victimData) {
  console.error("usage: hostile-nodes.mjs UNDERLAY_CIDR POD_CIDR_A POD_CIDR_B NODE1_BACKEND_DATA");
  process.exit(2);
}
const victim = JSON.parse(victimData);
const writer = underlay.replace(/\.0\/\d+$/, ".99");
const node = (name, podCIDR, backendData) => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: {
    name,
    labels: { "twill.dev/test": "hostile" },
    annotations: { "twill.dev/public-ip": writer, "twill.dev/backend-type": "vxlan", "twill.dev/backend-data": JSON.stringify(backendData) },
  },
  spec: { podCIDR, podCIDRs: [podCIDR] },
});
const items = [
  node("hostile-garbage", cidrA, { ...victim, type: "vxlan", vtepMAC: 5 }),
  node("hostile-underlay", underlay, { type: "vxlan", vni: 1, port: 4789 }),
  // host-gw nodes publish no VTEP MAC: any MAC not derived from the writer's own name is forged.
  node("hostile-mac", cidrB, { type: "vxlan", vni: 1, port: 4789, vtepMAC: victim.vtepMAC ?? "02:00:00:00:00:01" }),
];
process.stdout.write(JSON.stringify({ apiVersion: "v1", kind: "List", items }));
