import { writeSync } from "node:fs";
import { hostname } from "node:os";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { createLogger, stderrLogger, type Level } from "../shared/log.js";
import { DEFAULT_SUBNET_FILE } from "../shared/subnet-file.js";
import { leaveCluster, runUninstall, printCheck, printNodes, printReservations, printStatus, runAgent, runRelease, type CommonOptions } from "./commands.js";
import { DATASTORE_KINDS, type DatastoreKind } from "./datastore/index.js";
import { deprecatedFlags, warnDeprecatedFlags } from "./deprecated-flags.js";
import { parseDuration } from "./durations.js";
import { ignoredEnv, withEnvDefaults } from "./env.js";
import { errorMessage } from "./errors.js";
import { checkListenAddress } from "./http.js";
import { parseAs, parseRouters } from "./bgp-node.js";
import { DEFAULT_WIREGUARD_KEY } from "./backend/wireguard/wireguard-backend.js";
import { printFlows } from "./flows/cli.js";

// twilld: the node agent (`run`) and its admin CLI. Flags wire into agent/commands.ts; every
// flag can also come from the environment as TWILL_<FLAG> (TWILL_NODE_NAME, TWILL_DATASTORE, ...);
// other TWILL_* variables are ignored (env.ts).

const common = {
  "node-name": { type: "string", default: hostname().toLowerCase(), defaultDescription: "the host name, lower-cased", describe: "This node's name (a DNS subdomain)" },
  datastore: { choices: DATASTORE_KINDS, default: "local", describe: "Where node subnets are claimed" },
  "state-dir": { type: "string", default: "/var/lib/twill", describe: "The agent's state directory" },
  "store-dir": { type: "string", describe: "local datastore: the directory every agent of this host shares [default: <state-dir>/store]" },
  "etcd-endpoints": { type: "string", default: "http://127.0.0.1:2379", describe: "etcd datastore: client URLs, comma-separated" },
  "etcd-prefix": { type: "string", default: "/twill/", describe: "etcd datastore: key prefix (ends with /)" },
  "etcd-cafile": { type: "string", describe: "etcd datastore: the CA (PEM) that signed the https:// endpoints' certificate [default: the system's CAs]" },
  "etcd-certfile": { type: "string", describe: "etcd datastore: a client certificate (PEM), for an etcd with --client-cert-auth" },
  "etcd-keyfile": { type: "string", describe: "etcd datastore: the client certificate's key (PEM)" },
  kubeconfig: { type: "string", describe: "kubernetes datastore: a kubeconfig file [default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account]" },
  "kube-namespace": { type: "string", default: "kube-system", describe: "kubernetes datastore: the namespace of the subnet Leases" },
  "subnet-file": { type: "string", default: DEFAULT_SUBNET_FILE, describe: "The node subnet file the CNI plugin reads" },
  "lease-ttl": { type: "string", default: "1h", describe: "How long a claim outlives its last renewal (renewed every TTL/3, at most every minute)" },
  "ipam-store": {
    type: "string",
    default: "/var/lib/cni/networks/twill",
    describe: "twill-ipam's store of the CNI network (<dataDir>/<network name>); pods left on a subnet the node lost are looked for in it and the other stores of its dataDir",
  },
  "leak-grace": { type: "string", default: "15m", describe: "How long a reservation must look leaked (its pod gone from this node, or made before the last boot) before it is released" },
  "bgp-dir": { type: "string", describe: "bgp backend: BIRD's configuration, control socket, PID and log; keep it across twilld restarts (a tmpfs such as /run: cleared at boot) ; `leave` shuts that BIRD down [default: <state-dir>/bird]" },
  "wireguard-dir": { type: "string", describe: "wireguard backend: wireguard-go's socket directory, bound on /run/wireguard in a mount namespace of its own (a tmpfs over /run there), for nodes that share a filesystem [default: /var/run/wireguard]" },
  "log-level": { choices: ["debug", "info", "warn", "error"], default: "info", describe: "Logs: JSON lines on stderr" },
  ...deprecatedFlags,
} as const;

