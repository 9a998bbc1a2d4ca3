import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { etcdArgs, etcdPath } from "./kube/binaries.js";
import { freePort, httpGet, startDaemon, waitUntilReady, type Daemon } from "./daemon.js";

/**
 * A real etcd-server (Debian's /usr/bin/etcd) on 127.0.0.1 random ports with its data in a
 * temp dir, for the etcd datastore's tests. restart() stops it by PID and starts it again on
 * the same ports and data, as an etcd upgrade or crash would look to the agents.
 */
export interface EtcdServer {
  endpoint: string;
  dataDir: string;
  pid: () => number;
  stop: () => Promise<void>;
  start: () => Promise<void>;
  restart: () => Promise<void>;
  /** Stops it and removes its data. */
  destroy: () => Promise<void>;
}

const READY_MS = 30_000;

/**
 * `inNetns`: run it inside a test namespace, listening on `host` there (agents in node
 * namespaces cannot reach the machine's 127.0.0.1); `ip netns exec` execs etcd, so the PID
 * is etcd's. Without it: on 127.0.0.1 random ports of this namespace.
 */
export async function startEtcdServer(inNetns?: { netns: string; host: string }): Promise<EtcdServer> {
  const dir = mkdtempSync(join(tmpdir(), "twill-etcd-"));
  const host = inNetns?.host ?? "127.0.0.1";
  const clientPort = inNetns ? 2379 : await freePort();
  const peerPort = inNetns ? 2380 : await freePort();
  const endpoint = `http://${host}:${clientPort}`;
  const peer = `http://${host}:${peerPort}`;
  const [bin, prefix] = inNetns ? ["ip", ["netns", "exec", inNetns.netns, etcdPath]] : [etcdPath, []];
  const healthy = async () => (await httpGet(`${endpoint}/health`, inNetns?.netns)).status === 200;
  let daemon: Daemon | null = null;
  const start = async () => {
    daemon = startDaemon(
      "etcd",
      bin,
      [...prefix, ...etcdArgs(join(dir, "data"), endpoint, peer)],
      join(dir, "etcd.log"),
    );
    await waitUntilReady(daemon, "healthy", healthy, READY_MS);
  };
  const stop = async () => {
    await daemon?.stop();
    daemon = null;
  };
  await start();
  return {
    endpoint,
    dataDir: dir,
    pid: () => daemon?.pid ?? 0,
    stop,
    start,
    restart: async () => {
      await stop();
      await start();
    },
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
