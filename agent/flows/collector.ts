import type { Logger } from "../../shared/log.js";
import { formatIp, parseIpOrNull } from "../../shared/net/cidr.js";
import { errorMessage } from "../errors.js";
import { readPodIp } from "../policy/addresses.js";
import type { PolicyPlan } from "../policy/plan.js";
import type { PodInfo, PolicySnapshot } from "../policy/types.js";
import { decider, type Decider } from "./decide.js";
import type { ConntrackEvent, DroppedPacket } from "../../shared/kernel/netlink/flow-events.js";
import type { FlowMetrics } from "./metrics.js";
import { fromConntrack, fromDropped, indexEnforced, type EnforcedIndex, type FlowRecord } from "./record.js";
import { RecordRing } from "./ring.js";
import type { FlowFeed, FlowHello } from "./socket.js";
import type { TokenBucket } from "./limiter.js";

/**
 * The agent's flows: reads the kernel's conntrack events and the policy's nflog group while
 * anyone wants flows, turns them into records (record.ts) by the policy state in force, and
 * hands each to the followers, the ring of recent ones, the metrics and the file sink.
 *
 * Nothing is read while no one wants flows: the kernel then makes no conntrack events for
 * this namespace and discards the nflog copies. A follower (`twilld flows --follow`) opens the
 * sources and the last one to leave closes them; a file sink or the metrics keep them open
 * for good. Reading is a drain of non-blocking sockets every `pollMs`, away from the packets'
 * path; a burst beyond the token bucket's rate is counted as lost, not queued.
 */

/** The kernel's flow events, as shared/kernel/netlink/flow-events.ts reads them. */
export interface FlowSource {
  drain(on: { conntrack(e: ConntrackEvent): void; dropped(p: DroppedPacket): void }): { lost: number };
  close(): void;
}

/** What flows are told by: every pod by address, and what the table in force enforces. */
export interface FlowView {
  snapshot: PolicySnapshot | null;
  enforced: Pick<PolicyPlan, "counters" | "pods"> | null;
}

export interface FlowSink {
  write(records: readonly FlowRecord[]): void;
  close(): void;
}

export interface FlowCollectorOptions {
  nodeName: string;
  open(): FlowSource;
  view(): FlowView;
  /** Keeps the sources open with no follower: a sink or metrics want every flow. */
  sink: FlowSink | null;
  metrics: FlowMetrics | null;
  limiter: TokenBucket;
  ringSize?: number;
  pollMs?: number;
  logger: Logger;
  now?: () => number;
}

/** How soon a collector that must always collect tries the kernel's sources again. */
const RETRY_OPEN_MS = 10_000;

/** How old the policies flows are told by may be while snapshots keep coming. */
const DECIDER_EVERY_MS = 1000;

/** Ended connections remembered to tell a DESTROY after a close: a busy node's TIME_WAIT entries. */
const ENDED_KEPT = 65_536;

export class FlowCollector implements FlowFeed {
  private source: FlowSource | null = null;
  private timer: NodeJS.Timeout | undefined;
  private readonly followers = new Set<(r: FlowRecord) => void>();
  private readonly ring: RecordRing<FlowRecord>;
  private readonly always: boolean;
  private lastOpenError: string | undefined;
  private stopped = false;
  /**
   * Connections whose end was recorded at their close (TCP), by conntrack id: their DESTROY,
   * up to the TIME_WAIT timeout later, is the same end. Oldest first, at most ENDED_KEPT.
   */
  private readonly ended = new Set<number>();
  private indexed: { plan: FlowView["enforced"]; index: EnforcedIndex } | null = null;
  /** The address index of `snapshot`, and the decider of `decidedFor`, made at `decidedAt`. */
  private told: { snapshot: PolicySnapshot; podOf: (ip: string) => PodInfo | null; decide: Decider; decidedFor: PolicySnapshot; decidedAt: number } | null = null;

