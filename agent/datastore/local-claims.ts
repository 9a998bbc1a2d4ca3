import { link, open, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { writeTempFile } from "../../shared/fs.js";
import type { Logger } from "../../shared/log.js";
import type { Clock } from "../clock.js";
import { DatastoreError, errorMessage } from "../errors.js";
import { readJson } from "./local-reads.js";
import { isUnreadable, type Claim, type ClaimEntry } from "./local-view.js";

/**
 * The local store's claim files and how a subnet changes hands:
 *
 *   <dir>/subnets/<network>_<prefix>   a claim: {"nodeName", "expiresAt"}; created exclusively
 *                                      (link(2) of a complete temporary file fails with EEXIST
 *                                      like O_EXCL, and no reader ever sees it half-written)
 *   <dir>/subnets/<...>.lock           held only while a lapsed claim is taken over
 *
 * A lapsed claim is free: a taker creates the lock exclusively, re-checks that the claim is
 * still lapsed, then renames its own claim over it. The previous owner finds the claim no
 * longer names it on its next renewal. A lock left by a taker that died mid-way goes stale.
 */

/** A takeover lock older than this was left by a taker that died mid-way. */
const STALE_LOCK_MS = 10_000;

export const subnetFileName = (subnet: string): string => subnet.replace("/", "_");
export const subnetOfFileName = (name: string): string => name.replace("_", "/");
export const isClaimFile = (name: string): boolean => !name.startsWith(".") && !name.endsWith(".lock");

export function decodeClaim(raw: unknown): Claim | null {
  const c = raw as Partial<Claim> | null;
  if (typeof c !== "object" || c === null || typeof c.nodeName !== "string" || typeof c.expiresAt !== "number") return null;
  return { nodeName: c.nodeName, expiresAt: c.expiresAt };
}

/** The claim file as a taker finds it under the lock, read again, and whether it is live. */
export interface ClaimState {
  current: ClaimEntry | undefined;
  live: boolean;
}

/**
 * Whether a node may write its claim over the current one: over none, its own, or a lapsed
 * one; never over one that cannot be read (handing it out could put two nodes on one subnet).
 */
export function mayReplace({ current, live }: ClaimState, nodeName: string): boolean {
  if (current === undefined) return true;
  if (isUnreadable(current)) return false;
  return current.nodeName === nodeName || !live;
}

export class ClaimFiles {
  constructor(private readonly o: { dir: string; leaseTTLMs: number; clock: Clock; logger: Logger }) {}

  path(subnet: string): string {
    return join(this.o.dir, subnetFileName(subnet));
  }

  /**
   * Makes `subnet` this node's: a fresh exclusive claim, or, under the takeover lock, its claim
   * renamed over the current one when `reread` shows it may be (see mayReplace). False when
   * another node holds it, or is taking it over right now.
   */
  async claim(subnet: string, nodeName: string, reread: () => Promise<ClaimState>): Promise<boolean> {
    const path = this.path(subnet);
    const tmp = await writeTempFile(this.o.dir, this.content(nodeName));
    try {
      await link(tmp, path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw storeError(`claim subnet ${subnet}`, err);
    } finally {
      await unlinkIfPresent(tmp);
    }
    return this.withLock(path, async () => {
      // Read again under the lock: the claim may have been renewed or taken since we looked.
      const state = await reread();
      if (!mayReplace(state, nodeName)) return false;
      const replacement = await writeTempFile(this.o.dir, this.content(nodeName));
      await rename(replacement, path);
      const from = state.current && !isUnreadable(state.current) ? state.current.nodeName : undefined;
      if (from !== undefined && from !== nodeName) this.o.logger.info("Took over lapsed subnet claim", { subnet, from, node: nodeName });
      return true;
    });
  }

  /** Gives a subnet back when its claim still names this node. */
  async drop(subnet: string, nodeName: string): Promise<void> {
    const path = this.path(subnet);
    const read = readJson(path);
    if (read && "value" in read && decodeClaim(read.value)?.nodeName === nodeName) await unlinkIfPresent(path);
  }

  /** Writes this node's claim over an unreadable one the node holds (a torn file must not cost it its subnet). */
  async rewrite(subnet: string, nodeName: string): Promise<void> {
    const tmp = await writeTempFile(this.o.dir, this.content(nodeName));
    await rename(tmp, this.path(subnet));
    this.o.logger.warn("Rewrote this node's unreadable subnet claim", { subnet, path: this.path(subnet) });
  }

  private content(nodeName: string): string {
    return JSON.stringify({ nodeName, expiresAt: this.o.clock.now() + this.o.leaseTTLMs } satisfies Claim);
  }

  private async withLock(path: string, fn: () => Promise<boolean>): Promise<boolean> {
    const lock = `${path}.lock`;
    let handle;
    try {
      handle = await open(lock, "wx", 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw storeError(`lock ${lock}`, err);
      // File times are wall-clock times, whatever clock the leases are judged by.
      const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > STALE_LOCK_MS) await unlinkIfPresent(lock);
      return false; // someone else is taking it over: treat as taken, pick another
    }
    await handle.close();
    try {
      return await fn();
    } finally {
      await unlinkIfPresent(lock);
    }
  }
}

export async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw storeError(`remove ${path}`, err);
  }
}

export const storeError = (op: string, err: unknown): DatastoreError => new DatastoreError(op, errorMessage(err));
