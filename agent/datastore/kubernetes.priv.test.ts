import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CoordinationV1Api,
  CoreV1Api,
  PatchStrategy,
  V1MicroTime,
  setHeaderOptions,
  type KubeConfig,
  type V1Lease,
  type V1Node,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeBinariesBuilt, kubeCacheDir } from "../../testkit/kube/binaries.js";
import { startControlPlane, type ControlPlane } from "../../testkit/kube/control-plane.js";
import { makeServingCert } from "../../testkit/kube/pki.js";
import { covers, parseCidr } from "../../shared/net/cidr.js";
import { startTcpProxy } from "../../testkit/tcp-proxy.js";
import { createLogger } from "../../shared/log.js";
import { parseNetworkConfig } from "../config.js";
import type { SubnetStore } from "../types.js";
import { LEASE_SELECTOR, LEASE_SUBNET_ANNOTATION, leaseName } from "./kubernetes-lease-view.js";
import { ANNOTATIONS, nodeAnnotations, timeOf } from "./kubernetes-node-view.js";
import { ResilientInformer, listInPages, listPage } from "./kubernetes-informer.js";
import { Admin, agentStore, applyManifestRbac, kubeConfigFor, manifestLeaseNamespace } from "../../testkit/kubernetes.js";
import { KubernetesStore } from "./kubernetes.js";
import { follow, request, subnetStoreContract } from "../../testkit/store-contract.js";
import { until } from "../../testkit/until.js";

const built = kubeBinariesBuilt();
const skipReason = `skipped: no kube binaries in ${kubeCacheDir()}/bin; run scripts/setup-kube`;
const NETWORK = parseNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 24 });
/** Where deploy/twill.yaml lets the agent write Leases. */
const LEASES = manifestLeaseNamespace();