  constructor(private readonly o: FlowCollectorOptions) {
    this.ring = new RecordRing(o.ringSize ?? 1000);
    this.always = o.sink !== null || o.metrics !== null;
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  start(): void {
    if (this.always) this.ensureOpen();
  }

  stop(): void {
    this.stopped = true;
    this.followers.clear();
    this.close();
    this.o.sink?.close();
  }

  /** Whether the kernel's sources are open now. */
  get reading(): boolean {
    return this.source !== null;
  }

  hello(): FlowHello {
    return { collecting: this.always ? "always" : "on-demand", kept: this.ring.size };
  }

  recent(): readonly FlowRecord[] {
    return this.ring.list();
  }

  follow(on: (r: FlowRecord) => void): () => void {
    this.followers.add(on);
    this.ensureOpen();
    return () => {
      this.followers.delete(on);
      if (this.followers.size === 0 && !this.always) this.close();
    };
  }

  /** Reads what the kernel queued; the timer calls it, tests may too. */
  poll(): void {
    const source = this.source;
    if (!source) return;
    const out: FlowRecord[] = [];
    let unknown = 0;
    const { lost } = source.drain({
      conntrack: (e) => {
        if (this.endedBefore(e)) return;
        const ctx = this.context();
        if (ctx) out.push(...fromConntrack(e, ctx));
      },
      dropped: (p) => {
        const ctx = this.context();
        const enforced = this.enforcedIndex();
        const r = ctx && enforced ? fromDropped(p, { enforced, podOf: ctx.podOf, now: ctx.now }) : null;
        if (r) out.push(r);
        else unknown++;
      },
    });
    if (lost > 0) this.o.metrics?.countLost("overflow", lost);
    if (unknown > 0) this.o.metrics?.countLost("unknown-prefix", unknown);
    const kept = out.filter(() => this.o.limiter.take());
    if (kept.length < out.length) this.o.metrics?.countLost("rate", out.length - kept.length);
    if (kept.length === 0) return;
    for (const r of kept) {
      this.ring.push(r);
      this.o.metrics?.count(r);
      for (const f of this.followers) f(r);
    }
    try {
      this.o.sink?.write(kept);
    } catch (err) {
      this.o.logger.warn("Writing flows to the file failed", { error: errorMessage(err) });
    }
  }

  /** Whether `e` is the DESTROY of a connection whose close was recorded; notes a close. */
  private endedBefore(e: ConntrackEvent): boolean {
    if (e.kind !== "end" || e.id === null) return false;
    if (!e.closed) return this.ended.delete(e.id);
    this.ended.add(e.id);
    if (this.ended.size > ENDED_KEPT) this.ended.delete(this.ended.values().next().value!);
    return false;
  }

  /** The plan in force, indexed once per plan. */
  private enforcedIndex(): EnforcedIndex | null {
    const plan = this.o.view().enforced;
    if (!plan) return null;
    if (this.indexed?.plan !== plan) this.indexed = { plan, index: indexEnforced(plan) };
    return this.indexed.index;
  }

  /**
   * Who is who by the newest snapshot, and which policies admit what by one at most
   * DECIDER_EVERY_MS old: every pod event is a new snapshot, and reading every policy again
   * for each would cost a busy node more than the flows are worth.
   */
  private context(): { nodeName: string; podOf: (ip: string) => PodInfo | null; now: () => number; decide: Decider } | null {
    const snapshot = this.o.view().snapshot;
    if (!snapshot) return null;
    const now = this.now();
    if (!this.told || (this.told.decidedFor !== snapshot && now - this.told.decidedAt >= DECIDER_EVERY_MS)) {
      this.told = { snapshot, podOf: podIndex(snapshot, this.o.nodeName), decide: decider(snapshot), decidedFor: snapshot, decidedAt: now };
    } else if (this.told.snapshot !== snapshot) {
      this.told = { ...this.told, snapshot, podOf: podIndex(snapshot, this.o.nodeName) };
    }
    return { nodeName: this.o.nodeName, podOf: this.told.podOf, now: () => this.now(), decide: this.told.decide };
  }

  private ensureOpen(): void {
    if (this.source || this.stopped) return;
    try {
      this.source = this.o.open();
      this.lastOpenError = undefined;
      this.o.logger.info("Collecting flows", { why: this.always ? "a flow log or flow metrics" : "someone follows them" });
    } catch (err) {
      const error = errorMessage(err);
      if (error !== this.lastOpenError) this.o.logger.warn("Cannot read flows from the kernel", { error });
      this.lastOpenError = error;
      // A follower retries by asking again; a flow log or metrics would wait for nobody.
      if (this.always && !this.stopped) setTimeout(() => this.ensureOpen(), RETRY_OPEN_MS).unref?.();
      return;
    }
    this.timer = setInterval(() => this.pollOrReopen(), this.o.pollMs ?? 100);
    this.timer.unref?.();
  }

  /**
   * A poll whose reading fails (the socket gone bad) closes the sources and opens them anew:
   * flows are a view, and nothing about them may take the agent down.
   */
  private pollOrReopen(): void {
    try {
      this.poll();
    } catch (err) {
      this.o.logger.warn("Reading flows from the kernel failed; opening again", { error: errorMessage(err) });
      clearInterval(this.timer);
      this.timer = undefined;
      this.source?.close();
      this.source = null;
      if (this.always || this.followers.size > 0) this.ensureOpen();
    }
  }

  private close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (!this.source) return;
    this.source.close();
    this.source = null;
    this.o.logger.info("Stopped collecting flows: no one follows them");
  }
}

/**
 * The pod holding an address, by the address's value (the API may spell an IPv6 address
 * unlike the kernel). Where two pods list one address (a finished pod's, taken again), this
 * node's running pod wins, then a running one elsewhere. Pure.
 */
export function podIndex(snapshot: PolicySnapshot, nodeName: string): (ip: string) => PodInfo | null {
  const rank = (p: PodInfo): number => (p.terminating ? 2 : 0) + (p.nodeName === nodeName ? 0 : 1);
  const byIp = new Map<string, PodInfo>();
  for (const p of snapshot.pods) {
    for (const ip of p.ips) {
      const key = canonicalIp(ip);
      if (key === null) continue;
      const had = byIp.get(key);
      if (!had || rank(p) < rank(had)) byIp.set(key, p);
    }
  }
  return (ip) => {
    const key = canonicalIp(ip);
    return key === null ? null : (byIp.get(key) ?? null);
  };
}

/** An address as the compiler reads a pod's (readPodIp: Go's leading zeros too), in its one spelling. */
function canonicalIp(text: string): string | null {
  const read = readPodIp(text);
  const ip = read === undefined ? null : parseIpOrNull(read);
  return ip && formatIp(ip.family, ip.value);
}
