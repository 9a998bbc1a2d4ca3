import { accessSync, constants } from "node:fs";
import { join } from "node:path";

/** Where scripts/setup-kube leaves the binaries it builds from Debian's kubernetes source. */
export const kubeCacheDir = (): string => process.env.TWILL_KUBE_CACHE ?? "/var/cache/twill/kube";

export const kubeApiserverPath = (): string => join(kubeCacheDir(), "bin", "kube-apiserver");
export const kubeControllerManagerPath = (): string =>
  join(kubeCacheDir(), "bin", "kube-controller-manager");

/** Debian's etcd-server package. */
export const etcdPath = "/usr/bin/etcd";

/** Flags for a one-member etcd with its data in `dataDir`, serving `clientUrl`. */
export const etcdArgs = (dataDir: string, clientUrl: string, peerUrl: string): string[] => [
  "--name=twill-test",
  `--data-dir=${dataDir}`,
  `--listen-client-urls=${clientUrl}`,
  `--advertise-client-urls=${clientUrl}`,
  `--listen-peer-urls=${peerUrl}`,
  `--initial-advertise-peer-urls=${peerUrl}`,
  `--initial-cluster=twill-test=${peerUrl}`,
  "--initial-cluster-state=new",
];

const isExecutable = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** True when scripts/setup-kube has run, so a real control plane can be started. */
export const kubeBinariesBuilt = (): boolean =>
  isExecutable(kubeApiserverPath()) && isExecutable(kubeControllerManagerPath()) && isExecutable(etcdPath);
