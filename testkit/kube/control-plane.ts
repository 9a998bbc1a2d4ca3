import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { etcdArgs, etcdPath, kubeApiserverPath, kubeControllerManagerPath } from "./binaries.js";
import { freePort, httpGet, startDaemon, waitUntilReady, type Daemon } from "../daemon.js";
import { inNetns } from "../netns.js";
import { makeServiceAccountKey, makeServingCert, newToken, writeTokenFile } from "./pki.js";

export interface ControlPlaneOptions {
  /** Also run kube-controller-manager with only the node IPAM controller. */
  withControllerManager?: boolean;
  /** --cluster-cidr for node CIDR allocation (default 10.244.0.0/16). */
  clusterCidr?: string;
  /** --node-cidr-mask-size (default 24). */
  nodeCidrMaskSize?: number;
  /** The controllers kube-controller-manager runs (default only nodeipam). */
  controllers?: string[];
  /**
   * Run etcd and kube-apiserver inside this test namespace, on its 127.0.0.1 (its loopback must
   * be up), for clients that run there too, such as a twilld in a node namespace. The ports are
   * then fixed: etcd 2379/2380, kube-apiserver 6443.
   */
  netns?: string;
}

export interface ControlPlane {
  /** https://127.0.0.1:PORT */
  server: string;
  /** The apiserver's self-signed serving certificate, to trust. */
  caFile: string;
  /** Token of a member of system:masters. */
  adminToken: string;
  /** Token of `agentUser`, which has no RBAC grants until a test gives it some. */
  agentToken: string;
  agentUser: string;
  /** Writes a kubeconfig for `token` and returns its path. */
  kubeconfigFor: (token: string) => string;
  /** The last lines a component logged, for failure messages. */
  logTail: (component: ControlPlaneComponent, lines?: number) => string;
  /** Stops the component and starts it again with the same flags and port (watch-resilience tests). */
  restart: (component: "kube-apiserver") => Promise<void>;
  /** Stops what this control plane started (by PID) and removes its temp dir. */
  stop: () => Promise<void>;
}

export type ControlPlaneComponent = "etcd" | "kube-apiserver" | "kube-controller-manager";

/** The user the agent token authenticates as: the name RBAC gives the twill ServiceAccount. */
export const AGENT_USER = "system:serviceaccount:kube-system:twill";
export const SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16";

// Bounded waits for start-up on a 2-core machine; the apiserver's first start also bootstraps
// the RBAC roles and priority levels before /readyz turns ok.
const ETCD_READY_MS = 30_000;
const APISERVER_READY_MS = 120_000;

