import { hostname } from "node:os";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { stderrLogger, type Level } from "../shared/log.js";
import { DEFAULT_SUBNET_FILE } from "../shared/subnet-file.js";
import { printStatus, runAgent, type CommonOptions } from "./commands.js";
import { DATASTORE_KINDS, type DatastoreKind } from "./datastore/index.js";
import { parseDuration } from "./durations.js";
import { errorMessage } from "./errors.js";

// twilld: the node agent (`run`) and its admin CLI. Flags wire into agent/commands.ts; every
// flag can also come from the environment as TWILL_<FLAG> (TWILL_NODE_NAME, TWILL_DATASTORE, ...).

const common = {
  "node-name": { type: "string", default: hostname().toLowerCase(), defaultDescription: "the host name, lower-cased", describe: "This node's name (a DNS subdomain)" },
  datastore: { choices: DATASTORE_KINDS, default: "local", describe: "Where node subnets are claimed" },
  "state-dir": { type: "string", default: "/var/lib/twill", describe: "The agent's state directory" },
  "store-dir": { type: "string", describe: "local datastore: the directory every agent of this host shares [default: <state-dir>/store]" },
  "etcd-endpoints": { type: "string", default: "http://127.0.0.1:2379", describe: "etcd datastore: client URLs, comma-separated" },
  "etcd-prefix": { type: "string", default: "/twill/", describe: "etcd datastore: key prefix (ends with /)" },
  kubeconfig: { type: "string", describe: "kubernetes datastore: a kubeconfig file [default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account]" },
  "kube-namespace": { type: "string", default: "kube-system", describe: "kubernetes datastore: the namespace of the subnet Leases" },
  "subnet-file": { type: "string", default: DEFAULT_SUBNET_FILE, describe: "The node subnet file the CNI plugin reads" },
  "lease-ttl": { type: "string", default: "1h", describe: "How long a claim outlives its last renewal (renewed every TTL/3, at most every minute)" },
  "log-level": { choices: ["debug", "info", "warn", "error"], default: "info", describe: "Logs: JSON lines on stderr" },
} as const;

type Argv = { [K in keyof typeof common]: unknown };

function commonOptions(a: Argv): CommonOptions {
  return {
    nodeName: String(a["node-name"]),
    stateDir: String(a["state-dir"]),
    datastore: a.datastore as DatastoreKind,
    storeDir: a["store-dir"] ? String(a["store-dir"]) : `${String(a["state-dir"])}/store`,
    etcdEndpoints: String(a["etcd-endpoints"]).split(",").map((s) => s.trim()).filter(Boolean),
    etcdPrefix: String(a["etcd-prefix"]),
    ...(a.kubeconfig ? { kubeconfig: String(a.kubeconfig) } : {}),
    kubeNamespace: String(a["kube-namespace"]),
    subnetFile: String(a["subnet-file"]),
    leaseTTLMs: parseDuration(String(a["lease-ttl"]), "--lease-ttl"),
    logLevel: a["log-level"] as Level,
  };
}

async function main(): Promise<number> {
  let exitCode = 0;
  await yargs(hideBin(process.argv))
    .scriptName("twilld")
    .env("TWILL")
    .strict()
    .options(common)
    .command(
      "run",
      "Lease this node's pod subnet, write the subnet file, program the datapath to every peer, serve /healthz /readyz /metrics",
      (y) =>
        y.options({
          "net-conf": { type: "string", default: "/etc/twill/net-conf.json", describe: 'Cluster network config (JSON: {"Network", "SubnetLen", "Backend": {"Type"}, ...})' },
          iface: { type: "string", describe: "Underlay interface [default: the default route's device]" },
          "public-ip": { type: "string", describe: "Address peers reach this node on [default: --iface's or the default route's source]" },
          "metrics-addr": { type: "string", default: "127.0.0.1:9402", describe: 'HOST:PORT for /healthz, /readyz, /metrics ("" disables)' },
          resync: { type: "string", default: "10s", describe: "Reconcile the datapath at least this often" },
          "network-policy": { type: "boolean", default: true, describe: "Enforce NetworkPolicy for this node's pods (kubernetes datastore)" },
          bridge: { type: "string", default: "cni0", describe: "The pod bridge (the plugin's \"bridge\"), whose same-node traffic policy filters" },
          "policy-log-drops": { type: "number", default: 0, describe: "Log packets dropped by NetworkPolicy, at most N per second per pod and direction (0: off)" },
        }),
      async (a) => {
        const o = commonOptions(a);
        const logger = stderrLogger(o.logLevel);
        await runAgent(
          {
            ...o,
            netConf: a["net-conf"],
            ...(a.iface ? { iface: a.iface } : {}),
            ...(a["public-ip"] ? { publicIP: a["public-ip"] } : {}),
            metricsAddr: a["metrics-addr"],
            resyncMs: parseDuration(a.resync, "--resync"),
            networkPolicy: a["network-policy"],
            bridge: a.bridge,
            policyLogDropsPerSecond: Math.max(0, Math.floor(a["policy-log-drops"])),
          },
          logger,
        );
      },
    )
    .command(
      "status",
      "Show this node's lease and subnet file and every peer (exits 1 when the node holds no lease)",
      (y) => y.options({ output: { alias: "o", choices: ["table", "json"] as const, default: "table" as const, describe: "Output format" } }),
      async (a) => {
        const o = commonOptions(a);
        const ok = await printStatus({ ...o, output: a.output }, stderrLogger(o.logLevel), (s) => process.stdout.write(s));
        exitCode = ok ? 0 : 1;
      },
    )
    .demandCommand(1, "give a command: run or status")
    .epilogue("Every flag can be set as an environment variable: TWILL_NODE_NAME, TWILL_DATASTORE, TWILL_NET_CONF, ...")
    .help()
    .version(false)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .parseAsync();
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    stderrLogger().error("twilld failed", { error: errorMessage(err), ...(err && typeof err === "object" && "code" in err ? { code: (err as { code: unknown }).code } : {}) });
    process.exit(1);
  },
);
