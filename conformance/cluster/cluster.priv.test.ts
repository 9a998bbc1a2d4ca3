import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeCacheDir } from "../kube/binaries.js";
import { until } from "../testbed/checks.js";

/**
 * twill on a real cluster from scripts/cluster: kubelet + containerd nodes, the DaemonSet from
 * deploy/twill.yaml. What every pod needs from the CNI besides an address is checked by
 * Kubernetes' own e2e tests (scripts/e2e); this file checks what those do not: the install, what
 * the runtime sends, a kubelet restart, and that nothing is left reserved or behind.
 */

const REPO = join(import.meta.dirname, "..", "..");
const CLUSTER_DIR = `/var/tmp/twill-cluster-test-${process.pid}`;
const env = { ...process.env, TWILL_CLUSTER_DIR: CLUSTER_DIR };
const built =
  ["kubelet", "kube-proxy", "kube-scheduler"].every((b) => existsSync(join(kubeCacheDir(), "bin", b))) &&
  existsSync(process.env.KUBECTL ?? join(kubeCacheDir(), "bin", "kubectl"));
const canRun = built && process.getuid?.() === 0 && existsSync(join(REPO, "dist/bin/twill"));

const cluster = (...args: string[]) =>
  execa(join(REPO, "scripts/cluster"), args, { env, reject: false, stdin: "ignore", timeout: 600_000 });

async function kubectl(...args: string[]): Promise<string> {
  const r = await cluster("kubectl", ...args);
  if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const netnsList = async (): Promise<string[]> => (await execa("ip", ["netns", "list"])).stdout.split("\n").sort();

interface PodJson {
  metadata: { name: string; uid: string };
  spec: { nodeName: string };
  status: { phase: string; podIP?: string; containerStatuses?: { restartCount: number }[] };
}

const getPod = async (name: string): Promise<PodJson> => JSON.parse(await kubectl("get", "pod", name, "-o", "json")) as PodJson;

async function startPod(name: string, node: string): Promise<PodJson> {
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default" },
    spec: {
      nodeName: node,
      terminationGracePeriodSeconds: 1,
      containers: [{ name: "c", image: "docker.io/library/busybox:1.29", command: ["sleep", "3600"] }],
    },
  };
  const r = await execa(join(REPO, "scripts/cluster"), ["kubectl", "apply", "-f", "-"], { env, input: JSON.stringify(pod), reject: false });
  if (r.exitCode !== 0) throw new Error(`create pod ${name}: ${r.stderr}`);
  let running: PodJson | undefined;
  await until(`pod ${name} running`, async () => {
    const p = await getPod(name).catch(() => undefined);
    if (p?.status.phase === "Running" && p.status.podIP) running = p;
    return running !== undefined;
  }, 120_000);
  return running!;
}

const ping = (from: string, ip: string) => cluster("kubectl", "exec", from, "--", "ping", "-c", "1", "-W", "2", ip);

/** Address files in a node's twill-ipam store (host-local layout), as seen from the machine. */
const reservations = (node: string): string[] => {
  const dir = join(CLUSTER_DIR, "nodes", node, "var-lib/cni/networks/twill");
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /^[0-9.]+$|:/.test(f));
};