/**
 * Starts a real control plane on 127.0.0.1: Debian's etcd, kube-apiserver with static tokens
 * and Node,RBAC authorization, and optionally kube-controller-manager allocating node pod CIDRs.
 * Everything lives in one temp dir; nothing listens beyond loopback.
 */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), "twill-kube-"));
  const daemons: Daemon[] = [];
  const stop = async (): Promise<void> => {
    // Reverse start order: controller-manager, apiserver, then etcd.
    for (const d of [...daemons].reverse()) await d.stop();
    daemons.length = 0;
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const etcd = await startEtcd(dir, opts.netns);
    daemons.push(etcd.daemon);

    const adminToken = newToken();
    const agentToken = newToken();
    const api = await startApiserver(dir, etcd.clientUrl, adminToken, agentToken, opts.netns);
    daemons.push(api.daemon);

    const kubeconfigFor = (token: string): string => writeKubeconfig(dir, api.server, api.caFile, token);

    if (opts.withControllerManager) {
      daemons.push(
        startControllerManager(dir, kubeconfigFor(adminToken), {
          clusterCidr: opts.clusterCidr ?? "10.244.0.0/16",
          nodeCidrMaskSize: opts.nodeCidrMaskSize ?? 24,
          controllers: opts.controllers ?? ["nodeipam"],
        }),
      );
    }

    return {
      server: api.server,
      caFile: api.caFile,
      adminToken,
      agentToken,
      agentUser: AGENT_USER,
      kubeconfigFor,
      logTail: (component, lines) => daemons.find((d) => d.name === component)?.logTail(lines) ?? "",
      restart: async () => {
        const i = daemons.findIndex((d) => d.name === "kube-apiserver");
        await daemons[i]!.stop();
        daemons[i] = await api.start();
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The binary and arguments that run `bin` in `netns` (`ip netns exec` execs it: the PID stays the daemon's). */
const runIn = (netns: string | undefined, bin: string, args: string[]): [string, string[]] =>
  netns ? ["ip", ["netns", "exec", netns, bin, ...args]] : [bin, args];

async function startEtcd(dir: string, netns?: string): Promise<{ daemon: Daemon; clientUrl: string }> {
  const clientUrl = `http://127.0.0.1:${netns ? 2379 : await freePort()}`;
  const peerUrl = `http://127.0.0.1:${netns ? 2380 : await freePort()}`;
  const daemon = startDaemon("etcd", ...runIn(netns, etcdPath, etcdArgs(join(dir, "etcd"), clientUrl, peerUrl)), join(dir, "etcd.log"));
  await waitUntilReady(daemon, "healthy", async () => (await httpGet(`${clientUrl}/health`, netns)).status === 200, ETCD_READY_MS);
  return { daemon, clientUrl };
}

async function startApiserver(
  dir: string,
  etcdUrl: string,
  adminToken: string,
  agentToken: string,
  netns?: string,
): Promise<{ daemon: Daemon; server: string; caFile: string; start: () => Promise<Daemon> }> {
  const port = netns ? 6443 : await freePort();
  const serving = await makeServingCert(dir);
  const saKey = await makeServiceAccountKey(dir);
  const tokenFile = writeTokenFile(dir, [
    { token: adminToken, user: "twill-admin", uid: "twill-admin", groups: ["system:masters"] },
    {
      token: agentToken,
      user: AGENT_USER,
      uid: "twill-agent",
      groups: ["system:serviceaccounts", "system:serviceaccounts:kube-system"],
    },
  ]);
  const args = [
    `--etcd-servers=${etcdUrl}`,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    `--secure-port=${port}`,
    // v1.20 still opens an unauthenticated port 8080 on localhost unless told not to.
    "--insecure-port=0",
    `--cert-dir=${join(dir, "apiserver-certs")}`,
    `--tls-cert-file=${serving.certFile}`,
    `--tls-private-key-file=${serving.keyFile}`,
    `--token-auth-file=${tokenFile}`,
    "--authorization-mode=Node,RBAC",
    // v1.20 requires an issuer and a signing key for service-account tokens.
    `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
    `--service-account-key-file=${saKey}`,
    `--service-account-signing-key-file=${saKey}`,
    `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
    "--allow-privileged=true",
    // The "kubernetes" Service's endpoints may not be a loopback address; without this the
    // apiserver logs a failed endpoint sync every 10 s. Nothing here uses that Service.
    "--endpoint-reconciler-type=none",
  ];
  const server = `https://127.0.0.1:${port}`;
  const ca = readFileSync(serving.certFile);
  const start = async (): Promise<Daemon> => {
    const daemon = startDaemon("kube-apiserver", ...runIn(netns, kubeApiserverPath(), args), join(dir, "kube-apiserver.log"));
    const ready = netns
      ? () => httpsOkIn(netns, `${server}/readyz`, serving.certFile, adminToken)
      : () => httpsOk(`${server}/readyz`, ca, adminToken);
    await waitUntilReady(daemon, "ready", ready, APISERVER_READY_MS);
    return daemon;
  };
  return { daemon: await start(), server, caFile: serving.certFile, start };
}

function startControllerManager(
  dir: string,
  kubeconfig: string,
  cidrs: { clusterCidr: string; nodeCidrMaskSize: number; controllers: string[] },
): Daemon {
  return startDaemon(
    "kube-controller-manager",
    kubeControllerManagerPath(),
    [
      `--kubeconfig=${kubeconfig}`,
      // By default only node IPAM: it fills spec.podCIDR(s) of each Node from --cluster-cidr.
      `--controllers=${cidrs.controllers.join(",")}`,
      "--allocate-node-cidrs=true",
      "--cidr-allocator-type=RangeAllocator",
      `--cluster-cidr=${cidrs.clusterCidr}`,
      `--node-cidr-mask-size=${cidrs.nodeCidrMaskSize}`,
      `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
      "--leader-elect=false",
      // No serving ports at all (v1.20 defaults to 10252 and 10257 on all addresses).
      "--port=0",
      "--secure-port=0",
      `--cert-dir=${join(dir, "controller-manager-certs")}`,
    ],
    join(dir, "kube-controller-manager.log"),
  );
}

/** httpsOk from inside `netns`, through curl (in the packages scripts/setup installs). */
async function httpsOkIn(netns: string, url: string, caFile: string, token: string): Promise<boolean> {
  const r = await inNetns(netns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", "--cacert", caFile, "-H", `Authorization: Bearer ${token}`, url], { reject: false });
  return String(r.stdout).trim() === "200";
}

function writeKubeconfig(dir: string, server: string, caFile: string, token: string): string {
  const file = join(dir, `kubeconfig-${token.slice(0, 8)}.json`);
  // JSON is YAML, and every kubeconfig reader accepts it.
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "twill-test", cluster: { server, "certificate-authority": caFile } }],
    users: [{ name: "twill-test", user: { token } }],
    contexts: [{ name: "twill-test", context: { cluster: "twill-test", user: "twill-test" } }],
    "current-context": "twill-test",
  };
  writeFileSync(file, JSON.stringify(config, null, 2), { mode: 0o600 });
  return file;
}

function httpsOk(url: string, ca: Buffer, token: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { ca, headers: { authorization: `Bearer ${token}` }, timeout: 5_000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
    req.end();
  });
}
