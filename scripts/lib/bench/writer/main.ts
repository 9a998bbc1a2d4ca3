// The peer writer of `./scripts/bench agent`: a process of its own, as another node's agent is.
// It runs inside the node namespace, next to the datastore it writes to (for etcd and
// kubernetes on that namespace's 127.0.0.1), so no bench traffic leaves the namespaces the
// bench made.
//
//   node writer.cjs local DIR
//   node writer.cjs etcd ENDPOINT
//   node writer.cjs kubernetes KUBECONFIG podCIDRs|leases
//
// Reads one request per line on stdin, {"op":"add"|"remove","leases":[NodeLease...],"way"?} (or
// {"op":"register","name","podCIDRs"} for the agent's own Node), writes the peers the way their
// agents would, and answers {"ok":true,"ms":<how long the writes took>} or {"error":"..."} on stdout.
// `way` says how a peer is added: its subnet claim or its node record first, and (local) each
// file renamed into place or written in place with plain open/write/close. An agent writes
// claim first and renames; a store must cope with any writer (issue #22).
import { closeSync, mkdirSync, openSync, renameSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { CoordinationV1Api, CoreV1Api, KubeConfig, V1MicroTime } from "@kubernetes/client-node";
import { EtcdClient } from "../../../../agent/datastore/etcd-client.js";
import { subnetKeySuffix } from "../../../../agent/datastore/etcd.js";
import { LEASE_SUBNET_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, leaseName } from "../../../../agent/datastore/kubernetes-lease-view.js";
import { nodeAnnotations } from "../../../../agent/datastore/kubernetes-node-view.js";
import { subnetFileName } from "../../../../agent/datastore/local-claims.js";
import type { NodeLease } from "../../../../agent/types.js";
import { DEFAULT_WAY, type WriteWay } from "./way.js";

interface Writer {
  add(l: NodeLease, way: WriteWay): Promise<void>;
  remove(l: NodeLease): Promise<void>;
  /** Registers the agent's own Node, as its kubelet would (kubernetes only). */
  register?(name: string, podCIDRs: string[]): Promise<void>;
}

/** Runs the claim's and the record's writes in the order `way` asks. */
async function inOrder(way: WriteWay, claim: () => Promise<void> | void, record: () => Promise<void> | void): Promise<void> {
  if (way.order === "claim-first") {
    await claim();
    await record();
  } else {
    await record();
    await claim();
  }
}

/**
 * The local store's files: the subnet claim and the node record, each renamed into place from
 * a complete temporary file beside it (as an agent writes them) or written in place, so a
 * reader may open it between the create and the write.
 */
function localWriter(store: string): Writer {
  mkdirSync(join(store, "subnets"), { recursive: true });
  mkdirSync(join(store, "nodes"), { recursive: true });
  let n = 0;
  const put = (way: WriteWay, path: string, data: string) => {
    if (way.write === "rename") {
      const tmp = join(dirname(path), `.tmp-bench-${n++}`);
      writeFileSync(tmp, data);
      renameSync(tmp, path);
      return;
    }
    const fd = openSync(path, "w");
    try {
      writeSync(fd, data);
    } finally {
      closeSync(fd);
    }
  };
  const claimPath = (l: NodeLease) => join(store, "subnets", subnetFileName(l.subnets[0]!));
  const recordPath = (l: NodeLease) => join(store, "nodes", `${l.nodeName}.json`);
  return {
    add: (l, way) =>
      inOrder(
        way,
        () => put(way, claimPath(l), JSON.stringify({ nodeName: l.nodeName, expiresAt: l.expiresAt })),
        () => put(way, recordPath(l), JSON.stringify(l)),
      ),
    remove: async (l) => {
      unlinkSync(recordPath(l));
      unlinkSync(claimPath(l));
    },
  };
}

/** As an etcd agent publishes: the subnet claim (a create-only transaction) and the node record, both on an etcd lease. */
async function etcdWriter(endpoint: string, prefix = "/twill/"): Promise<Writer> {
  const client = new EtcdClient([endpoint], 30_000);
  const { id } = await client.leaseGrant(86_400);
  const claimKey = (l: NodeLease) => `${prefix}subnets/${subnetKeySuffix(l.subnets[0]!)}`;
  return {
    add: async (l, way) => {
      const key = claimKey(l);
      const value = JSON.stringify({ nodeName: l.nodeName });
      const { expiresAt: _e, ...record } = l;
      await inOrder(
        way,
        async () => {
          if (!(await client.txn([{ key, target: "CREATE", createRevision: 0 }], [{ put: { key, value, lease: id } }]))) throw new Error(`${key} is taken`);
        },
        () => client.put(`${prefix}nodes/${l.nodeName}`, JSON.stringify(record), id).then(() => {}),
      );
    },
    remove: async (l) => {
      await client.txn([], [{ delete: { key: claimKey(l) } }]);
      await client.txn([], [{ delete: { key: `${prefix}nodes/${l.nodeName}` } }]);
    },
  };
}

/**
 * As kube-controller-manager and a kubernetes agent publish: a Node with spec.podCIDRs and the
 * agent's annotations, or (leases) a subnet Lease held by the node, then a Node naming it.
 */
function kubernetesWriter(kubeconfig: string, path: string, namespace = "kube-system"): Writer {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const coordination = kc.makeApiClient(CoordinationV1Api);
  const annotations = (l: NodeLease, leased: boolean) =>
    Object.fromEntries(Object.entries(nodeAnnotations(l.publicIP, l.backend, leased ? l.subnets : null)).filter((e): e is [string, string] => e[1] !== null));
  return {
    add: async (l, way) => {
      if (path === "leases") {
        await inOrder(
          way,
          () =>
            coordination
              .createNamespacedLease({
                namespace,
                body: {
                  metadata: { name: leaseName(l.subnets[0]!), namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY }, annotations: { [LEASE_SUBNET_ANNOTATION]: l.subnets[0]! } },
                  spec: { holderIdentity: l.nodeName, leaseDurationSeconds: 86_400, acquireTime: new V1MicroTime(), renewTime: new V1MicroTime(), leaseTransitions: 0 },
                },
              })
              .then(() => {}),
          () => core.createNode({ body: { metadata: { name: l.nodeName, annotations: annotations(l, true) } } }).then(() => {}),
        );
      } else {
        await core.createNode({ body: { metadata: { name: l.nodeName, annotations: annotations(l, false) }, spec: { podCIDR: l.subnets[0], podCIDRs: l.subnets } } });
      }
    },
    register: async (name, podCIDRs) => {
      await core.createNode({ body: { metadata: { name }, spec: podCIDRs.length > 0 ? { podCIDR: podCIDRs[0], podCIDRs } : {} } });
    },
    remove: async (l) => {
      await core.deleteNode({ name: l.nodeName });
      if (path === "leases") await coordination.deleteNamespacedLease({ name: leaseName(l.subnets[0]!), namespace });
    },
  };
}

