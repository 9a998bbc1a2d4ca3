import { ApiException, CoreV1Api, KubeConfig, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { covers, overlaps, parseCidr } from "../../shared/net/cidr.js";
import { kubeBinariesBuilt, kubeCacheDir } from "./binaries.js";
import { startControlPlane, type ControlPlane } from "./control-plane.js";
import { until } from "../until.js";

const built = kubeBinariesBuilt();
const title = built
  ? "a real control plane on 127.0.0.1"
  : `a real control plane (skipped: no kube binaries in ${kubeCacheDir()}/bin; run scripts/setup-kube)`;

const CLUSTER_CIDR = "10.244.0.0/16";
const NODE_MASK = 24;
// Bounded waits for asynchronous controllers and RBAC caches; a miss fails the test.
const WAIT_MS = 60_000;

const statusOf = async (call: Promise<unknown>): Promise<number> => {
  try {
    await call;
    return 200;
  } catch (e) {
    if (e instanceof ApiException) return e.code;
    throw e;
  }
};

describe.skipIf(!built)(title, () => {
  let cp: ControlPlane;
  let admin: CoreV1Api;
  let agent: CoreV1Api;

  const kubeConfig = (token: string): KubeConfig => {
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigFor(token));
    return kc;
  };

  beforeAll(async () => {
    cp = await startControlPlane({
      withControllerManager: true,
      clusterCidr: CLUSTER_CIDR,
      nodeCidrMaskSize: NODE_MASK,
    });
    admin = kubeConfig(cp.adminToken).makeApiClient(CoreV1Api);
    agent = kubeConfig(cp.agentToken).makeApiClient(CoreV1Api);
  });

  afterAll(async () => {
    await cp?.stop();
  });

  it("stores a Node created with the admin token and lists it back", async () => {
    await admin.createNode({ body: { metadata: { name: "twill-node-a", labels: { twill: "test" } } } });
    const list = await admin.listNode({ labelSelector: "twill=test" });
    expect(list.items.map((n) => n.metadata?.name)).toEqual(["twill-node-a"]);
  });

  it("gives each Node its own pod CIDR from the cluster CIDR (node IPAM controller)", async () => {
    await admin.createNode({ body: { metadata: { name: "twill-node-b" } } });
    const podCidrOf = (name: string) =>
      until(
        `spec.podCIDR of ${name}`,
        async () => (await admin.readNode({ name })).spec?.podCIDR,
        WAIT_MS,
        () => cp.logTail("kube-controller-manager"),
      );
    const a = parseCidr(await podCidrOf("twill-node-a"));
    const b = parseCidr(await podCidrOf("twill-node-b"));
    for (const c of [a, b]) {
      expect(c.prefix).toBe(NODE_MASK);
      expect(covers(parseCidr(CLUSTER_CIDR), c)).toBe(true);
    }
    expect(overlaps(a, b)).toBe(false);
  });

  it("enforces RBAC on the agent token: granted verbs work, the rest are forbidden", async () => {
    // Authenticated but granted nothing yet: 403, not 401.
    expect(await statusOf(agent.listNode())).toBe(403);

    const rbac = kubeConfig(cp.adminToken).makeApiClient(RbacAuthorizationV1Api);
    await rbac.createClusterRole({
      body: {
        metadata: { name: "twill-test-node-reader" },
        rules: [{ apiGroups: [""], resources: ["nodes"], verbs: ["get", "list"] }],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: "twill-test-node-reader" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "twill-test-node-reader" },
        // The static agent token authenticates as this ServiceAccount's user name.
        subjects: [{ kind: "ServiceAccount", name: "twill", namespace: "kube-system" }],
      },
    });

    const names = await until("agent allowed to list nodes", async () => {
      const list = await agent.listNode();
      return list.items.map((n) => n.metadata?.name ?? "");
    }, WAIT_MS);
    expect(names).toContain("twill-node-a");
    expect(await statusOf(agent.deleteNode({ name: "twill-node-a" }))).toBe(403);
    expect(await statusOf(agent.listSecretForAllNamespaces())).toBe(403);
    // The forbidden delete did not happen.
    expect((await admin.readNode({ name: "twill-node-a" })).metadata?.name).toBe("twill-node-a");
  });
});
