import { mkdirSync } from "node:fs";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeBinariesBuilt, kubeCacheDir } from "../../testkit/kube/binaries.js";
import { startControlPlane, type ControlPlane } from "../../testkit/kube/control-plane.js";
import type { IpRoute } from "../../testkit/iproute.js";
import type { NodeKernel } from "../../shared/kernel/node-kernel.js";
import { ipIn, kernelIn } from "../../testkit/netns.js";
import { nullLogger } from "../../shared/log.js";
import { readSubnetFile } from "../../shared/subnet-file.js";
import { Agent } from "../agent.js";
import { createBackend } from "../backend/index.js";
import { parseNetworkConfig } from "../config.js";
import { createMetrics } from "../metrics.js";
import { NodeNet } from "../../testkit/node-net.js";
import { Admin, adminWithManifestRbac, kubeConfigFor, manifestLeaseNamespace } from "../../testkit/kubernetes.js";
import { KubernetesStore } from "./kubernetes.js";
import { until } from "../../testkit/until.js";

const built = kubeBinariesBuilt();

/**
 * The run loop with the kubernetes datastore: two agents in-process, each driving the real
 * VXLAN backend inside its node namespace, their subnets leased through a real apiserver with
 * the agent token and deploy/twill.yaml's RBAC.
 */
describe.skipIf(!built)(
  built ? "Agent with the kubernetes datastore" : `Agent with the kubernetes datastore (skipped: no kube binaries in ${kubeCacheDir()}/bin)`,
  () => {
    let cp: ControlPlane;
    let admin: Admin;
    let net: NodeNet | null = null;
    const agents: Agent[] = [];
    const kernels: NodeKernel[] = [];

    beforeAll(async () => {
      cp = await startControlPlane();
      admin = await adminWithManifestRbac(cp);
    });
    afterAll(async () => {
      await Promise.all(agents.splice(0).map((a) => a.stop()));
      for (const k of kernels.splice(0)) k.close();
      await net?.destroy();
      await cp?.stop();
    });

    it("routes between two nodes whose subnets are Leases, and drops a deleted Node's route", async () => {
      net = await NodeNet.create(2);
      const network = parseNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 24, Backend: { Type: "vxlan" } });
      const agentKc = kubeConfigFor(cp.server, cp.caFile, cp.agentToken);
      const ips = net.nodes.map((n) => ipIn(n.ns));
      for (const node of net.nodes) {
        mkdirSync(node.dir, { recursive: true });
        await admin.ensureNode(node.name);
        const kernel = kernelIn(node.ns);
        kernels.push(kernel);
        agents.push(
          new Agent({
            nodeName: node.name,
            network,
            store: new KubernetesStore({ kubeConfig: agentKc, namespace: manifestLeaseNamespace(), legacyNamespace: "kube-system", network, leaseTTLMs: 30_000 }),
            kernel,
            backend: () => createBackend(network, { kernel, logger: nullLogger }),
            underlay: {},
            subnetFile: node.subnetFile,
            resyncMs: 1_000,
            renewMs: 1_000,
            logger: nullLogger,
            metrics: createMetrics(false),
          }),
        );
      }
      // RBAC reaches the authorizer a moment after the objects are stored: start retries.
      await Promise.all(agents.map((a) => a.start()));
      for (const a of agents) await until("the agent ready", () => a.readiness().ready || undefined);
      const [s0, s1] = net.nodes.map((n) => readSubnetFile(n.subnetFile).nodeSubnets[0]!);
      expect(s0).not.toBe(s1);

      const routeTo = async (ip: IpRoute, dst: string) => (await ip.routes(4, ["proto", "150"])).some((r) => r.dst === dst);
      await until("node-0 routing node-1's subnet", async () => (await routeTo(ips[0]!, s1!)) || undefined);
      await until("node-1 routing node-0's subnet", async () => (await routeTo(ips[1]!, s0!)) || undefined);
      // Across the overlay: node-0 reaches node-1's VTEP address (<subnet>.0).
      const vtep1 = s1!.replace(/\/\d+$/, "");
      const ping = await execa("ip", ["netns", "exec", net.nodes[0]!.ns, "ping", "-c", "1", "-W", "2", vtep1], { reject: false });
      expect(ping.exitCode, ping.stdout + ping.stderr).toBe(0);

      const node1 = await admin.core.readNode({ name: "node-1" });
      expect(node1.status?.conditions?.find((c) => c.type === "NetworkUnavailable")?.status).toBe("False");

      await admin.deleteNode("node-1");
      await until("node-0 dropping node-1's route", async () => !(await routeTo(ips[0]!, s1!)) || undefined);
    });
  },
);
