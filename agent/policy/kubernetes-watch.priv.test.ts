import { CoreV1Api, NetworkingV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeBinariesBuilt, kubeCacheDir } from "../../testkit/kube/binaries.js";
import { startControlPlane, type ControlPlane } from "../../testkit/kube/control-plane.js";
import { nullLogger } from "../../shared/log.js";
import { applyManifestRbac, kubeConfigFor } from "../../testkit/kubernetes.js";
import { until } from "../../testkit/until.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { policyReadyPath, readPolicyReady } from "../../shared/policy-ready.js";
import { Store, bootId } from "../../ipam/store.js";
import { addNetns, deleteNetns, ipIn } from "../../testkit/netns.js";
import { compilePolicies } from "./compile.js";
import type { PolicyPlan } from "./plan.js";
import { startNetworkPolicy } from "./index.js";
import { readPolicyReport } from "./report.js";
import { watchPolicyObjects } from "./kubernetes-watch.js";
import type { PolicySnapshot } from "./types.js";

const built = kubeBinariesBuilt();

/**
 * The watch against a real kube-apiserver, with the agent's token and exactly the RBAC rules
 * of deploy/twill.yaml: a NetworkPolicy, Pods and a Namespace created by an admin reach the
 * compiled ruleset, and so does relabelling the namespace.
 */
