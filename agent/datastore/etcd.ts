import { setTimeout as sleep } from "node:timers/promises";
import { parseCidr } from "../../shared/net/cidr.js";
import { nullLogger, type Logger } from "../../shared/log.js";
import { oncePer } from "../../shared/memo.js";
import { systemClock, type Clock } from "../clock.js";
import { DatastoreError, LeaseLostError } from "../errors.js";
import { claimAge, checkNodeName, decodeLease, leaseKey } from "../leases.js";
import type { AcquireRequest, NetworkConfig, NodeLease, SubnetStore, UnreadableRecord } from "../types.js";
import { claimSubnets, requirePools } from "./claim.js";
import { UnreadableRecords } from "./unreadable.js";
import { LeaseSetEmitter, WatchRegistry } from "./watch-emitter.js";
import { EtcdClient, WatchCompacted, readEtcdTls, type EtcdTlsFiles, type KeyValue } from "./etcd-client.js";

/**
 * The `etcd` datastore. Keys under the prefix (default /twill/):
 *
 *   <prefix>subnets/<network>-<prefix>  {"nodeName"}   the claim, created by a transaction on
 *                                                      create_revision == 0
 *   <prefix>nodes/<node>                the NodeLease  subnets, public IP, backend data
 *
 * Both keys of a node hang on one etcd lease with the configured TTL that the agent keeps
 * alive; when it lapses etcd deletes them, which every watcher sees as the node leaving and
 * which frees the subnet. A restarted agent finds its keys by node name and adopts the etcd
 * lease they hang on, so it keeps its subnet.
 *
 * A value that does not decode costs only its key: a claim stays taken (the create-revision
 * transaction never overwrites it) and its subnet stays with the record that lists it; a node
 * record keeps the last good view of that peer.
 */

export interface EtcdStoreOptions {
  endpoints: string[];
  prefix: string;
  /** For https:// endpoints: the CA, and the client certificate of an etcd with --client-cert-auth. */
  tls?: EtcdTlsFiles;
  network?: NetworkConfig;
  leaseTTLMs: number;
  logger?: Logger;
  clock?: Clock;
}

export const subnetKeySuffix = (subnet: string): string => subnet.replace("/", "-");
const subnetOfKeySuffix = (suffix: string): string => suffix.replace(/-(\d+)$/, "/$1");

/** The owner a claim value names; undefined when the value does not decode. */
const claimOwner = (value: string): string | undefined => {
  const owner = (parseJson(value) as { nodeName?: unknown } | null)?.nodeName;
  return typeof owner === "string" ? owner : undefined;
};

/**
 * What a key-value holds, decoded once per object: a watch keeps the same KeyValue while its
 * key is unchanged, so a peer event at 5000 peers parses one value, not 10000, and hands out
 * the same lease objects (whose identity the agent remembers).
 */
const claimOf = oncePer((kv: KeyValue) => claimOwner(kv.value));
const recordOf = oncePer((kv: KeyValue) => decodeLease(parseJson(kv.value)));

export interface KvLeases {
  leases: NodeLease[];
  unreadable: UnreadableRecord[];
}

/**
 * The live leases in a snapshot of the prefix: node records, each limited to the claims naming
 * it. `lastGood` (node key → record) is what an undecodable record falls back to; it is updated
 * with every record that decodes and pruned of keys no longer present.
 */
export function leasesFromKvs(prefix: string, kvs: Iterable<KeyValue>, lastGood = new Map<string, NodeLease>()): KvLeases {
  const owners = new Map<string, string>();
  const unreadableClaims = new Set<string>();
  const records: NodeLease[] = [];
  const unreadable: UnreadableRecord[] = [];
  const nodeKeys = new Set<string>();
  for (const kv of kvs) {
    if (kv.key.startsWith(`${prefix}subnets/`)) {
      const subnet = subnetOfKeySuffix(kv.key.slice(prefix.length + "subnets/".length));
      const owner = claimOf(kv);
      if (owner !== undefined) owners.set(subnet, owner);
      else {
        unreadableClaims.add(subnet);
        unreadable.push({ kind: "claim", key: kv.key, reason: "value is not a claim ({\"nodeName\"})" });
      }
    } else if (kv.key.startsWith(`${prefix}nodes/`)) {
      nodeKeys.add(kv.key);
      const lease = recordOf(kv);
      if (lease) lastGood.set(kv.key, lease);
      else unreadable.push({ kind: "node", key: kv.key, reason: "value is not a node record" });
      const view = lease ?? lastGood.get(kv.key);
      if (view) records.push(view);
    }
  }
  for (const key of [...lastGood.keys()]) if (!nodeKeys.has(key)) lastGood.delete(key);
  const leases: NodeLease[] = [];
  for (const l of records) {
    const subnets = l.subnets.filter((s) => owners.get(s) === l.nodeName || unreadableClaims.has(s));
    // The record itself while every subnet it lists is claimed: the same object as last time.
    if (subnets.length === l.subnets.length) leases.push(l);
    else if (subnets.length > 0) leases.push({ ...l, subnets });
  }
  return { leases, unreadable };
}

