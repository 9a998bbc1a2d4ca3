import type { Logger } from "../../shared/log.js";
import type { UnreadableRecord } from "../types.js";

/**
 * The records a datastore holds but cannot decode (a torn claim file, an etcd value that is not
 * JSON, a Lease whose subnet annotation does not match its name). A claim in this set is never
 * free; a node record in it keeps the peer's last good view. Each is logged once when it turns
 * up (again when its reason changes) and once when it is readable or gone again.
 */
export class UnreadableRecords {
  private readonly current = new Map<string, UnreadableRecord>();

  constructor(private readonly logger: Logger) {}

  /** Replaces the set with what one full read found. */
  replace(found: Iterable<UnreadableRecord>): void {
    const next = new Map<string, UnreadableRecord>();
    for (const r of found) next.set(r.key, r);
    for (const key of [...this.current.keys()]) if (!next.has(key)) this.clear(key);
    for (const r of next.values()) this.set(r);
  }

  set(r: UnreadableRecord): void {
    const before = this.current.get(r.key);
    if (before && before.reason === r.reason) return;
    this.current.set(r.key, r);
    const what = r.kind === "claim" ? "Unreadable subnet claim; treating the subnet as taken" : "Unreadable node record; keeping the last good view of the peer";
    this.logger.warn(what, { key: r.key, reason: r.reason });
  }

  clear(key: string): void {
    const before = this.current.get(key);
    if (!before) return;
    this.current.delete(key);
    this.logger.info(`Readable again: ${before.kind === "claim" ? "subnet claim" : "node record"}`, { key });
  }

  has(key: string): boolean {
    return this.current.has(key);
  }

  list(): UnreadableRecord[] {
    return [...this.current.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}
