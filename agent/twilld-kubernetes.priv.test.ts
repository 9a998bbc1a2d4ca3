import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSubnetFile } from "../shared/subnet-file.js";
import type { Daemon } from "../testkit/daemon.js";
import { kubeBinariesBuilt, kubeCacheDir } from "../testkit/kube/binaries.js";
import { startControlPlane, type ControlPlane } from "../testkit/kube/control-plane.js";
import { forwardApiserver, type ApiserverForward } from "../testkit/kube/forward.js";
import { Admin, adminWithManifestRbac, kubeConfigFor, manifestLeaseNamespace } from "../testkit/kubernetes.js";
import { NodeNet, metricValue, type SimNode } from "../testkit/node-net.js";
import { podIpamStore } from "../testkit/pods.js";
import { until } from "../testkit/until.js";
import { ANNOTATIONS } from "./datastore/kubernetes-node-view.js";

const built = kubeBinariesBuilt();

/**
 * The real dist/bin/twilld, the compiled executable, with the kubernetes datastore against a
 * real apiserver as the DaemonSet runs it: the agent's token and deploy/twill.yaml's RBAC, one
 * twilld per node namespace. Lists, watches, Lease creates and renewals, Node patches and
 * deletes go through client-node on the executable's runtime and its HTTP and TLS, which the
 * in-process tests of the datastore (under the test runner's runtime) do not exercise.
 */
describe.skipIf(!built)(
  built ? "twilld with the kubernetes datastore" : `twilld with the kubernetes datastore (skipped: no kube binaries in ${kubeCacheDir()}/bin)`,
  () => {
    let cp: ControlPlane;
    let admin: Admin;
    let net: NodeNet | null = null;
    const forwards: ApiserverForward[] = [];
    const daemons: Daemon[] = [];

    beforeAll(async () => {
      cp = await startControlPlane();
      admin = await adminWithManifestRbac(cp);
    });
    afterAll(async () => {
      await Promise.all(daemons.splice(0).map((d) => d.stop()));
      await Promise.all(forwards.splice(0).map((f) => f.stop()));
      await net?.destroy();
      await cp?.stop();
    });

    /** The flags that point a twilld in `node`'s namespace at the apiserver with the agent's token. */
    async function kubeFlags(node: SimNode): Promise<string[]> {
      const forward = await forwardApiserver(cp.server, node.ns);
      forwards.push(forward);
      const file = join(node.dir, "kubeconfig");
      writeFileSync(file, kubeConfigFor(forward.server, cp.caFile, cp.agentToken).exportConfig());
      return ["--datastore=kubernetes", `--kubeconfig=${file}`, `--kube-namespace=${manifestLeaseNamespace()}`, `--node-name=${node.name}`];
    }

    it("leases a subnet per node and renews it, patches its Node, follows the peer through the watch, and stops with status 0", async () => {
      net = await NodeNet.create(2);
      const n = net;
      const conf = join(n.dir, "net-conf.json");
      writeFileSync(conf, JSON.stringify({ Network: "10.244.0.0/16", SubnetLen: 24, Backend: { Type: "vxlan" } }));
      const flags: string[][] = [];
      for (const node of n.nodes) {
        mkdirSync(node.dir, { recursive: true });
        await admin.ensureNode(node.name);
        flags.push(await kubeFlags(node));
      }
      const agents = n.nodes.map((node, i) => {
        const d = n.twilld(node, [
          "run",
          ...flags[i]!,
          `--net-conf=${conf}`,
          `--subnet-file=${node.subnetFile}`,
          `--state-dir=${node.dir}`,
          `--ipam-store=${podIpamStore(node)}`,
          "--resync=2s",
          // Renewed every second.
          "--lease-ttl=3s",
        ]);
        daemons.push(d);
        return d;
      });
      const metric = async (node: SimNode, name: string) => metricValue((await n.get(node, "/metrics")).body, name);
      for (const [i, node] of n.nodes.entries()) {
        await until(`${node.name} ready`, async () => {
          if (agents[i]!.exited()) throw new Error(`${node.name} ${agents[i]!.exited()}: ${agents[i]!.logTail()}`);
          return (await n.get(node, "/readyz")).status === 200 || undefined;
        });
      }
      const subnets = n.nodes.map((node) => readSubnetFile(node.subnetFile).nodeSubnets[0]!);
      expect(new Set(subnets).size).toBe(2);

      // The Leases: created by each node, held by it, and renewed.
      const leases = async () => new Map((await admin.twillLeases()).map((l) => [l.spec?.holderIdentity, String(l.spec?.renewTime)]));
      const first = await leases();
      expect([...first.keys()].sort()).toEqual(["node-0", "node-1"]);
      await until("both Leases renewed", async () => {
        const now = await leases();
        return [...first].every(([holder, t]) => now.get(holder) !== t) || undefined;
      });

      // The Nodes: annotations (a merge patch) and the NetworkUnavailable condition (a status patch).
      for (const [i, node] of n.nodes.entries()) {
        const obj = await admin.core.readNode({ name: node.name });
        expect(obj.metadata?.annotations?.[ANNOTATIONS.publicIP]).toBe(node.ip);
        expect(obj.metadata?.annotations?.[ANNOTATIONS.subnets]).toContain(subnets[i]);
        expect(obj.status?.conditions?.find((c) => c.type === "NetworkUnavailable")?.status).toBe("False");
      }

      // The watch: each sees the other, and node-0 drops node-1 once its Node is deleted.
      for (const node of n.nodes) await until(`${node.name} seeing its peer`, async () => (await metric(node, "twill_peers")) === 1 || undefined);
      await admin.deleteNode("node-1");
      await until("node-0 dropping node-1", async () => (await metric(n.nodes[0]!, "twill_peers")) === 0 || undefined);

      // The admin CLI lists through the API too.
      const status = await n.exec(n.nodes[0]!, ["status", ...flags[0]!, `--subnet-file=${n.nodes[0]!.subnetFile}`, "--output=json"]);
      expect(status.exitCode, String(status.stderr)).toBe(0);
      expect((JSON.parse(String(status.stdout)) as { lease: { subnets: string[] } }).lease.subnets).toEqual([subnets[0]]);

      // SIGTERM: a clean stop, and the Lease stays for the next start (flannel#1308).
      await agents[0]!.stop();
      expect(agents[0]!.exited()).toMatch(/exited with code 0/);
      expect((await leases()).has("node-0")).toBe(true);
    });
  },
);