const runFlags = {
  "net-conf": { type: "string", default: "/etc/twill/net-conf.json", describe: 'Cluster network config (JSON: {"Network", "SubnetLen", "Backend": {"Type"}, ...})' },
  iface: { type: "string", describe: "Underlay interface [default: the default route's device]" },
  "public-ip": { type: "string", describe: "Address peers reach this node on [default: --iface's or the default route's source]" },
  "metrics-addr": { type: "string", default: "127.0.0.1:9402", describe: 'IP:PORT for /healthz, /readyz, /metrics: loopback serves this node only, the node IP Prometheus too, 0.0.0.0 or [::] every address ("" disables)' },
  resync: { type: "string", default: "10s", describe: "Reconcile the datapath at least this often" },
  "leak-interval": { type: "string", default: "1m", describe: 'How often to look for leaked addresses in --ipam-store ("0" turns leak recovery off)' },
  "network-policy": { type: "boolean", default: true, describe: "Enforce NetworkPolicy for this node's pods (kubernetes datastore)" },
  bridge: { type: "string", default: "cni0", describe: "The pod bridge (the plugin's \"bridge\"), whose same-node traffic policy filters" },
  "policy-deny": { choices: ["reject", "drop"] as const, default: "reject" as const, describe: "What a packet NetworkPolicy denies gets: a TCP reset or ICMP prohibited (the client fails at once), or nothing" },
  "bgp-as": { type: "number", describe: "bgp backend: this node's AS (routers mode: its own or its rack's) [default: the network config's Backend.AS]" },
  "bgp-routers": { type: "string", describe: 'bgp backend, routers mode: the routers this node peers with, "ADDRESS@AS,..." [default: the network config\'s Backend.Routers]' },
  "wireguard-key": { type: "string", default: DEFAULT_WIREGUARD_KEY, describe: "wireguard backend: this node's private key (0600; made on the first start, never published)" },
  "policy-log-drops": { type: "number", default: 10, describe: "Hand packets dropped by NetworkPolicy to nflog (what `twilld flows` shows), at most N per second per pod and direction (0: none)" },
  "flow-log": { type: "string", default: "", describe: "Append every flow of this node's pods to FILE as JSON lines, rotated at 10 MiB, 5 kept (keeps flows collected)" },
  "flow-metrics": { type: "boolean", default: false, describe: "Count flows and drops per namespace and policy on /metrics (keeps flows collected)" },
  "flows-per-second": { type: "number", default: 1000, describe: "At most this many flows per second are kept, shown and counted; the rest only counted as lost" },
} as const;

const flowsFlags = {
  pod: { type: "string", describe: "Only the flows of this pod (NAMESPACE/NAME), at either end" },
  verdict: { choices: ["allowed", "dropped"] as const, describe: "Only flows NetworkPolicy allowed, or packets it dropped" },
  follow: { alias: "f", type: "boolean", default: false, describe: "Keep showing flows as they start, end and are dropped, until interrupted" },
} as const;

const uninstallFlags = {
  "cni-bin-dir": { type: "string", default: "/opt/cni/bin", describe: "Where the DaemonSet installed twill and twill-ipam" },
  "cni-conf-dir": { type: "string", default: "/etc/cni/net.d", describe: "Where the DaemonSet installed 10-twill.conflist" },
  "log-dir": { type: "string", default: "/var/log/twill", describe: "The plugin's log directory" },
  bridge: { type: "string", default: "cni0", describe: "The pod bridge" },
  "dry-run": { type: "boolean", default: false, describe: "Show what would be removed, removing nothing" },
  force: { type: "boolean", default: false, describe: "Remove even while pods are attached to the bridge (they lose their network)" },
  "wireguard-key": { type: "string", default: DEFAULT_WIREGUARD_KEY, describe: "The wireguard backend's private key: its directory is removed" },
} as const;

const outputFlag = { output: { alias: "o", choices: ["table", "json"] as const, default: "table" as const, describe: "Output format" } };
const releaseFlags = {
  leaked: { type: "boolean", default: false, describe: "Release every address `twilld ipam check` shows as leaked" },
  force: { type: "boolean", default: false, describe: "Release ADDRESS even when a live pod holds it, or when that cannot be told" },
} as const;

/** Every flag of every command: the TWILL_* variables the environment may set. */
const ALL_FLAGS = [...Object.keys(common), ...Object.keys(runFlags), ...Object.keys(outputFlag), ...Object.keys(releaseFlags), ...Object.keys(uninstallFlags), ...Object.keys(flowsFlags)];

type CommonArgv = { [K in keyof typeof common]: unknown };

