import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubernetesObjectApi, type KubernetesObject } from "@kubernetes/client-node";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseNetworkConfig } from "../agent/config.js";
import { kubeConfigFor, manifestObjects } from "../testkit/kubernetes.js";
import { parseIpamConfig } from "../ipam/config.js";
import { parseConf } from "../plugins/twill/config.js";
import type { NetConf } from "../shared/cni/types.js";
import { kubeBinariesBuilt, kubeCacheDir } from "../testkit/kube/binaries.js";
import { startControlPlane, type ControlPlane } from "../testkit/kube/control-plane.js";
import { loadConfig } from "./suite/config.js";

/**
 * deploy/twill.yaml against a real kube-apiserver (server-side dry run: validated and
 * admitted, nothing stored) and against the programs it runs: the ConfigMap's files parse as
 * twilld and twill parse them, the init container's script installs the plugin, and twilld's
 * CLI accepts the DaemonSet's arguments.
 */

const built = kubeBinariesBuilt();
const DIST = new URL("../dist/bin/", import.meta.url).pathname;
const objects = manifestObjects();
const byKind = (kind: string) => objects.filter((o) => o.kind === kind);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/**
 * Paths of `sent` whose values the apiserver did not keep. v1.20 drops unknown fields without
 * an error, so a misspelt field shows up only here.
 */
function lostFields(sent: Json, kept: Json, path = ""): string[] {
  if (Array.isArray(sent)) {
    if (!Array.isArray(kept)) return [path];
    return sent.flatMap((v, i) => lostFields(v, kept[i] ?? null, `${path}[${i}]`));
  }
  if (sent !== null && typeof sent === "object") {
    if (kept === null || typeof kept !== "object" || Array.isArray(kept)) return [path];
    return Object.entries(sent).flatMap(([k, v]) => lostFields(v, (kept as Record<string, Json>)[k] ?? null, `${path}.${k}`));
  }
  return sent === kept ? [] : [`${path} (${JSON.stringify(sent)} became ${JSON.stringify(kept)})`];
}

describe.skipIf(!built)(
  built ? "deploy/twill.yaml on a real apiserver" : `deploy/twill.yaml (skipped: no kube binaries in ${kubeCacheDir()}/bin; run scripts/setup-kube)`,
  () => {
    let cp: ControlPlane;
    let api: KubernetesObjectApi;

    beforeAll(async () => {
      cp = await startControlPlane();
      api = KubernetesObjectApi.makeApiClient(kubeConfigFor(cp.server, cp.caFile, cp.adminToken));
    });
    afterAll(async () => {
      await cp?.stop();
    });

    it("holds the objects twill needs", () => {
      expect(objects.map((o) => `${o.kind}/${o.metadata?.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata?.name}`)).toEqual([
        "Namespace/twill-system",
        "ServiceAccount/kube-system/twill",
        "ClusterRole/twill",
        "ClusterRoleBinding/twill",
        "Role/twill-system/twill",
        "RoleBinding/twill-system/twill",
        "Role/kube-system/twill",
        "RoleBinding/kube-system/twill",
        "ConfigMap/kube-system/twill-config",
        "DaemonSet/kube-system/twill",
      ]);
    });

    it("has every object accepted by a server-side dry run, with every field kept, and nothing stored", async () => {
      // Namespaces first, then created for real: a dry run of an object in a namespace that
      // does not exist is refused (kubectl apply creates them in the file's order).
      const namespaces = objects.filter((o) => o.kind === "Namespace");
      for (const obj of [...namespaces, ...objects.filter((o) => o.kind !== "Namespace")]) {
        const what = `${obj.kind}/${obj.metadata?.name}`;
        let accepted: KubernetesObject;
        try {
          accepted = await api.create(obj, undefined, "All");
        } catch (err) {
          throw new Error(`${what} rejected: ${(err as Error).message}`);
        }
        expect(lostFields(obj as unknown as Json, JSON.parse(JSON.stringify(accepted)) as Json), what).toEqual([]);
        if (obj.kind === "Namespace") await api.create(obj);
      }
      const ds = byKind("DaemonSet")[0]!;
      await expect(api.read({ apiVersion: ds.apiVersion!, kind: ds.kind!, metadata: { name: ds.metadata!.name!, namespace: ds.metadata!.namespace! } })).rejects.toMatchObject({ code: 404 });
    });

    it("binds its roles to the ServiceAccount the DaemonSet runs as", () => {
      const ds = byKind("DaemonSet")[0] as unknown as { metadata: { namespace: string }; spec: { template: { spec: { serviceAccountName: string } } } };
      const sa = byKind("ServiceAccount")[0]!;
      expect(ds.spec.template.spec.serviceAccountName).toBe(sa.metadata?.name);
      for (const b of [...byKind("ClusterRoleBinding"), ...byKind("RoleBinding")] as unknown as { subjects: unknown[] }[]) {
        expect(b.subjects).toEqual([{ kind: "ServiceAccount", name: sa.metadata?.name, namespace: sa.metadata?.namespace }]);
      }
      expect(ds.metadata.namespace).toBe(sa.metadata?.namespace);
    });
  },
);

