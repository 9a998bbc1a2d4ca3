import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeBinariesBuilt, kubeCacheDir } from "../../testkit/kube/binaries.js";
import { startControlPlane, type ControlPlane } from "../../testkit/kube/control-plane.js";
import { Admin, adminWithManifestRbac, agentStore, kubeConfigFor, manifestLeaseNamespace } from "../../testkit/kubernetes.js";
import { follow, request } from "../../testkit/store-contract.js";
import { until } from "../../testkit/until.js";
import { parseNetworkConfig } from "../config.js";
import type { SubnetStore } from "../types.js";
import { leaseName } from "./kubernetes-lease-view.js";
import { ANNOTATIONS, nodeAnnotations } from "./kubernetes-node-view.js";
import { KubernetesStore } from "./kubernetes.js";

// The kubernetes datastore beside kube-controller-manager's controllers, on a real apiserver:
// node IPAM allocating spec.podCIDRs, and the garbage collector deleting a gone Node's Leases.

const built = kubeBinariesBuilt();
const skipReason = `skipped: no kube binaries in ${kubeCacheDir()}/bin; run scripts/setup-kube`;
const NETWORK = parseNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 24 });
const LEASES = manifestLeaseNamespace();

describe.skipIf(!built)(built ? "kubernetes datastore with kube-controller-manager allocating node CIDRs" : `kubernetes datastore with node IPAM (${skipReason})`, () => {
  let cp: ControlPlane;
  let admin: Admin;
  let agentKc: KubeConfig;
  const stores: SubnetStore[] = [];

  beforeAll(async () => {
    cp = await startControlPlane({ withControllerManager: true, clusterCidr: "10.244.0.0/16", nodeCidrMaskSize: 24 });
    admin = await adminWithManifestRbac(cp);
    agentKc = kubeConfigFor(cp.server, cp.caFile, cp.agentToken);
    const agentCore = agentKc.makeApiClient(CoreV1Api);
    await until("the agent allowed to list nodes", () => agentCore.listNode().then(() => true));
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await cp?.stop();
  });

  const podCIDROf = (name: string) =>
    until(`spec.podCIDR of ${name}`, async () => (await admin.core.readNode({ name })).spec?.podCIDRs?.[0], 60_000);

  it("uses spec.podCIDRs and claims no Lease", async () => {
    const names = ["kcm-a", "kcm-b", "kcm-c"];
    for (const n of names) await admin.ensureNode(n);
    const allocated = await Promise.all(names.map(podCIDROf));
    const open = () => {
      const s = agentStore(agentKc, admin, NETWORK, 60_000);
      stores.push(s);
      return s;
    };
    const leases = await Promise.all(names.map((n) => open().acquire(request(n))));
    expect(leases.map((l) => l.subnets)).toEqual(allocated.map((c) => [c]));
    expect(leases.every((l) => l.expiresAt === undefined)).toBe(true);
    expect(await admin.twillLeases()).toEqual([]);
    const node = await admin.core.readNode({ name: "kcm-a" });
    expect(node.metadata?.annotations?.[ANNOTATIONS.subnets]).toBeUndefined();
    expect(node.metadata?.annotations?.[ANNOTATIONS.publicIP]).toBe("192.0.2.10");

    const watcher = follow(open());
    try {
      await until("seeing the three nodes with their podCIDRs", () =>
        watcher.leases().map((l) => `${l.nodeName}=${l.subnets.join()}`).sort().join() ===
        names.map((n, i) => `${n}=${allocated[i]}`).join(),
      );
      // Renewing checks the podCIDRs and republishes; nothing expires.
      const renewed = await stores[0]!.renew({ ...leases[0]!, backend: { ...leases[0]!.backend, vtepMAC: "02:00:00:00:00:07" } });
      expect(renewed.subnets).toEqual(leases[0]!.subnets);
      await until("seeing the new MAC", () => watcher.leases().find((l) => l.nodeName === "kcm-a")?.backend.vtepMAC === "02:00:00:00:00:07");
    } finally {
      watcher.stop();
    }
  });

  it("reads a Node by its spec.podCIDRs whatever its twill.dev/subnets says, skips one whose backend data has a wrong type, and names both", async () => {
    const annotate = (name: string, annotations: Record<string, string | null>) =>
      admin.core.patchNode({ name, body: { metadata: { annotations } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    for (const n of ["kcm-forged", "kcm-typed"]) await admin.ensureNode(n);
    const [forgedCIDR] = await Promise.all(["kcm-forged", "kcm-typed"].map(podCIDROf));
    // A hand (or a stolen token) claims the whole cluster CIDR for one node.
    await annotate("kcm-forged", nodeAnnotations("192.0.2.21", request("kcm-forged").backend, ["10.244.0.0/16"]));
    await annotate("kcm-typed", { ...nodeAnnotations("192.0.2.22", request("kcm-typed").backend, null), [ANNOTATIONS.backendData]: JSON.stringify({ type: "vxlan", vtepMAC: 5 }) });
    const store = agentStore(agentKc, admin, NETWORK, 60_000);
    stores.push(store);
    const watcher = follow(store);
    try {
      await until("seeing kcm-forged by its podCIDR", () => watcher.leases().find((l) => l.nodeName === "kcm-forged")?.subnets.join() === forgedCIDR || undefined);
      expect(watcher.names()).not.toContain("kcm-typed");
      expect(store.unreadable()).toEqual(
        expect.arrayContaining([
          { kind: "node", key: "Node kcm-forged", reason: `twill.dev/subnets "10.244.0.0/16" ignored: the Node's spec.podCIDRs ${forgedCIDR} are its subnets` },
          { kind: "node", key: "Node kcm-typed", reason: 'twill.dev/backend-data field "vtepMAC" is 5, not a string' },
        ]),
      );
    } finally {
      watcher.stop();
    }
  });

  it("rejects podCIDRs outside the configured cluster CIDR", async () => {
    await admin.ensureNode("kcm-d");
    await podCIDROf("kcm-d");
    const wrong = new KubernetesStore({
      kubeConfig: agentKc,
      namespace: LEASES,
      network: parseNetworkConfig({ Network: "10.50.0.0/16" }),
      leaseTTLMs: 60_000,
    });
    await expect(wrong.acquire(request("kcm-d"))).rejects.toThrow(/none inside cluster CIDR 10\.50\.0\.0\/16/);
  });
});

describe.skipIf(!built)(built ? "kubernetes datastore with the garbage collector" : `kubernetes datastore with the garbage collector (${skipReason})`, () => {
  let cp: ControlPlane;
  beforeAll(async () => {
    cp = await startControlPlane({ withControllerManager: true, controllers: ["garbagecollector"] });
  });
  afterAll(async () => {
    await cp?.stop();
  });

  it("frees the subnet of a Node deleted for good: its Lease goes with it (flannel#954)", async () => {
    const admin = await adminWithManifestRbac(cp);
    const agentKc = kubeConfigFor(cp.server, cp.caFile, cp.agentToken);
    const store = agentStore(agentKc, admin, NETWORK, 60_000);
    const lease = await until("acquiring as the agent", () => store.acquire(request("gone")).catch(() => undefined));
    expect((await admin.twillLeases()).map((l) => l.metadata?.name)).toEqual([leaseName(lease.subnets[0]!)]);
    await admin.deleteNode("gone");
    await until("the garbage collector deleting the Lease", async () => (await admin.twillLeases()).length === 0 || undefined, 60_000);
    await store.close();
  });
});