export class EtcdStore implements SubnetStore {
  readonly client: EtcdClient;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly ttlSeconds: number;
  /** The etcd lease each node's keys hang on, as acquired through this store. */
  private readonly leaseIds = new Map<string, string>();
  private readonly watches = new WatchRegistry();
  private readonly damaged: UnreadableRecords;
  private readonly lastGood = new Map<string, NodeLease>();

  constructor(private readonly opts: EtcdStoreOptions) {
    if (!opts.prefix.endsWith("/")) throw new DatastoreError("use etcd prefix", `"${opts.prefix}" must end with "/"`);
    this.client = new EtcdClient(opts.endpoints, undefined, readEtcdTls(opts.tls ?? {}));
    this.logger = opts.logger ?? nullLogger;
    this.clock = opts.clock ?? systemClock;
    this.ttlSeconds = Math.max(2, Math.ceil(opts.leaseTTLMs / 1000));
    this.damaged = new UnreadableRecords(this.logger);
  }

  unreadable(): UnreadableRecord[] {
    return this.damaged.list();
  }

  private subnetKey = (subnet: string) => `${this.opts.prefix}subnets/${subnetKeySuffix(subnet)}`;
  private nodeKey = (name: string) => `${this.opts.prefix}nodes/${checkNodeName(name)}`;

  async acquire(req: AcquireRequest): Promise<NodeLease> {
    const name = checkNodeName(req.nodeName);
    const pools = requirePools(this.opts.network);
    const { kvs } = await this.client.rangePrefix(`${this.opts.prefix}subnets/`);
    const claims = kvs.map((kv) => ({
      subnet: subnetOfKeySuffix(kv.key.slice(`${this.opts.prefix}subnets/`.length)),
      owner: claimOwner(kv.value),
      kv,
    }));
    // An undecodable claim names no owner: it is among the taken ones below, never free.
    for (const c of claims) {
      if (c.owner === undefined) this.damaged.set({ kind: "claim", key: c.kv.key, reason: "value is not a claim ({\"nodeName\"})" });
    }
    const own = claims.filter((c) => c.owner === name);
    const leaseId = await this.leaseFor(own.map((c) => c.kv.lease));
    const ownerValue = JSON.stringify({ nodeName: name });

    const subnets = await claimSubnets(pools, name, req.preferredSubnets ?? [], {
      own: own.map((c) => c.subnet),
      taken: claims.filter((c) => c.owner !== name).map((c) => parseCidr(c.subnet)),
      claim: (subnet) => {
        const key = this.subnetKey(subnet);
        const mine = own.find((c) => c.subnet === subnet);
        // Our own claim: move it onto the current etcd lease unless someone changed it since.
        const compare = mine
          ? { key, target: "MOD" as const, modRevision: mine.kv.modRevision }
          : { key, target: "CREATE" as const, createRevision: 0 };
        return this.client.txn([compare], [{ put: { key, value: ownerValue, lease: leaseId } }], [], `claim subnet ${subnet}`);
      },
      drop: (subnet) => this.deleteClaim(subnet, name),
    });

    const { kvs: prevKvs } = await this.client.range(this.nodeKey(name));
    const prev = prevKvs[0] ? decodeLease(parseJson(prevKvs[0].value)) : null;
    const now = this.clock.now();
    const { acquiredAt, kept } = claimAge(prev, subnets, now);
    const record: NodeLease = {
      nodeName: name,
      subnets,
      publicIP: req.publicIP,
      backend: req.backend,
      acquiredAt,
    };
    await this.client.put(this.nodeKey(name), JSON.stringify(record), leaseId);
    this.leaseIds.set(name, leaseId);
    this.logger.info("Acquired lease", { node: name, subnets, kept, etcdLease: leaseId });
    return { ...record, expiresAt: now + this.ttlSeconds * 1000 };
  }

  async renew(lease: NodeLease): Promise<NodeLease> {
    const name = lease.nodeName;
    const { kvs } = await this.client.range(this.nodeKey(name));
    const current = kvs[0];
    if (!current) throw new LeaseLostError(name, "its node record is gone from etcd");
    const leaseId = this.leaseIds.get(name) ?? current.lease;
    const ttl = await this.client.leaseKeepAlive(leaseId);
    if (ttl <= 0) throw new LeaseLostError(name, `etcd lease ${leaseId} expired`);
    const { expiresAt: _e, ...record } = lease;
    const published = decodeLease(parseJson(current.value));
    // Republish only what changed: every put is an event on every peer's watch.
    if (!published || leaseKey(published) !== leaseKey(lease)) {
      await this.client.put(this.nodeKey(name), JSON.stringify(record), leaseId);
    }
    return { ...lease, expiresAt: this.clock.now() + ttl * 1000 };
  }