describe.skipIf(!built)(built ? "NetworkPolicy watch on a real apiserver" : `NetworkPolicy watch (skipped: no kube binaries in ${kubeCacheDir()}/bin)`, () => {
  let cp: ControlPlane;
  let core: CoreV1Api;
  let networking: NetworkingV1Api;
  let agentKc: KubeConfig;
  let stopWatch: (() => void) | undefined;
  let latest: PolicySnapshot | undefined;
  const errors: string[] = [];

  beforeAll(async () => {
    cp = await startControlPlane();
    const adminKc = kubeConfigFor(cp.server, cp.caFile, cp.adminToken);
    await applyManifestRbac(adminKc);
    core = adminKc.makeApiClient(CoreV1Api);
    networking = adminKc.makeApiClient(NetworkingV1Api);
    agentKc = kubeConfigFor(cp.server, cp.caFile, cp.agentToken);
    const agentNetworking = agentKc.makeApiClient(NetworkingV1Api);
    await until("the agent allowed to list networkpolicies", () => agentNetworking.listNetworkPolicyForAllNamespaces().then(() => true));
  }, 120_000);
  afterAll(async () => {
    stopWatch?.();
    await cp?.stop();
  });

  const plan = (): PolicyPlan | undefined => (latest ? compilePolicies(latest, { nodeName: "node-1" }) : undefined);

  async function createPod(namespace: string, name: string, nodeName: string, ip: string, labels: Record<string, string>): Promise<void> {
    const body: V1Pod = {
      metadata: { name, namespace, labels },
      spec: {
        nodeName,
        automountServiceAccountToken: false,
        containers: [{ name: "c", image: "registry.example/none", ports: [{ name: "http", containerPort: 8080 }] }],
      },
    };
    const pod = await core.createNamespacedPod({ namespace, body });
    // The kubelet's part: report the pod's address.
    await core.replaceNamespacedPodStatus({ name, namespace, body: { ...pod, status: { phase: "Running", podIP: ip, podIPs: [{ ip }] } } });
  }

  it("compiles a NetworkPolicy created after the watch started, and follows a namespace relabelled", async () => {
    stopWatch = watchPolicyObjects({ kubeConfig: agentKc, logger: nullLogger, onSnapshot: (s) => (latest = s), onError: (e) => errors.push(e.message) });
    await until("a first snapshot", () => latest);

    for (const [name, team] of [["shop", "x"], ["tools", "x"]] as const) {
      await core.createNamespace({ body: { metadata: { name, labels: { team } } } });
      // No controller-manager: the ServiceAccount admission plugin wants the default account.
      await core.createNamespacedServiceAccount({ namespace: name, body: { metadata: { name: "default" } } });
    }
    await createPod("shop", "web", "node-1", "10.244.1.5", { app: "web" });
    await createPod("tools", "client", "node-2", "10.244.2.7", { app: "client" });
    const created = Date.now();
    await networking.createNamespacedNetworkPolicy({
      namespace: "shop",
      body: {
        metadata: { name: "web-from-team-x" },
        spec: {
          podSelector: { matchLabels: { app: "web" } },
          ingress: [{ _from: [{ namespaceSelector: { matchLabels: { team: "x" } }, podSelector: { matchLabels: { app: "client" } } }], ports: [{ port: "http" }] }],
        },
      },
    });
    // Three watches, no order between them: wait for the policy and both pods' addresses.
    const compiled = await until("the policy and its peer in the compiled ruleset", () => {
      const p = plan();
      return p?.policies.some((x) => x.policy === "shop/web-from-team-x") && p.sets.some((s) => s.elements.includes("10.244.2.7")) ? p : undefined;
    });
    const seenMs = Date.now() - created;
    expect(compiled.policies).toEqual([{ policy: "shop/web-from-team-x", types: ["ingress"], pods: ["shop/web"] }]);
    // The peers' and the named port's sets, of both families (the IPv6 ones empty here).
    expect(compiled.sets.map((s) => s.elements).sort()).toEqual([[], [], ["10.244.1.5 . tcp . 8080"], ["10.244.2.7"]]);
    const podChain = compiled.chains.find((c) => c.comment === "shop/web ingress")!.name;
    expect(compiled.maps.find((m) => m.name === "ingress4")!.elements).toEqual([["10.244.1.5", podChain]]);

    await core.patchNamespace({ name: "tools", body: { metadata: { labels: { team: "y" } } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    await until("the relabelled namespace's pod gone from the peers", () => {
      const p = plan();
      return p && p.policies.length === 1 && !p.sets.some((s) => s.elements.includes("10.244.2.7")) ? true : undefined;
    });
    expect(errors).toEqual([]);
    console.log(`NetworkPolicy created -> compiled from the agent's watch: ${seenMs} ms`);
  });

  it("enforces in a node's namespace what the API says, as twilld run wires it", async () => {
    const ns = `twpolw${process.pid.toString(36)}`;
    const dir = mkdtempSync(join(tmpdir(), "twill-policy-"));
    await addNetns(ns);
    const ip = ipIn(ns);
    const registry = new Registry();
    const running = await startNetworkPolicy({
      enabled: true,
      datastore: "kubernetes",
      kubeconfig: cp.kubeconfigFor(cp.agentToken),
      nodeName: "node-1",
      stateDir: dir,
      ipamStore: join(dir, "ipam", "twill"),
      subnetFile: join(dir, "run", "subnet.json"),
      bridge: "cni0",
      resyncMs: 60_000,
      ip,
      registry,
      logger: nullLogger,
    });
    try {
      // The first test's policy selects shop/web on node-1: its address gets a pod chain.
      const table = await until("the pod's address in the node's policy table", async () => {
        const text = await ip.nft(["list", "map", "inet", "twill-policy", "ingress4"], "list the map").catch(() => "");
        return text.includes("10.244.1.5 : jump pod_") ? text : undefined;
      });
      expect(table).toContain("10.244.1.5");
      const report = readPolicyReport(join(dir, "policy.json"))!;
      expect(report.enabled).toBe(true);
      expect(report.policies).toEqual([{ policy: "shop/web-from-team-x", types: ["ingress"], pods: ["shop/web"] }]);
      expect(await registry.metrics()).toMatch(/twill_policy_isolated_pods 1/);

      // A new pod the policy selects, whose address kubelet has not reported: the IPAM
      // reservation made on its ADD, naming the pod, is enough to filter it.
      const fresh = await core.createNamespacedPod({
        namespace: "shop",
        body: { metadata: { name: "web-2", labels: { app: "web" } }, spec: { nodeName: "node-1", automountServiceAccountToken: false, containers: [{ name: "c", image: "registry.example/none" }] } },
      });
      const store = new Store(join(dir, "ipam", "twill"));
      store.ensure();
      const owner = { containerID: "sandbox-web-2", ifname: "eth0" };
      expect(store.reserve("10.244.1.6", owner)).toBe(true);
      store.writeIndex({ ...owner, ips: ["10.244.1.6"], pod: { namespace: "shop", name: "web-2", uid: fresh.metadata!.uid! }, bootId: bootId(), created: new Date().toISOString() });
      await until("the reserved address in the node's policy table", async () => {
        const text = await ip.nft(["list", "map", "inet", "twill-policy", "ingress4"], "list the map").catch(() => "");
        return text.includes("10.244.1.6 : jump pod_") || undefined;
      });
      // What the plugin waits on: the namespace has a policy, the address is in force.
      const ready = readPolicyReady(policyReadyPath(join(dir, "run", "subnet.json")));
      expect(ready?.namespaces).toEqual(["shop"]);
      expect(ready?.ips).toEqual(expect.arrayContaining(["10.244.1.5", "10.244.1.6"]));

      await networking.deleteNamespacedNetworkPolicy({ namespace: "shop", name: "web-from-team-x" });
      await until("the pod's address gone from the table", async () => {
        const text = await ip.nft(["list", "map", "inet", "twill-policy", "ingress4"], "list the map");
        return text.includes("10.244.1.5") ? undefined : true;
      });
    } finally {
      await running.stop();
      await deleteNetns(ns);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the agent may read policies, pods and namespaces, and change none of them", async () => {
    const agentCore = agentKc.makeApiClient(CoreV1Api);
    const agentNetworking = agentKc.makeApiClient(NetworkingV1Api);
    await agentCore.listPodForAllNamespaces();
    await agentCore.readNamespace({ name: "shop" });
    const forbidden = (p: Promise<unknown>) => p.then(() => 200, (e: { code?: number }) => e.code);
    expect(await forbidden(agentNetworking.createNamespacedNetworkPolicy({ namespace: "shop", body: { metadata: { name: "x" }, spec: { podSelector: {} } } }))).toBe(403);
    expect(await forbidden(agentCore.deleteNamespacedPod({ namespace: "shop", name: "web" }))).toBe(403);
    expect(await forbidden(agentCore.patchNamespace({ name: "shop", body: { metadata: { labels: { a: "b" } } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch)))).toBe(403);
  });
});