function commonOptions(a: CommonArgv): CommonOptions {
  return {
    nodeName: String(a["node-name"]),
    stateDir: String(a["state-dir"]),
    datastore: a.datastore as DatastoreKind,
    storeDir: a["store-dir"] ? String(a["store-dir"]) : `${String(a["state-dir"])}/store`,
    etcdEndpoints: String(a["etcd-endpoints"]).split(",").map((s) => s.trim()).filter(Boolean),
    etcdPrefix: String(a["etcd-prefix"]),
    etcdTls: {
      ...(a["etcd-cafile"] ? { caFile: String(a["etcd-cafile"]) } : {}),
      ...(a["etcd-certfile"] ? { certFile: String(a["etcd-certfile"]) } : {}),
      ...(a["etcd-keyfile"] ? { keyFile: String(a["etcd-keyfile"]) } : {}),
    },
    ...(a.kubeconfig ? { kubeconfig: String(a.kubeconfig) } : {}),
    kubeNamespace: String(a["kube-namespace"]),
    subnetFile: String(a["subnet-file"]),
    leaseTTLMs: parseDuration(String(a["lease-ttl"]), "--lease-ttl"),
    logLevel: a["log-level"] as Level,
    ipamStore: String(a["ipam-store"]),
    leakGraceMs: parseDuration(String(a["leak-grace"]), "--leak-grace"),
    bgpDir: a["bgp-dir"] ? String(a["bgp-dir"]) : `${String(a["state-dir"])}/bird`,
    wireguardDir: a["wireguard-dir"] ? String(a["wireguard-dir"]) : null,
  };
}