/** Runs `fn` over `items`, at most `width` at a time. */
async function eachLimited<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

async function main() {
  const [kind, target, path = "podCIDRs"] = process.argv.slice(2);
  const writer =
    kind === "local" ? localWriter(target!) : kind === "etcd" ? await etcdWriter(target!) : kind === "kubernetes" ? kubernetesWriter(target!, path) : null;
  if (!writer) throw new Error(`writer: want "local DIR", "etcd ENDPOINT" or "kubernetes KUBECONFIG PATH", got ${kind}`);
  const answer = (msg: object) => process.stdout.write(`${JSON.stringify(msg)}\n`);
  // One request at a time, in order: the bench waits for each answer.
  let queue = Promise.resolve();
  createInterface({ input: process.stdin }).on("line", (line) => {
    queue = queue.then(async () => {
      try {
        const req = JSON.parse(line) as { op: "add" | "remove"; leases: NodeLease[]; way?: WriteWay } | { op: "register"; name: string; podCIDRs: string[] };
        if (req.op === "register") await writer.register?.(req.name, req.podCIDRs);
        const t0 = performance.now();
        if (req.op !== "register") {
          const way = req.way ?? DEFAULT_WAY;
          await eachLimited(req.leases, 32, (l) => (req.op === "add" ? writer.add(l, way) : writer.remove(l)));
        }
        answer({ ok: true, ms: performance.now() - t0 });
      } catch (err) {
        answer({ error: String((err as { body?: unknown }).body ?? err) });
      }
    });
  });
}

main().catch((err: unknown) => {
  console.error(`writer: ${String(err)}`);
  process.exit(1);
});