describe.skipIf(!built)(built ? "kubernetes datastore on a real apiserver" : `kubernetes datastore (${skipReason})`, () => {
  let cp: ControlPlane;
  let admin: Admin;
  let adminKc: KubeConfig;
  let agentKc: KubeConfig;
  const opened: SubnetStore[] = [];

  beforeAll(async () => {
    cp = await startControlPlane();
    adminKc = kubeConfigFor(cp.server, cp.caFile, cp.adminToken);
    admin = new Admin(adminKc);
    const applied = await applyManifestRbac(adminKc);
    expect(applied).toEqual([
      "Namespace/twill-system",
      "ServiceAccount/twill",
      "ClusterRole/twill",
      "ClusterRoleBinding/twill",
      "Role/twill",
      "RoleBinding/twill",
      "Role/twill",
      "RoleBinding/twill",
    ]);
    agentKc = kubeConfigFor(cp.server, cp.caFile, cp.agentToken);
    // RBAC reaches the authorizer's cache a moment after the objects are stored.
    const agentCore = agentKc.makeApiClient(CoreV1Api);
    await until("the agent allowed to list nodes", () => agentCore.listNode().then(() => true));
  });
  afterAll(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
    await cp?.stop();
  });

  const open = (network = NETWORK, ttl = 60_000) => {
    const s = agentStore(agentKc, admin, network, ttl);
    opened.push(s);
    return s;
  };

  subnetStoreContract({
    // A Lease lapses by its renewTime as the reader's clock judges it: the apiserver keeps no time.
    clocked: true,
    fresh: async () => {
      await admin.wipe();
      return (network, ttl, clock) => agentStore(agentKc, admin, network, ttl, { clock });
    },
  });

  it("claims through Leases named after the subnet, held by the node and owned by its Node", async () => {
    await admin.wipe();
    const crowded = parseNetworkConfig({ Network: "10.244.0.0/19", SubnetLen: 24 });
    const names = Array.from({ length: 20 }, (_, i) => `node-${i}`);
    const leases = await Promise.all(names.map((n) => open(crowded).acquire(request(n))));
    const subnets = leases.map((l) => l.subnets[0]!);
    expect(new Set(subnets).size).toBe(20);
    for (const s of subnets) expect(covers(parseCidr("10.244.0.0/19"), parseCidr(s))).toBe(true);

    const objects = await admin.twillLeases();
    expect(objects).toHaveLength(20);
    for (const l of leases) {
      const obj = objects.find((o) => o.metadata?.name === leaseName(l.subnets[0]!));
      expect(obj?.spec?.holderIdentity).toBe(l.nodeName);
      expect(obj?.spec?.leaseDurationSeconds).toBe(60);
      expect(obj?.metadata?.annotations?.[LEASE_SUBNET_ANNOTATION]).toBe(l.subnets[0]);
      const node = await admin.core.readNode({ name: l.nodeName });
      expect(obj?.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "Node", name: l.nodeName, uid: node.metadata?.uid });
      expect(node.metadata?.annotations?.[ANNOTATIONS.subnets]).toBe(l.subnets[0]);
      expect(node.metadata?.annotations?.[ANNOTATIONS.publicIP]).toBe("192.0.2.10");
      expect(JSON.parse(node.metadata?.annotations?.[ANNOTATIONS.backendData] ?? "{}")).toMatchObject({ vtepMAC: request(l.nodeName).backend.vtepMAC });
      const cond = node.status?.conditions?.find((c) => c.type === "NetworkUnavailable");
      expect(cond).toMatchObject({ status: "False", reason: "TwillIsUp" });
    }
  });

  it("shows watchers a node leave when its Lease or its Node is deleted, and an expired Lease's subnet free", async () => {
    await admin.wipe();
    const a = await open().acquire(request("node-a"));
    await open().acquire(request("node-b"));
    await open().acquire(request("node-c"));
    const watchers = [follow(open()), follow(open())];
    try {
      for (const w of watchers) await until("seeing a, b, c", () => w.names().join() === "node-a,node-b,node-c");
      await admin.deleteLease(leaseName(a.subnets[0]!));
      for (const w of watchers) await until("seeing node-a leave", () => w.names().join() === "node-b,node-c");
      await admin.deleteNode("node-b");
      for (const w of watchers) await until("seeing node-b leave", () => w.names().join() === "node-c");
      // node-a's subnet is free: another node that prefers it gets it.
      const d = await open().acquire({ ...request("node-d"), preferredSubnets: a.subnets });
      expect(d.subnets).toEqual(a.subnets);
      for (const w of watchers) await until("seeing node-d join", () => w.names().join() === "node-c,node-d");
    } finally {
      for (const w of watchers) w.stop();
    }
  });

  it("gives a new watcher 500 nodes in its first callback, not one node at a time (flannel#719)", async () => {
    await admin.wipe();
    const count = 500;
    const annotations = nodeAnnotations("192.0.2.10", request("x").backend, null) as Record<string, string>;
    delete annotations[ANNOTATIONS.subnets];
    const names = Array.from({ length: count }, (_, i) => `big-${String(i).padStart(3, "0")}`);
    for (let i = 0; i < count; i += 25) {
      await Promise.all(
        names.slice(i, i + 25).map((name, j) =>
          admin.core.createNode({
            body: { metadata: { name, annotations }, spec: { podCIDR: `10.${100 + Math.floor((i + j) / 256)}.${(i + j) % 256}.0/24` } },
          }),
        ),
      );
    }
    const calls: number[] = [];
    const stop = open().watch(
      (set) => calls.push(set.length),
      () => {},
    );
    try {
      await until("a first peer set", () => calls.length > 0);
      expect(calls[0]).toBe(count);
    } finally {
      stop();
    }
  });

  it("lists in pages, and resumes a watch the apiserver ended from where it was, without listing again", async () => {
    await admin.wipe();
    const names = Array.from({ length: 25 }, (_, i) => `paged-${i}`);
    await Promise.all(names.map((name) => admin.ensureNode(name)));
    const pages: number[] = [];
    const all = await listInPages(async (_limit, token) => {
      const page = await admin.core.listNode({ limit: 10, _continue: token });
      pages.push(page.items.length);
      return page;
    });
    expect(pages).toEqual([10, 10, 5]);
    expect(new Set(all.items.map((n) => n.metadata!.name)).size).toBe(25);
    // The same as plain JSON, the way the watch lists (its token is "continue" there).
    const raw: number[] = [];
    const plain = await listInPages<V1Node>(async (_limit, token) => {
      const page = await listPage<V1Node>(agentKc, "/api/v1/nodes", { limit: 10, continue: token }, 10_000);
      raw.push(page.items.length);
      return page;
    });
    expect(raw).toEqual([10, 10, 5]);
    expect(plain.items.map((n) => n.metadata!.name).sort()).toEqual(all.items.map((n) => n.metadata!.name).sort());

    // The subnet Lease watch, which the apiserver ends after 2 s (timeoutSeconds) each time.
    const coordination = agentKc.makeApiClient(CoordinationV1Api);
    let lists = 0;
    const informer = new ResilientInformer<V1Lease>({
      kubeConfig: agentKc,
      path: `/apis/coordination.k8s.io/v1/namespaces/${LEASES}/leases`,
      list: () => {
        lists++;
        return listInPages((limit, _continue) => coordination.listNamespacedLease({ namespace: LEASES, labelSelector: LEASE_SELECTOR, limit, _continue }));
      },
      labelSelector: LEASE_SELECTOR,
      onChange: () => {},
      onError: () => {},
      logger: createLogger(() => {}),
      watchSeconds: { min: 2, max: 2 },
    });
    informer.start();
    try {
      await until("the Lease informer listed", () => informer.synced || undefined);
      const listedAt = Number(informer.resourceVersion());
      await until("two watches ended by the apiserver, each resumed", () => informer.watches >= 3 || undefined);
      await open().acquire(request("after-resumes"));
      await until("the resumed watch seeing the new Lease", () => informer.list().some((l) => l.spec?.holderIdentity === "after-resumes") || undefined);
      expect(Number(informer.resourceVersion())).toBeGreaterThan(listedAt);
      expect(informer.watches).toBeGreaterThanOrEqual(3);
      expect(lists).toBe(1);
      expect(informer.relists).toBe(0);
    } finally {
      informer.stop();
    }
  });

  it("never takes over a twill Lease that does not decode, and names it", async () => {
    await admin.wipe();
    const small = parseNetworkConfig({ Network: "10.5.0.0/23", SubnetLen: 24 });
    // Lapsed long ago, but its subnet annotation is garbage: nobody can tell whose it is.
    await admin.coordination.createNamespacedLease({
      namespace: LEASES,
      body: {
        metadata: { name: "twill-10-5-0-0-24", labels: { "app.kubernetes.io/managed-by": "twilld" }, annotations: { [LEASE_SUBNET_ANNOTATION]: "garb" } },
        spec: { holderIdentity: "node-live", leaseDurationSeconds: 1, renewTime: new V1MicroTime(Date.now() - 3_600_000) },
      },
    });
    const a = open(small);
    const lease = await a.acquire({ ...request("node-a"), preferredSubnets: ["10.5.0.0/24"] });
    expect(lease.subnets).toEqual(["10.5.1.0/24"]);
    await expect(open(small).acquire(request("node-b"))).rejects.toThrow(/no free \/24 subnet/);
    const held = (await admin.twillLeases()).find((l) => l.metadata?.name === "twill-10-5-0-0-24");
    expect(held?.spec?.holderIdentity).toBe("node-live");
    await a.list();
    expect(a.unreadable()).toEqual([{ kind: "claim", key: `Lease ${LEASES}/twill-10-5-0-0-24`, reason: expect.stringMatching(/not a CIDR/) }]);
  });

  it("carries a node's subnet over from a Lease an older twilld left in kube-system, and never hands it to another node", async () => {
    await admin.wipe();
    const legacyAdmin = new Admin(adminKc, "kube-system");
    await legacyAdmin.wipe();
    const small = parseNetworkConfig({ Network: "10.244.4.0/22", SubnetLen: 24 });
    const oldLease = (subnet: string, holder: string, renewedAgoMs: number) =>
      admin.coordination.createNamespacedLease({
        namespace: "kube-system",
        body: {
          metadata: { name: leaseName(subnet), labels: { "app.kubernetes.io/managed-by": "twilld" }, annotations: { [LEASE_SUBNET_ANNOTATION]: subnet } },
          spec: {
            holderIdentity: holder,
            leaseDurationSeconds: 3600,
            acquireTime: new V1MicroTime(Date.now() - 86_400_000),
            renewTime: new V1MicroTime(Date.now() - renewedAgoMs),
            leaseTransitions: 2,
          },
        },
      });
    // What the older twilld of node-old left: its live Lease and its Node's annotations. A node
    // gone for a while left a lapsed one.
    await oldLease("10.244.7.0/24", "node-old", 60_000);
    await oldLease("10.244.6.0/24", "node-gone", 7_200_000);
    await admin.ensureNode("node-old");
    const published = nodeAnnotations("192.0.2.10", request("node-old").backend, ["10.244.7.0/24"]);
    await admin.core.patchNode(
      { name: "node-old", body: { metadata: { annotations: published } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    const before = await admin.coordination.readNamespacedLease({ namespace: "kube-system", name: leaseName("10.244.7.0/24") });

    // Upgraded nodes see node-old, not upgraded yet, by its old Lease.
    const watcher = follow(open(small));
    try {
      await until("seeing node-old by its old Lease", () => watcher.leases().find((l) => l.nodeName === "node-old")?.subnets.join() === "10.244.7.0/24" || undefined);

      // Other nodes, even asking for them, never get the old Leases' subnets, lapsed or live.
      const other = await open(small).acquire({ ...request("node-other"), preferredSubnets: ["10.244.7.0/24"] });
      const third = await open(small).acquire({ ...request("node-third"), preferredSubnets: ["10.244.6.0/24"] });
      expect([other.subnets, third.subnets].flat().sort()).toEqual(["10.244.4.0/24", "10.244.5.0/24"]);
      await expect(open(small).acquire(request("node-fourth"))).rejects.toThrow(/no free \/24 subnet/);

      // node-old restarts with this version: the same subnet, now held in twill's namespace
      // with the old claim time, and the old Lease untouched (the agent may not write there).
      const moved = await open(small).acquire(request("node-old"));
      expect(moved.subnets).toEqual(["10.244.7.0/24"]);
      const held = (await admin.twillLeases()).find((l) => l.metadata?.name === leaseName("10.244.7.0/24"));
      expect(held?.spec?.holderIdentity).toBe("node-old");
      expect(held?.spec?.leaseTransitions).toBe(2);
      expect(timeOf(held?.spec?.acquireTime)).toBe(timeOf(before.spec?.acquireTime));
      expect(timeOf(held?.spec?.acquireTime)).toBeDefined();
      const after = await admin.coordination.readNamespacedLease({ namespace: "kube-system", name: leaseName("10.244.7.0/24") });
      expect(after.metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
      // Peers read it from the new Lease (its TTL, not the old one's hour); watchers see no change.
      const listed = (await open(small).list()).find((l) => l.nodeName === "node-old");
      expect(listed?.subnets).toEqual(["10.244.7.0/24"]);
      expect(listed?.expiresAt).toBeLessThan(Date.now() + 120_000);
      expect(watcher.leases().find((l) => l.nodeName === "node-old")?.subnets).toEqual(["10.244.7.0/24"]);

      // Its old Lease deleted (the operator's clean-up), its subnet stays node-old's.
      await legacyAdmin.deleteLease(leaseName("10.244.7.0/24"));
      await expect(open(small).acquire({ ...request("node-fifth"), preferredSubnets: ["10.244.7.0/24"] })).rejects.toThrow(/no free \/24 subnet/);
    } finally {
      watcher.stop();
      await legacyAdmin.wipe();
    }
  });

  it("refuses what deploy/twill.yaml does not grant the agent", async () => {
    const core = agentKc.makeApiClient(CoreV1Api);
    const status = (p: Promise<unknown>) => p.then(() => 200, (e: { code?: number }) => e.code);
    await admin.ensureNode("node-x");
    expect(await status(core.deleteNode({ name: "node-x" }))).toBe(403);
    expect(await status(core.listSecretForAllNamespaces())).toBe(403);
    expect(await status(core.createNode({ body: { metadata: { name: "node-y" } } }))).toBe(403);
    // Leases outside twill's namespace are not the agent's: in kube-system (leader election of
    // the controller-manager and the scheduler) it may only read them.
    for (const namespace of ["default", "kube-system"]) {
      const elsewhere = new KubernetesStore({ kubeConfig: agentKc, namespace, network: NETWORK, leaseTTLMs: 60_000 });
      await expect(elsewhere.acquire(request("node-x"))).rejects.toThrow(/403/);
    }
    const coordination = agentKc.makeApiClient(CoordinationV1Api);
    await admin.coordination.createNamespacedLease({ namespace: "kube-system", body: { metadata: { name: "kube-scheduler" }, spec: { holderIdentity: "scheduler-1" } } });
    try {
      expect(await status(coordination.listNamespacedLease({ namespace: "kube-system" }))).toBe(200);
      expect(await status(coordination.readNamespacedLease({ namespace: "kube-system", name: "kube-scheduler" }))).toBe(403);
      const body = { metadata: { name: "kube-scheduler" }, spec: { holderIdentity: "node-x" } };
      expect(await status(coordination.replaceNamespacedLease({ namespace: "kube-system", name: "kube-scheduler", body }))).toBe(403);
      expect(await status(coordination.deleteNamespacedLease({ namespace: "kube-system", name: "kube-scheduler" }))).toBe(403);
      expect(await status(coordination.createNamespacedLease({ namespace: "kube-system", body: { metadata: { name: "x" } } }))).toBe(403);
    } finally {
      await admin.coordination.deleteNamespacedLease({ namespace: "kube-system", name: "kube-scheduler" });
    }
  });

  it("resumes its watch after the connection breaks and after an apiserver restart, relisting on 410 Gone", async () => {
    await admin.wipe();
    const lines: string[] = [];
    const logger = createLogger((l) => lines.push(l));
    // The watcher reaches the apiserver through a proxy that the test can cut; everyone else directly.
    const proxy = await startTcpProxy(Number(new URL(cp.server).port));
    const viaProxy = kubeConfigFor(`https://127.0.0.1:${new URL(proxy.endpoint).port}`, cp.caFile, cp.agentToken);
    const watcherStore = agentStore(viaProxy, admin, NETWORK, 60_000, { logger });
    opened.push(watcherStore);
    await open().acquire(request("node-a"));
    const watcher = follow(watcherStore);
    const relists = () => lines.filter((l) => (JSON.parse(l) as { msg: string }).msg === "Relisting after 410 Gone").length;
    try {
      await until("seeing node-a", () => watcher.names().join() === "node-a");

      // A broken connection: the watch fails, restarts with backoff and resumes where it was.
      await proxy.cut();
      await open().acquire(request("node-b"));
      await until("a watch error while cut off", () => watcher.errors.length > 0);
      await proxy.heal();
      await until("seeing node-b after the break", () => watcher.names().join() === "node-a,node-b");
      expect(relists()).toBe(0);

      // An apiserver restart while cut off, then changes: the resource version the watch
      // resumes from is older than the new apiserver's cache, so it gets 410 Gone and relists.
      await proxy.cut();
      await cp.restart("kube-apiserver");
      await until("acquiring node-c after the restart", () => open().acquire(request("node-c")).catch(() => undefined));
      await admin.deleteNode("node-a");
      await proxy.heal();
      await until("seeing node-b and node-c, not node-a", () => watcher.names().join() === "node-b,node-c");
      expect(relists()).toBeGreaterThan(0);
    } finally {
      watcher.stop();
      await proxy.close();
    }
  });
});

describe("kubernetes datastore against an apiserver that never answers", () => {
  it("fails a call at its deadline instead of hanging", async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((s) => void sockets.add(s));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as AddressInfo).port;
    // A real CA file (an empty one is refused at once by some TLS stacks, before any deadline).
    const dir = mkdtempSync(join(tmpdir(), "twill-silent-"));
    try {
      const { certFile } = await makeServingCert(dir);
      const kc = kubeConfigFor(`https://127.0.0.1:${port}`, certFile, "token");
      const store = new KubernetesStore({ kubeConfig: kc, namespace: LEASES, network: NETWORK, leaseTTLMs: 60_000, requestTimeoutMs: 500 });
      await expect(store.list()).rejects.toThrow(/datastore: failed to list nodes: .*(timeout|aborted)/i);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
