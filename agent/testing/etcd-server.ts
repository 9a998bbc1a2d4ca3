import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startDaemon, waitUntilReady, type Daemon } from "../../conformance/kube/daemon.js";

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

const ETCD = "/usr/bin/etcd";
const READY_MS = 30_000;

export async function startEtcdServer(): Promise<EtcdServer> {
  const dir = mkdtempSync(join(tmpdir(), "twill-etcd-"));
  const clientPort = await freePort();
  const peerPort = await freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  let daemon: Daemon | null = null;
  const start = async () => {
    daemon = startDaemon(
      "etcd",
      ETCD,
      [
        "--name=twill-test",
        `--data-dir=${join(dir, "data")}`,
        `--listen-client-urls=${endpoint}`,
        `--advertise-client-urls=${endpoint}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=twill-test=${peer}`,
        "--initial-cluster-state=new",
      ],
      join(dir, "etcd.log"),
    );
    await waitUntilReady(daemon, "healthy", async () => (await fetch(`${endpoint}/health`)).ok, READY_MS);
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