async function runCommand(): Promise<number> {
  let exitCode = 0;
  const env = process.env;
  // Synchronous: a table or JSON larger than the pipe's buffer is whole before process.exit,
  // which drops what a stream still holds (Node and Bun alike).
  const write = (s: string) => void writeSync(1, s);
  await yargs(hideBin(process.argv))
    .scriptName("twilld")
    .strict()
    .options(withEnvDefaults(common, env))
    .middleware((a) => {
      const logger = stderrLogger(a["log-level"] as Level);
      const ignored = ignoredEnv(env, ALL_FLAGS);
      if (ignored.length > 0) logger.debug("Ignored environment variables that name no flag", { variables: ignored });
      warnDeprecatedFlags(a, logger);
    })
    .command(
      "run",
      "Lease this node's pod subnet, write the subnet file, program the datapath to every peer, release leaked pod addresses, serve /healthz /readyz /metrics",
      (y) => y.options(withEnvDefaults(runFlags, env)),
      async (a) => {
        const o = commonOptions(a);
        const logger = stderrLogger(o.logLevel);
        await runAgent(
          {
            ...o,
            netConf: a["net-conf"],
            ...(a.iface ? { iface: a.iface } : {}),
            ...(a["public-ip"] ? { publicIP: a["public-ip"] } : {}),
            metricsAddr: checkListenAddress(a["metrics-addr"]),
            resyncMs: parseDuration(a.resync, "--resync"),
            networkPolicy: a["network-policy"],
            bridge: a.bridge,
            policyLogDropsPerSecond: Math.max(0, Math.floor(a["policy-log-drops"])),
            policyDeny: a["policy-deny"],
            flowLog: a["flow-log"],
            flowMetrics: a["flow-metrics"],
            flowsPerSecond: Math.max(1, Math.floor(a["flows-per-second"])),
            leakIntervalMs: a["leak-interval"] === "0" ? 0 : parseDuration(a["leak-interval"], "--leak-interval"),
            ...(a["bgp-as"] !== undefined ? { bgpAs: parseAs(a["bgp-as"], "--bgp-as") } : {}),
            ...(a["bgp-routers"] !== undefined ? { bgpRouters: parseRouters(a["bgp-routers"]) } : {}),
            wireguardKey: a["wireguard-key"],
          },
          logger,
        );
      },
    )
    .command(
      "status",
      "Show this node's lease and subnet file and every peer (exits 1 when the node holds no lease)",
      (y) => y.options(withEnvDefaults(outputFlag, env)),
      async (a) => {
        const o = commonOptions(a);
        exitCode = (await printStatus({ ...o, output: a.output }, stderrLogger(o.logLevel), write)) ? 0 : 1;
      },
    )
    .command(
      "flows",
      "Show the connections of this node's pods as they start and end, and the packets NetworkPolicy dropped, with the pods and policies (asks the running agent)",
      (y) => y.options(withEnvDefaults({ ...outputFlag, ...flowsFlags }, env)),
      async (a) => {
        const o = commonOptions(a);
        const stop = new AbortController();
        for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => stop.abort());
        const req = { stateDir: o.stateDir, output: a.output, follow: a.follow, ...(a.pod ? { pod: a.pod } : {}), ...(a.verdict ? { verdict: a.verdict } : {}) };
        exitCode = (await printFlows(req, write, (s) => void writeSync(2, s), stop.signal)) ? 0 : 1;
      },
    )
    .command(
      "nodes",
      "List every node in the datastore: subnets, public IP, backend, age, and whether this node reaches it",
      (y) => y.options(withEnvDefaults(outputFlag, env)),
      async (a) => {
        const o = commonOptions(a);
        exitCode = (await printNodes({ ...o, output: a.output }, stderrLogger(o.logLevel), write)) ? 0 : 1;
      },
    )
    .command(
      "leave",
      "Give this node's subnets back for good (the node is being removed; stop twilld run first): peers drop their routes to it at once; on bgp, BIRD is shut down so it withdraws them too",
      (y) => y,
      async (a) => {
        const o = commonOptions(a);
        await leaveCluster(o, stderrLogger(o.logLevel));
      },
    )
    .command(
      "uninstall",
      "Take twill off this node once its DaemonSet is deleted and its pods are gone: the bridge, the VXLAN device, twill's routes and nftables tables, BIRD, the installed plugin and conflist, the subnet file, state and IPAM store (refused while pods are attached unless --force)",
      (y) => y.options(withEnvDefaults(uninstallFlags, env)),
      async (a) => {
        const o = commonOptions(a);
        const ok = await runUninstall(
          { ...o, cniBinDir: a["cni-bin-dir"], cniConfDir: a["cni-conf-dir"], logDir: a["log-dir"], bridge: a.bridge, dryRun: a["dry-run"], force: a.force, wireguardKey: a["wireguard-key"] },
          stderrLogger(o.logLevel),
          write,
        );
        exitCode = ok ? 0 : 1;
      },
    )
    .command("ipam", "This node's pod address reservations (twill-ipam's store, host-local's layout)", (y) =>
      y
        .command(
          "list",
          "List reservations: address, container, interface, pod, age, whether made before the last boot",
          (y) => y.options(withEnvDefaults(outputFlag, env)),
          (a) => printReservations({ ...commonOptions(a), output: a.output }, write),
        )
        .command(
          "check",
          "Show which reservations look leaked and which would be released now, releasing nothing",
          (y) => y.options(withEnvDefaults(outputFlag, env)),
          async (a) => printCheck({ ...commonOptions(a), output: a.output }, write),
        )
        .command(
          "release [address]",
          "Release ADDRESS (refused when a live pod holds it, unless --force), or every leaked one (--leaked)",
          (yy) => yy.positional("address", { type: "string", describe: "The address to release" }).options(withEnvDefaults({ ...outputFlag, ...releaseFlags }, env)),
          async (a) => {
            const ok = await runRelease(
              { ...commonOptions(a), output: a.output, ...(a.address ? { address: a.address } : {}), leaked: a.leaked, force: a.force },
              write,
            );
            exitCode = ok ? 0 : 1;
          },
        )
        .demandCommand(1, "give an ipam command: list, check or release"),
    )
    .demandCommand(1, "give a command: run, status, flows, nodes, leave, uninstall or ipam")
    .epilogue("Every flag can be set as an environment variable: TWILL_NODE_NAME, TWILL_DATASTORE, TWILL_NET_CONF, ... Other TWILL_* variables are ignored.")
    .help()
    .version(false)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .parseAsync();
  return exitCode;
}

/** The `twilld` executable: runs the command, then exits with its status (1 when it threw). */
export const main = (): Promise<never> =>
  runCommand().then(
    (code) => process.exit(code),
    (err: unknown) => {
      // Written at once: process.exit drops what a stream to a pipe still holds.
      createLogger((line) => void writeSync(2, line)).error("twilld failed", { error: errorMessage(err), ...(err && typeof err === "object" && "code" in err ? { code: (err as { code: unknown }).code } : {}) });
      process.exit(1);
    },
  );