  async list(): Promise<NodeLease[]> {
    const { kvs } = await this.client.rangePrefix(this.opts.prefix);
    return this.decode(kvs);
  }

  private decode(kvs: Iterable<KeyValue>): NodeLease[] {
    const { leases, unreadable } = leasesFromKvs(this.opts.prefix, kvs, this.lastGood);
    this.damaged.replace(unreadable);
    return leases;
  }

  /**
   * Lists once, then follows the watch stream. After a broken stream it resumes from the last
   * revision seen + 1, so no change is lost; when that revision is compacted it lists again.
   */
  watch(onChange: (leases: NodeLease[]) => void, onError: (err: Error) => void): () => void {
    const abort = new AbortController();
    const prefix = this.opts.prefix;
    const state = new Map<string, KeyValue>();
    let revision = 0;
    // etcd deletes a lapsed node's keys itself: every change of the set is an event.
    const emitter = new LeaseSetEmitter({ clock: this.clock, onChange, onError, read: () => this.decode(state.values()) });
    const loop = async () => {
      let needList = true;
      let backoff = 250;
      while (!abort.signal.aborted) {
        try {
          if (needList) {
            const snap = await this.client.rangePrefix(prefix);
            state.clear();
            for (const kv of snap.kvs) state.set(kv.key, kv);
            revision = snap.revision;
            needList = false;
            emitter.emit();
          }
          // A stream that stays quiet is reopened now and then (from the same revision), so an
          // HTTP idle timeout never shows up as an error.
          const stream = new AbortController();
          const onAbort = () => stream.abort();
          abort.signal.addEventListener("abort", onAbort);
          const recycle = setTimeout(() => stream.abort(), 120_000);
          try {
            await this.client.watch(
              prefix,
              revision + 1,
              {
                onCreated: () => {
                  backoff = 250;
                },
                onEvents: (events, rev) => {
                  for (const e of events) {
                    if (e.type === "put") state.set(e.kv.key, e.kv);
                    else state.delete(e.kv.key);
                  }
                  revision = rev;
                  emitter.emit();
                },
              },
              stream.signal,
            );
          } finally {
            clearTimeout(recycle);
            abort.signal.removeEventListener("abort", onAbort);
          }
        } catch (err) {
          if (abort.signal.aborted) return;
          if (err instanceof WatchCompacted) needList = true;
          emitter.fail(err);
          await sleep(backoff, undefined, { signal: abort.signal }).catch(() => {});
          backoff = Math.min(backoff * 2, 5000);
        }
      }
    };
    void loop();
    return this.watches.add(() => {
      abort.abort();
      emitter.stop();
    });
  }

  async release(nodeName: string): Promise<void> {
    const { kvs } = await this.client.range(this.nodeKey(nodeName));
    const leaseId = this.leaseIds.get(nodeName) ?? kvs[0]?.lease;
    const { kvs: claims } = await this.client.rangePrefix(`${this.opts.prefix}subnets/`);
    for (const kv of claims) {
      if ((parseJson(kv.value) as { nodeName?: string } | null)?.nodeName === nodeName) {
        await this.client.txn([{ key: kv.key, target: "MOD", modRevision: kv.modRevision }], [{ delete: { key: kv.key } }]);
      }
    }
    await this.client.txn([], [{ delete: { key: this.nodeKey(nodeName) } }]);
    if (leaseId && leaseId !== "0") await this.client.leaseRevoke(leaseId);
    this.leaseIds.delete(nodeName);
  }

  async close(): Promise<void> {
    this.watches.stopAll();
    this.client.close();
  }

  /** The etcd lease the node's keys already hang on when it is still alive, else a new one. */
  private async leaseFor(existing: string[]): Promise<string> {
    for (const id of new Set(existing)) {
      if (id === "0") continue;
      if ((await this.client.leaseKeepAlive(id)) > 0) return id;
    }
    return (await this.client.leaseGrant(this.ttlSeconds)).id;
  }

  private async deleteClaim(subnet: string, nodeName: string): Promise<void> {
    const key = this.subnetKey(subnet);
    const { kvs } = await this.client.range(key);
    const kv = kvs[0];
    if (kv && (parseJson(kv.value) as { nodeName?: string } | null)?.nodeName === nodeName) {
      await this.client.txn([{ key, target: "MOD", modRevision: kv.modRevision }], [{ delete: { key } }]);
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