describe("deploy/twill.yaml against the programs it runs", () => {
  const configMap = byKind("ConfigMap")[0] as unknown as { data: Record<string, string> };
  const ds = byKind("DaemonSet")[0] as unknown as {
    spec: { template: { spec: { initContainers: { args: string[] }[]; containers: { args: string[]; env: { name: string }[] }[] } } };
  };
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("ships a net-conf.json twilld accepts", () => {
    const network = parseNetworkConfig(JSON.parse(configMap.data["net-conf.json"]!));
    expect(network.clusterCIDRs).toEqual(["10.244.0.0/16"]);
  });

  it("ships a conflist for twill with twill-ipam in node mode, CNI 1.0.0 and the versions it supports", () => {
    const text = configMap.data["10-twill.conflist"]!;
    const list = JSON.parse(text) as { cniVersion: string; cniVersions: string[] };
    expect(list.cniVersion).toBe("1.0.0");
    expect(list.cniVersions).toContain("1.0.0");
    const { conf } = loadConfig(text, "twill");
    const twill = parseConf(conf as unknown as NetConf);
    expect(twill.nodeMode).toBe(true);
    expect(twill.ipam?.type).toBe("twill-ipam");
    expect(parseIpamConfig(conf as unknown as NetConf).nodeMode).toBe(true);
    // Pods reach Service addresses (kube-proxy DNATs them on the node) through a default route.
    expect(twill.isDefaultGateway).toBe(true);
  });

  it("chains portmap after twill for hostPort, with the portMappings capability", () => {
    const list = JSON.parse(configMap.data["10-twill.conflist"]!) as {
      plugins: { type: string; capabilities?: Record<string, boolean> }[];
    };
    expect(list.plugins.map((p) => p.type)).toEqual(["twill", "portmap"]);
    expect(list.plugins[1]!.capabilities).toEqual({ portMappings: true });
  });

  it.skipIf(!existsSync(join(DIST, "twill")))("installs twill and twill-ipam and the conflist with its init container's script", async () => {
    const root = mkdtempSync(join(tmpdir(), "twill-deploy-"));
    dirs.push(root);
    // The script's host and image paths, moved under a temp dir.
    for (const d of ["host/opt/cni/bin", "host/etc/cni/net.d", "etc/twill", "opt/twill/bin"]) mkdirSync(join(root, d), { recursive: true });
    linkSync(join(DIST, "twill"), join(root, "opt/twill/bin/twill"));
    writeFileSync(join(root, "etc/twill/10-twill.conflist"), configMap.data["10-twill.conflist"]!);
    const script = ds.spec.template.spec.initContainers[0]!.args[0]!.replace(/(^|[\s])\/(host|opt\/twill|etc\/twill)/g, `$1${root}/$2`);
    await execa("/bin/sh", ["-c", script]);

    const bin = join(root, "host/opt/cni/bin");
    expect(statSync(join(bin, "twill")).ino).toBe(statSync(join(bin, "twill-ipam")).ino);
    const installed = readFileSync(join(root, "host/etc/cni/net.d/10-twill.conflist"), "utf8");
    expect(installed).toBe(configMap.data["10-twill.conflist"]);
    // The installed plugin answers VERSION for the installed config's version.
    const { conf } = loadConfig(installed, "twill");
    for (const name of ["twill", "twill-ipam"]) {
      const r = await execa(join(bin, name), [], { input: JSON.stringify(conf), env: { CNI_COMMAND: "VERSION" } });
      expect((JSON.parse(r.stdout) as { supportedVersions: string[] }).supportedVersions).toContain("1.0.0");
    }
  });

  it("gives twilld the IPAM store of the conflist's network (and no other), mounted from the host, and no NET_RAW", () => {
    const spec = ds.spec.template.spec as unknown as {
      containers: { args: string[]; volumeMounts: { name: string; mountPath: string }[] }[];
      volumes: { name: string; hostPath?: { path: string } }[];
    };
    const container = spec.containers[0]!;
    const name = (JSON.parse(configMap.data["10-twill.conflist"]!) as { name: string }).name;
    const store = container.args.find((a) => a.startsWith("--ipam-store="))!.slice("--ipam-store=".length);
    expect(store).toBe(`/var/lib/cni/networks/${name}`);
    // That network's store alone: the other networks' reservations are none of twilld's business.
    const mount = container.volumeMounts.find((m) => store === m.mountPath)!;
    expect(mount, "a mount of the store itself").toBeDefined();
    expect(spec.volumes.find((v) => v.name === mount.name)?.hostPath?.path).toBe(mount.mountPath);
    const caps = (ds.spec.template.spec.containers[0] as unknown as { securityContext: { capabilities: { add: string[]; drop: string[] } } }).securityContext.capabilities;
    expect(caps).toEqual({ add: ["NET_ADMIN"], drop: ["NET_RAW"] });
  });

  it.skipIf(!existsSync(join(DIST, "twilld")))("runs twilld with arguments its CLI accepts", async () => {
    const container = ds.spec.template.spec.containers[0]!;
    expect(container.env.map((e) => e.name)).toContain("NODE_NAME");
    expect(container.args).toContain("--datastore=kubernetes");
    // The kubelet expands $(NODE_NAME); a net-conf that does not exist stops twilld right after
    // it parsed its arguments, before it touches any network or API.
    const args = container.args.map((a) =>
      a.replace("$(NODE_NAME)", "node-1").replace(/^--net-conf=.*/, "--net-conf=/nonexistent/twill/net-conf.json"),
    );
    const r = await execa(join(DIST, "twilld"), args, { reject: false, env: { TWILL_LOG_LEVEL: "info" } });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).not.toMatch(/Unknown argument|Invalid values/);
    expect(r.stderr).toMatch(/cannot read network config \/nonexistent\/twill\/net-conf\.json/);
  });
});
