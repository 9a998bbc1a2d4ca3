import type { Clock } from "../clock.js";
import { errorMessage } from "../errors.js";
import { leaseSetFilter } from "../leases.js";
import type { NodeLease } from "../types.js";

/**
 * What every datastore's watch() does once it knows how to read its live lease set: compute
 * the set again once per batch of events, again when the next live lease lapses (the set
 * changes then without any event), and hand it on only when it differs from the last one.
 * The stores differ in what an event is (a file, an etcd key, an API object); this is the rest.
 */

/** setTimeout's longest delay: Node fires a longer one after 1 ms. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/**
 * How long to wait before the set is computed again for a lapse: until just past the earliest
 * expiry still ahead, at most LONGEST_TIMER_MS (a lease of a month is then looked at again
 * after 24 days, and waited for again). Undefined when no lease will lapse.
 */
export function lapseDelay(leases: Iterable<NodeLease>, now: number): number | undefined {
  let next: number | undefined;
  for (const l of leases) {
    const at = l.expiresAt;
    if (at !== undefined && at > now && (next === undefined || at < next)) next = at;
  }
  return next === undefined ? undefined : Math.min(next - now + 1, LONGEST_TIMER_MS);
}

export interface LeaseSetEmitterOptions {
  /**
   * The live lease set now; undefined while the store has no complete view yet (a half-synced
   * view would remove peers). `whole`: time moved on (a lapse) or the store was read again in
   * full, so no event names what changed. A throw is reported to onError.
   */
  read(now: number, whole: boolean): NodeLease[] | undefined;
  onChange(leases: NodeLease[]): void;
  onError(err: Error): void;
  /** Lease time: `now` for read, and the lapse timer. */
  clock: Clock;
  /**
   * How long schedule() gathers events before one read: 0 is one turn of the event loop (a
   * relist of thousands of objects is one read, not one per object).
   */
  batchMs?: number;
  /**
   * Whether a set differs from the last one handed on; by default their leases are compared. A
   * store that counts its own changes answers without looking at every lease.
   */
  changed?(leases: NodeLease[]): boolean;
}

export class LeaseSetEmitter {
  private stopped = false;
  /** Cancels the pending batch's read; undefined when none is pending. */
  private batch: (() => void) | undefined;
  private cancelLapse = (): void => {};
  private readonly changed: (leases: NodeLease[]) => boolean;

  constructor(private readonly opts: LeaseSetEmitterOptions) {
    this.changed = opts.changed ?? leaseSetFilter();
  }

  /** Reads the set after the batch window; the calls within one window make one read. */
  schedule(): void {
    if (this.stopped || this.batch !== undefined) return;
    const run = () => {
      this.batch = undefined;
      this.emit();
    };
    const ms = this.opts.batchMs ?? 0;
    if (ms > 0) {
      const t = setTimeout(run, ms);
      this.batch = () => clearTimeout(t);
    } else {
      const t = setImmediate(run);
      this.batch = () => clearImmediate(t);
    }
  }

  /** Reads the set now, sets the lapse timer by it, and hands it on if it changed. */
  emit(whole = false): void {
    if (this.stopped) return;
    const { clock } = this.opts;
    const now = clock.now();
    let leases: NodeLease[] | undefined;
    try {
      leases = this.opts.read(now, whole);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (leases === undefined || this.stopped) return;
    this.cancelLapse();
    const delay = lapseDelay(leases, now);
    this.cancelLapse = delay === undefined ? () => {} : clock.after(delay, () => this.emit(true));
    if (this.changed(leases)) this.opts.onChange(leases);
  }

  /** Reports an error of the watch, unless it was stopped (a stop tears down what then fails). */
  fail(err: unknown): void {
    if (!this.stopped) this.opts.onError(err instanceof Error ? err : new Error(errorMessage(err)));
  }

  get active(): boolean {
    return !this.stopped;
  }

  stop(): void {
    this.stopped = true;
    this.batch?.();
    this.batch = undefined;
    this.cancelLapse();
  }
}

/** The watches a store has started, so close() stops every one still running. */
export class WatchRegistry {
  private readonly stops = new Set<() => void>();

  /** Registers a watch's teardown; returns its stop function, which also forgets it. */
  add(teardown: () => void): () => void {
    const stop = () => {
      if (this.stops.delete(stop)) teardown();
    };
    this.stops.add(stop);
    return stop;
  }

  stopAll(): void {
    for (const stop of [...this.stops]) stop();
  }
}
