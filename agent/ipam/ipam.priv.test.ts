import { mkdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { kubeBinariesBuilt, kubeCacheDir } from "../../testkit/kube/binaries.js";
import { startControlPlane, type ControlPlane } from "../../testkit/kube/control-plane.js";
import { podIpamStore, podNetConf, resultIps, runCni, type PodNetConf } from "../../testkit/pods.js";
import { Store } from "../../ipam/store.js";
import { nullLogger } from "../../shared/log.js";
import { writeSubnetFile } from "../../shared/subnet-file.js";
import { Admin, adminWithManifestRbac, kubeConfigFor } from "../../testkit/kubernetes.js";
import { until } from "../../testkit/until.js";
import { createMetrics } from "../metrics.js";
import { NodeNet, TWILLD, metricValue, type SimNode } from "../../testkit/node-net.js";
import { removeNetns } from "../../testkit/netns.js";
import type { ReservationView } from "./store-view.js";
import type { CheckReport } from "./cli.js";
import { kubernetesPods } from "./pods.js";
import { LeakRecovery } from "./recovery.js";
import { leakReportPath, readLeakReport } from "./report.js";

/**
 * `twilld ipam list|check|release` (the real dist/bin/twilld) on a node namespace whose pods
 * the real dist/bin/twill attached with kubelet's CNI_ARGS: with the local datastore (only the
 * boot rule), and with a real apiserver whose Pod objects say which pods live on the node.
 */

interface Pod {
  ns: string;
  containerId: string;
  ip: string;
}

describe("twilld ipam", () => {
  let net: NodeNet | null = null;
  afterEach(async () => {
    await net?.destroy();
    net = null;
  });

  /** One node namespace with a subnet file, and `count` pods attached by the real twill. */
  async function nodeWithPods(names: string[], uids: string[]): Promise<{ node: SimNode; conf: PodNetConf; pods: Pod[]; storeDir: string }> {
    net = await NodeNet.create(1);
    const n = net;
    const node = n.nodes[0]!;
    mkdirSync(node.dir, { recursive: true });
    writeSubnetFile(node.subnetFile, { clusterCIDRs: ["10.244.0.0/16"], nodeSubnets: ["10.244.7.0/24"], mtu: 1450, backend: "vxlan", ipMasq: false, nodeName: node.name });
    const conf = podNetConf("twill", node);
    const pods: Pod[] = [];
    for (const [i, name] of names.entries()) {
      const ns = await n.addPodNamespace(i);
      const containerId = `sandbox-${name}-${i}`;
      const args = `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=${containerId};K8S_POD_UID=${uids[i]}`;
      const result = await runCni(node.ns, conf, { command: "ADD", containerId, podNs: ns, args });
      pods.push({ ns, containerId, ip: resultIps(result)[0]! });
    }
    return { node, conf, pods, storeDir: podIpamStore(node) };
  }

  const twilld = async (node: SimNode, args: string[]) => {
    const r = await net!.exec(node, args);
    return { code: r.exitCode, out: String(r.stdout), err: String(r.stderr) };
  };
  /** In this namespace: the test's apiserver listens on this namespace's loopback. */
  const twilldHere = async (args: string[]) => {
    const r = await execa(TWILLD, args, { reject: false });
    return { code: r.exitCode, out: String(r.stdout), err: String(r.stderr) };
  };
  const json = <T>(r: { code: number | undefined; out: string; err: string }): T => {
    expect(r.code, r.err).toBe(0);
    return JSON.parse(r.out) as T;
  };

  it("lists each reservation with its pod, and with the local datastore releases only what predates the boot", async () => {
    const { node, conf, pods, storeDir } = await nodeWithPods(["web-0", "web-1", "web-2"], ["uid-0", "uid-1", "uid-2"]);
    const local = [`--datastore=local`, `--store-dir=${join(node.dir, "store")}`, `--ipam-store=${storeDir}`];

    const listed = json<ReservationView[]>(await twilld(node, ["ipam", "list", "-o", "json", ...local]));
    expect(listed.map((r) => [r.ip, r.containerID, r.pod?.name, r.pod?.uid, r.predatesBoot])).toEqual(
      pods.map((p, i) => [p.ip, p.containerId, `web-${i}`, `uid-${i}`, false]),
    );
    const table = await twilld(node, ["ipam", "list", ...local]);
    expect(table.out).toMatch(new RegExp(`^${pods[1]!.ip.replace(/\./g, "\\.")}\\s+sandbox-web-1\\s+eth0\\s+default/web-1\\s+\\d+s\\s+no$`, "m"));

    // A sandbox of the previous boot: its index entry names another boot, and its namespace is gone.
    const store = new Store(storeDir);
    const stale = store.indexEntry({ containerID: pods[0]!.containerId, ifname: "eth0" })!;
    store.writeIndex({ ...stale, bootId: "an-earlier-boot" });
    await removeNetns(pods[0]!.ns);

    const check = json<CheckReport>(await twilld(node, ["ipam", "check", "-o", "json", "--leak-grace=1ms", ...local]));
    expect(check.pods).toBe("none");
    expect(check.note).toMatch(/local datastore has no pods/);
    expect(check.reservations.map((j) => j.verdict.state)).toEqual(["leaked", "kept", "kept"]);
    expect(store.reservedAddresses()).toHaveLength(3); // check releases nothing

    // A reservation of this boot cannot be shown unused without pods: refused unless forced.
    const refused = await twilld(node, ["ipam", "release", pods[1]!.ip, ...local]);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(/Refused .*cannot tell whether a live pod holds it|Refused .*--force releases it anyway/);
    expect(store.owner(pods[1]!.ip)?.containerID).toBe(pods[1]!.containerId);

    const leaked = await twilld(node, ["ipam", "release", "--leaked", "--leak-grace=1ms", ...local]);
    expect(leaked.code, leaked.err).toBe(0);
    expect(leaked.out).toContain(`Released ${pods[0]!.ip} (container sandbox-web-0, pod default/web-0)`);
    const forced = await twilld(node, ["ipam", "release", pods[1]!.ip, "--force", ...local]);
    expect(forced.code, forced.err).toBe(0);
    expect(store.reservedAddresses()).toEqual([pods[2]!.ip]);
    expect(readFileSync(join(storeDir, pods[2]!.ip), "utf8")).toBe(`${pods[2]!.containerId}\r\neth0`);

    // The runtime's own DEL of a released sandbox still succeeds; the kept pod still checks.
    await runCni(node.ns, conf, { command: "DEL", containerId: pods[0]!.containerId, podNs: pods[0]!.ns });
    await runCni(node.ns, conf, { command: "DEL", containerId: pods[1]!.containerId, podNs: pods[1]!.ns });
    const unknown = await twilld(node, ["ipam", "release", "10.244.7.200", ...local]);
    expect(unknown.code).toBe(1);
    expect(unknown.out).toMatch(/no reservation of 10\.244\.7\.200/);
  });

  it("tells each sandbox up by its veth on the node, and gone once its network namespace is", async () => {
    const { node, pods, storeDir } = await nodeWithPods(["web-0", "web-1"], ["uid-0", "uid-1"]);
    const local = [`--datastore=local`, `--store-dir=${join(node.dir, "store")}`, `--ipam-store=${storeDir}`];
    const sandboxes = async () => json<ReservationView[]>(await twilld(node, ["ipam", "list", "-o", "json", ...local])).map((r) => [r.containerID, r.sandbox]);
    expect(await sandboxes()).toEqual([[pods[0]!.containerId, "up"], [pods[1]!.containerId, "up"]]);
    // The sandbox dies without a CNI DEL: its namespace, and with it both ends of the veth, are gone.
    await removeNetns(pods[0]!.ns);
    expect(await sandboxes()).toEqual([[pods[0]!.containerId, "gone"], [pods[1]!.containerId, "up"]]);
  });

  it("twilld run releases a reservation from before the last boot and what a killed ADD left, logs it with its pod and counts it in /metrics", async () => {
    const { node, pods, storeDir } = await nodeWithPods(["web-0", "web-1"], ["uid-0", "uid-1"]);
    const store = new Store(storeDir);
    const stale = store.indexEntry({ containerID: pods[0]!.containerId, ifname: "eth0" })!;
    store.writeIndex({ ...stale, bootId: "an-earlier-boot" });
    await removeNetns(pods[0]!.ns);
    // An ADD killed between creating its file and writing the owner; a hand-made name; a
    // killed writer's temporary of an index entry.
    const hourAgo = (Date.now() - 3_600_000) / 1000;
    const killed = join(storeDir, "10.244.7.200");
    writeFileSync(killed, "");
    const temporary = join(storeDir, ".twill", "by-id", "gone@eth0.tmp-1-2");
    writeFileSync(temporary, "{");
    for (const path of [killed, temporary]) utimesSync(path, hourAgo, hourAgo);
    writeFileSync(join(storeDir, "10.244.7.05"), "by-hand\r\neth0");
    const conf = join(node.dir, "net-conf.json");
    writeFileSync(conf, JSON.stringify({ Network: "10.244.0.0/16", SubnetLen: 24, Backend: { Type: "host-gw" } }));
    const agent = net!.twilld(node, [
      "run",
      `--node-name=${node.name}`,
      `--net-conf=${conf}`,
      `--subnet-file=${join(node.dir, "agent-subnet.json")}`,
      `--state-dir=${node.dir}`,
      "--datastore=local",
      `--store-dir=${join(node.dir, "store")}`,
      `--ipam-store=${storeDir}`,
      "--leak-interval=1s",
      "--leak-grace=1ms",
    ]);
    try {
      await until("the stale reservation released", () => (store.owner(pods[0]!.ip) === undefined ? true : agent.exited() ? true : undefined));
      expect(agent.exited(), agent.logTail()).toBeUndefined();
      const released = await until("the release logged", () => agent.logTail(200).split("\n").find((l) => l.includes('"msg":"Released leaked address"') && l.includes(`"address":"${pods[0]!.ip}"`)));
      expect(JSON.parse(released)).toMatchObject({ address: pods[0]!.ip, containerId: pods[0]!.containerId, pod: "default/web-0", podUid: "uid-0", reason: "earlier-boot" });
      await until("the killed ADD's file released", () => (store.owner("10.244.7.200") === undefined ? true : undefined));
      expect(agent.logTail(200)).toMatch(/"msg":"Released leaked address".*"address":"10\.244\.7\.200".*"reason":"torn-add"/);
      expect(agent.logTail(200)).toMatch(/"msg":"Skipped a store file whose name is no canonical address".*10\.244\.7\.05.*"why":"not in the canonical form of 10\.244\.7\.5"/);
      expect(agent.logTail(200)).toMatch(/"msg":"Removed temporaries of killed writers".*gone@eth0\.tmp-1-2/);
      expect(readFileSync(join(storeDir, "10.244.7.05"), "utf8")).toBe("by-hand\r\neth0");
      expect(readLeakReport(leakReportPath(node.dir))).toMatchObject({ state: "boot-only", skipped: [{ name: "10.244.7.05" }] });
      expect(agent.logTail(200)).toMatch(/"msg":"Recovering leaked addresses".*"only":"reservations from before the last boot: the datastore has no pods"/);
      const page = await until("metrics served", async () => {
        const r = await net!.get(node, "/metrics");
        return r.status === 200 ? r.body : undefined;
      });
      expect(page).toMatch(/^twill_ipam_leaks_released_total\{reason="earlier-boot"\} 1$/m);
      expect(metricValue(page, "twill_ipam_store_skipped_files")).toBe(1);
      expect(page).toMatch(/^twill_ipam_leaks_released_total\{reason="torn-add"\} 1$/m);
      // The pod of this boot keeps its address: the local datastore has no pods to judge it by.
      expect(store.owner(pods[1]!.ip)?.containerID).toBe(pods[1]!.containerId);
    } finally {
      await agent.stop();
    }
  });

  it("takes known flags from TWILL_* variables and ignores the others (the plugin's TWILL_LOG_FILE)", async () => {
    net = await NodeNet.create(1);
    const node = net.nodes[0]!;
    const env = { TWILL_LOG_FILE: "/tmp/x", TWILL_SOMETHING: "1", TWILL_IPAM_STORE: join(node.dir, "none"), TWILL_LOG_LEVEL: "debug" };
    const list = await net.exec(node, ["ipam", "list"], env);
    expect(list.exitCode, String(list.stderr)).toBe(0);
    expect(String(list.stdout)).toBe("No reservations");
    expect(String(list.stderr)).toMatch(/"msg":"Ignored environment variables that name no flag","variables":\["TWILL_LOG_FILE","TWILL_SOMETHING"\]/);
    // The report's own reproduction: status runs (and says there is no lease) instead of "Unknown argument".
    const status = await net.exec(node, ["status", `--store-dir=${join(node.dir, "store")}`, `--subnet-file=${node.subnetFile}`], { TWILL_LOG_FILE: "/tmp/x" });
    expect(String(status.stderr)).not.toMatch(/Unknown argument/);
    expect(String(status.stdout)).toMatch(/^Lease:\s+none$/m);
  });

  const built = kubeBinariesBuilt();
  describe.skipIf(!built)(built ? "with the kubernetes datastore" : `with the kubernetes datastore (skipped: no kube binaries in ${kubeCacheDir()}/bin)`, () => {
    let cp: ControlPlane;
    let admin: Admin;
    let agentKc: KubeConfig;
    beforeAll(async () => {
      cp = await startControlPlane();
      admin = await adminWithManifestRbac(cp);
      agentKc = kubeConfigFor(cp.server, cp.caFile, cp.agentToken);
      // The ServiceAccount admission wants the namespace's default account (no controller makes it here).
      await admin.core.createNamespacedServiceAccount({ namespace: "default", body: { metadata: { name: "default" } } }).catch((err: { code?: number }) => {
        if (err.code !== 409) throw err;
      });
      // The node this process runs on, as kubelet registers it: the recovery lists pods only
      // for a Node that is this host. RBAC reaches the authorizer a moment after the objects
      // are stored.
      await registerNodeHere("node-0");
      await until("the agent allowed to read its Node and list its pods", async () => ((await kubernetesPods(agentKc, "node-0").view()).kind === "listed" ? true : undefined));
    });
    afterAll(async () => {
      await cp?.stop();
    });

    /**
     * The Node this process runs on, as kubelet registers it: its InternalIP is an address of
     * this namespace's interfaces, which the leak recovery checks the node name against.
     */
    async function registerNodeHere(name: string): Promise<void> {
      await admin.ensureNode(name);
      const own = Object.values(networkInterfaces()).flatMap((addrs) => (addrs ?? []).filter((a) => !a.internal)).map((a) => a.address.split("%")[0]!);
      const node = await admin.core.readNode({ name });
      await admin.core.replaceNodeStatus({ name, body: { ...node, status: { ...node.status, addresses: own.map((address) => ({ type: "InternalIP", address })) } } });
    }

    /** A Pod bound to `nodeName` as the scheduler would (no kubelet: it stays Pending, which is live). */
    async function createPod(name: string, nodeName: string): Promise<string> {
      const pod = await admin.core.createNamespacedPod({
        namespace: "default",
        // No token to mount: no token controller runs in this control plane.
        body: { metadata: { name }, spec: { nodeName, automountServiceAccountToken: false, containers: [{ name: "c", image: "busybox" }] } },
      });
      return pod.metadata!.uid!;
    }
    /** Reports the pod Running with `ip`, as kubelet does once its sandbox is up. */
    async function reportRunning(name: string, ip: string): Promise<void> {
      const pod = await admin.core.readNamespacedPod({ name, namespace: "default" });
      await admin.core.replaceNamespacedPodStatus({ name, namespace: "default", body: { ...pod, status: { phase: "Running", podIP: ip, podIPs: [{ ip }] } } });
    }
    /** Deletes at once (no kubelet to confirm) and waits until the name is free. */
    async function deletePod(name: string): Promise<void> {
      await admin.core.deleteNamespacedPod({ name, namespace: "default", gracePeriodSeconds: 0 });
      await until(`pod ${name} gone`, async () => {
        try {
          await admin.core.readNamespacedPod({ name, namespace: "default" });
          return undefined;
        } catch {
          return true;
        }
      });
    }

    it("releases the addresses of pods gone, moved or restarted under a new UID, never a live pod's; nothing with the API away or under a wrong node name", async () => {
      await registerNodeHere("node-0");
      await admin.ensureNode("node-other"); // another node's Node: none of this host's addresses
      const names = ["live", "gone", "moved", "renewed"];
      const uids: string[] = [];
      for (const name of names) uids.push(await createPod(name, "node-0"));
      const { node, pods, storeDir } = await nodeWithPods(names, uids);
      await reportRunning("live", pods[0]!.ip);
      await deletePod("gone");
      await deletePod("moved");
      await createPod("moved", "node-elsewhere");
      await deletePod("renewed");
      await createPod("renewed", "node-0");

      const kubeconfig = join(node.dir, "kubeconfig");
      writeFileSync(kubeconfig, agentKc.exportConfig());
      const kubeWith = (file: string, nodeName = "node-0") => ["--datastore=kubernetes", `--kubeconfig=${file}`, `--node-name=${nodeName}`, `--ipam-store=${storeDir}`];
      const kube = kubeWith(kubeconfig);

      // Under a name that is no Node (the host name), or another node's: nothing, and why.
      for (const [wrong, why] of [["my-host-name", /no Node named "my-host-name" in the API/], ["node-other", /Node "node-other" is not this host/]] as const) {
        const refused = await twilldHere(["ipam", "release", "--leaked", "--leak-grace=1ms", ...kubeWith(kubeconfig, wrong)]);
        expect(refused.code, refused.err).toBe(0);
        expect(refused.out).toMatch(why);
        expect(refused.out).toMatch(/Nothing to release\./);
        const checked = await twilldHere(["ipam", "check", "--leak-grace=1ms", ...kubeWith(kubeconfig, wrong)]);
        expect(checked.out).toMatch(/^REFUSED: .*nothing would be released\.$/m);
        const sweeps = new LeakRecovery({ storeDir, pods: kubernetesPods(agentKc, wrong), graceMs: 0, intervalMs: 60_000, logger: nullLogger, metrics: createMetrics(false) });
        for (let i = 0; i < 3; i++) expect(new Set((await sweeps.sweep()).map((j) => j.verdict.state))).toEqual(new Set(["kept"]));
      }
      expect(new Store(storeDir).reservedAddresses()).toHaveLength(4);

      const check = json<CheckReport>(await twilldHere(["ipam", "check", "-o", "json", "--leak-grace=1ms", ...kube]));
      expect(check.pods).toBe("listed");
      expect(check.reservations.map((j) => [j.reservation.pod?.name, j.verdict.state])).toEqual([
        ["live", "held"],
        ["gone", "leaked"],
        ["moved", "leaked"],
        ["renewed", "leaked"],
      ]);
      const refused = await twilldHere(["ipam", "release", pods[0]!.ip, ...kube]);
      expect(refused.code).toBe(1);
      expect(refused.out).toMatch(/is held by live pod default\/live/);

      // The API unreachable: the command releases nothing and says why.
      const away = join(node.dir, "kubeconfig-away");
      writeFileSync(away, kubeConfigFor("https://127.0.0.1:1", cp.caFile, cp.agentToken).exportConfig());
      const blind = await twilldHere(["ipam", "release", "--leaked", "--leak-grace=1ms", ...kubeWith(away)]);
      expect(blind.code, blind.err).toBe(0);
      expect(blind.out).toMatch(/Note: read Node "node-0"/);
      expect(new Store(storeDir).reservedAddresses()).toHaveLength(4);

      // The agent's sweep, with the agent's own token and the manifest's RBAC (pods list by node).
      const metrics = createMetrics(false);
      const recovery = new LeakRecovery({ storeDir, pods: kubernetesPods(agentKc, "node-0"), graceMs: 0, intervalMs: 60_000, logger: nullLogger, metrics });
      const judged = await recovery.sweep();
      expect(judged.map((j) => j.verdict.state)).toEqual(["held", "leaked", "leaked", "leaked"]);
      expect(new Store(storeDir).reservedAddresses()).toEqual([pods[0]!.ip]);
    });
  });
});