describe.skipIf(!canRun)("twill on a real cluster (scripts/cluster)", () => {
  let a: PodJson;
  let b: PodJson;

  beforeAll(async () => {
    const up = await cluster("up", "--nodes", "2", "--backend", "vxlan");
    if (up.exitCode !== 0) throw new Error(`scripts/cluster up failed:\n${up.stderr.slice(-4000)}`);
  }, 900_000);

  afterAll(async () => {
    const prefix = /^PREFIX=(.*)$/m.exec(readFileSync(join(CLUSTER_DIR, "cluster.env"), "utf8"))?.[1];
    expect(prefix).toBeTruthy();
    const down = await cluster("down");
    expect(down.exitCode, down.stderr).toBe(0);
    // Every namespace, process, mount and cgroup is gone: the machine is as it was (other
    // namespaces on a shared machine may come and go meanwhile; none of the cluster's stays).
    const after = await netnsList();
    expect(after.filter((n) => n.startsWith(prefix!))).toEqual([]);
    expect(existsSync(CLUSTER_DIR)).toBe(false);
    const mounts = readFileSync("/proc/self/mounts", "utf8");
    expect(mounts).not.toContain(CLUSTER_DIR);
    expect(readdirSync("/sys/fs/cgroup/pids").filter((d) => d.startsWith("twill-cluster-"))).toEqual([]);
  }, 300_000);

  it("brings two Ready nodes with twill running from its DaemonSet on each", async () => {
    const nodes = JSON.parse(await kubectl("get", "nodes", "-o", "json")) as {
      items: { metadata: { name: string }; spec: { podCIDR?: string }; status: { conditions: { type: string; status: string }[] } }[];
    };
    expect(nodes.items.map((n) => n.metadata.name).sort()).toEqual(["node-1", "node-2"]);
    for (const n of nodes.items) {
      expect(n.status.conditions.find((c) => c.type === "Ready")?.status).toBe("True");
      // twilld cleared the condition kubelet sets until the CNI is up.
      expect(n.status.conditions.find((c) => c.type === "NetworkUnavailable")?.status).toBe("False");
    }
    const ds = JSON.parse(await kubectl("-n", "kube-system", "get", "pods", "-l", "app.kubernetes.io/name=twill", "-o", "json")) as {
      items: PodJson[];
    };
    expect(ds.items.map((p) => [p.spec.nodeName, p.status.phase]).sort()).toEqual([
      ["node-1", "Running"],
      ["node-2", "Running"],
    ]);
    // The init container installed the plugin and the conflist into each node's own directories.
    for (const node of ["node-1", "node-2"]) {
      const opt = join(CLUSTER_DIR, "nodes", node, "opt/cni");
      expect(existsSync(join(opt, "bin/twill"))).toBe(true);
      expect(existsSync(join(opt, "bin/twill-ipam"))).toBe(true);
      expect(JSON.parse(readFileSync(join(opt, "net.d/10-twill.conflist"), "utf8")).name).toBe("twill");
    }
  });

  it("gives pods on both nodes addresses from their node's 10.244 subnet, reachable across nodes", async () => {
    [a, b] = await Promise.all([startPod("twill-a", "node-1"), startPod("twill-b", "node-2")]);
    const nodeCidr = async (n: string) => (await kubectl("get", "node", n, "-o", "jsonpath={.spec.podCIDR}")).trim();
    for (const p of [a, b]) {
      const cidr = await nodeCidr(p.spec.nodeName);
      expect(cidr).toMatch(/^10\.244\.\d+\.0\/24$/);
      expect(p.status.podIP!.split(".").slice(0, 3).join(".")).toBe(cidr.split(".").slice(0, 3).join("."));
    }
    const ab = await ping("twill-a", b.status.podIP!);
    expect(ab.exitCode, ab.stdout + ab.stderr).toBe(0);
    const ba = await ping("twill-b", a.status.podIP!);
    expect(ba.exitCode, ba.stdout + ba.stderr).toBe(0);
  });

  it("logs what containerd sent: the CNI version, runtimeConfig and the pod's K8S_POD_* args", () => {
    const log = readFileSync(join(CLUSTER_DIR, "nodes", "node-1", "var-log/twill/twill.log"), "utf8");
    const added = log
      .split("\n")
      .filter((l) => l.includes('"Added pod"'))
      .map((l) => JSON.parse(l) as { cniVersion: string; runtimeConfig: Record<string, unknown>; cniArgs: Record<string, string> })
      .find((e) => e.cniArgs.K8S_POD_NAME === "twill-a");
    expect(added, log.slice(-2000)).toBeDefined();
    console.log(`containerd's ADD for pod twill-a: ${JSON.stringify(added)}`);
    expect(added!.cniVersion).toBe("1.0.0");
    expect(added!.cniArgs.K8S_POD_NAMESPACE).toBe("default");
    expect(added!.cniArgs.K8S_POD_INFRA_CONTAINER_ID).toMatch(/^[0-9a-f]{64}$/);
  });

  it("keeps a node's pods reachable while its kubelet restarts", async () => {
    const pidFile = join(CLUSTER_DIR, "nodes", "node-1", "kubelet.pid");
    const pid = Number(readFileSync(pidFile, "utf8"));
    process.kill(pid, "SIGKILL");
    await until("a new kubelet on node-1", async () => Number(readFileSync(pidFile, "utf8")) !== pid, 60_000);
    // kubectl fails while the node's kubelet is away: that is "not yet", not an error.
    const ready = () => kubectl("get", "node", "node-1", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}').catch(() => "");
    await until("node-1 Ready again", async () => (await ready()).trim() === "True", 120_000);
    await sleep(5000);
    const after = await getPod("twill-a");
    expect(after.metadata.uid).toBe(a.metadata.uid);
    expect(after.status.podIP).toBe(a.status.podIP);
    expect(after.status.containerStatuses?.[0]?.restartCount).toBe(0);
    const r = await ping("twill-b", a.status.podIP!);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  });

  it("releases a pod's address when the pod is deleted through the API", async () => {
    expect(reservations("node-1")).toContain(a.status.podIP);
    expect(reservations("node-2")).toContain(b.status.podIP);
    await kubectl("delete", "pod", "twill-a", "twill-b", "--wait=true", "--timeout=120s");
    await until("reservations released", async () => reservations("node-1").length === 0 && reservations("node-2").length === 0, 60_000);
  });
});
