import { randomBytes } from "node:crypto";
import { link, mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseCidr } from "../../shared/net/cidr.js";
import { nullLogger, type Logger } from "../../shared/log.js";
import { DatastoreError, LeaseLostError, errorMessage } from "../errors.js";
import { claimAge, checkNodeName, decodeLease, leaseSetKey } from "../leases.js";
import type { AcquireRequest, NetworkConfig, NodeLease, SubnetStore } from "../types.js";
import { claimSubnets, requirePools } from "./claim.js";

/**
 * The `local` datastore: a directory every agent on this host shares (the single-host demo
 * and the tests run each simulated node as its own agent against one directory).
 *
 *   <dir>/subnets/<network>_<prefix>   a claim: {"nodeName", "expiresAt"}; created exclusively
 *                                      (link(2) of a complete temporary file fails with EEXIST
 *                                      like O_EXCL, and no reader ever sees it half-written)
 *   <dir>/subnets/<...>.lock           held only while a lapsed claim is taken over
 *   <dir>/nodes/<node>.json            the node's lease (subnets, public IP, backend data,
 *                                      expiresAt), written atomically on acquire and renew
 *
 * A claim is live while its own expiresAt (a grace for writing the node record) or its
 * owner's record expiry lies ahead and that record lists the subnet. A lapsed claim is free:
 * a taker creates the lock exclusively, re-checks that the claim is still lapsed, then
 * renames its own claim over it. The previous owner finds the claim no longer names it on
 * its next renewal.
 */

export interface LocalStoreOptions {
  dir: string;
  network?: NetworkConfig;
  leaseTTLMs: number;
  /** How often watch() rereads the directory. */
  pollMs?: number;
  now?: () => number;
  logger?: Logger;
}

interface Claim {
  nodeName: string;
  expiresAt: number;
}

interface State {
  claims: Map<string, Claim>;
  records: Map<string, NodeLease>;
}

/** A takeover lock older than this was left by a taker that died mid-way. */
const STALE_LOCK_MS = 10_000;

export const subnetFileName = (subnet: string): string => subnet.replace("/", "_");
const subnetOfFileName = (name: string): string => name.replace("_", "/");

export class LocalStore implements SubnetStore {
  private readonly subnetsDir: string;
  private readonly nodesDir: string;
  private readonly now: () => number;
  private readonly logger: Logger;
  private readonly stops = new Set<() => void>();

  constructor(private readonly opts: LocalStoreOptions) {
    this.subnetsDir = join(opts.dir, "subnets");
    this.nodesDir = join(opts.dir, "nodes");
    this.now = opts.now ?? Date.now;
    this.logger = opts.logger ?? nullLogger;
  }

  async acquire(req: AcquireRequest): Promise<NodeLease> {
    const name = checkNodeName(req.nodeName);
    const pools = requirePools(this.opts.network);
    await this.ensureDirs();
    const state = await this.readState();
    const now = this.now();
    const own = [...state.claims].filter(([, c]) => c.nodeName === name).map(([s]) => s);
    const taken = [...state.claims]
      .filter(([s, c]) => c.nodeName !== name && this.live(s, c, state, now))
      .map(([s]) => parseCidr(s));
    const subnets = await claimSubnets(pools, name, req.preferredSubnets ?? [], {
      own,
      taken,
      claim: (s) => this.claim(s, name),
      drop: (s) => this.dropClaim(s, name),
    });
    const prev = state.records.get(name);
    const { acquiredAt, kept } = claimAge(prev, subnets, now);
    const lease: NodeLease = {
      nodeName: name,
      subnets,
      publicIP: req.publicIP,
      backend: req.backend,
      expiresAt: now + this.opts.leaseTTLMs,
      acquiredAt,
    };
    await this.writeRecord(lease);
    this.logger.info("Acquired lease", { node: name, subnets, kept });
    return lease;
  }

  async renew(lease: NodeLease): Promise<NodeLease> {
    const state = await this.readState();
    for (const s of lease.subnets) {
      const owner = state.claims.get(s)?.nodeName;
      if (owner !== lease.nodeName) {
        throw new LeaseLostError(lease.nodeName, owner ? `subnet ${s} is now claimed by "${owner}"` : `subnet ${s} is no longer claimed`);
      }
    }
    const renewed: NodeLease = { ...lease, expiresAt: this.now() + this.opts.leaseTTLMs };
    await this.writeRecord(renewed);
    return renewed;
  }

  async list(): Promise<NodeLease[]> {
    const state = await this.readState();
    const now = this.now();
    const leases: NodeLease[] = [];
    for (const rec of state.records.values()) {
      if ((rec.expiresAt ?? 0) <= now) continue;
      const subnets = rec.subnets.filter((s) => state.claims.get(s)?.nodeName === rec.nodeName);
      if (subnets.length > 0) leases.push({ ...rec, subnets });
    }
    return leases;
  }

  watch(onChange: (leases: NodeLease[]) => void, onError: (err: Error) => void): () => void {
    let last: string | undefined;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const tick = async () => {
      try {
        const leases = await this.list();
        const key = leaseSetKey(leases);
        if (!stopped && key !== last) {
          last = key;
          onChange(leases);
        }
      } catch (err) {
        if (!stopped) onError(err instanceof Error ? err : new Error(String(err)));
      }
      if (!stopped) timer = setTimeout(tick, this.opts.pollMs ?? 500);
    };
    void tick();
    const stop = () => {
      stopped = true;
      clearTimeout(timer);
      this.stops.delete(stop);
    };
    this.stops.add(stop);
    return stop;
  }

  async release(nodeName: string): Promise<void> {
    const state = await this.readState();
    const mine = [...state.claims].filter(([, c]) => c.nodeName === nodeName).map(([s]) => s);
    await Promise.all(mine.map((s) => this.dropClaim(s, nodeName)));
    await unlinkIfPresent(this.recordPath(nodeName));
  }

  async close(): Promise<void> {
    for (const stop of [...this.stops]) stop();
  }

  private live(subnet: string, claim: Claim, state: State, now: number): boolean {
    if (claim.expiresAt > now) return true;
    const rec = state.records.get(claim.nodeName);
    return rec !== undefined && (rec.expiresAt ?? 0) > now && rec.subnets.includes(subnet);
  }

  /** Makes `subnet` this node's: a fresh exclusive claim, or a locked takeover of a lapsed one. */
  private async claim(subnet: string, nodeName: string): Promise<boolean> {
    const path = this.claimPath(subnet);
    const content = () => JSON.stringify({ nodeName, expiresAt: this.now() + this.opts.leaseTTLMs } satisfies Claim);
    const tmp = await this.writeTemp(content());
    try {
      await link(tmp, path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw storeError(`claim subnet ${subnet}`, err);
    } finally {
      await unlinkIfPresent(tmp);
    }
    return this.withLock(path, async () => {
      // Re-read under the lock: the claim may have been renewed or taken since we looked.
      const state = await this.readState();
      const current = state.claims.get(subnet);
      if (current && current.nodeName !== nodeName && this.live(subnet, current, state, this.now())) return false;
      const replacement = await this.writeTemp(content());
      await rename(replacement, path);
      if (current && current.nodeName !== nodeName) {
        this.logger.info("Took over lapsed subnet claim", { subnet, from: current.nodeName, node: nodeName });
      }
      return true;
    });
  }

  private async withLock(path: string, fn: () => Promise<boolean>): Promise<boolean> {
    const lock = `${path}.lock`;
    let handle;
    try {
      handle = await open(lock, "wx", 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw storeError(`lock ${lock}`, err);
      const age = await stat(lock).then((s) => this.now() - s.mtimeMs, () => 0);
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

  private async dropClaim(subnet: string, nodeName: string): Promise<void> {
    const path = this.claimPath(subnet);
    const claim = await readJson(path);
    if (claim && (claim as Claim).nodeName === nodeName) await unlinkIfPresent(path);
  }

  private async readState(): Promise<State> {
    await this.ensureDirs();
    const [claimNames, nodeNames] = await Promise.all([readdir(this.subnetsDir), readdir(this.nodesDir)]);
    const claims = new Map<string, Claim>();
    const records = new Map<string, NodeLease>();
    await Promise.all([
      ...claimNames
        .filter((n) => !n.startsWith(".") && !n.endsWith(".lock"))
        .map(async (n) => {
          const raw = (await readJson(join(this.subnetsDir, n))) as Partial<Claim> | null;
          if (raw && typeof raw.nodeName === "string" && typeof raw.expiresAt === "number") {
            claims.set(subnetOfFileName(n), { nodeName: raw.nodeName, expiresAt: raw.expiresAt });
          }
        }),
      ...nodeNames
        .filter((n) => n.endsWith(".json") && !n.startsWith("."))
        .map(async (n) => {
          const lease = decodeLease(await readJson(join(this.nodesDir, n)));
          if (lease) records.set(lease.nodeName, lease);
        }),
    ]);
    return { claims, records };
  }

  private async writeRecord(lease: NodeLease): Promise<void> {
    const tmp = await this.writeTemp(JSON.stringify(lease, null, 2) + "\n", this.nodesDir);
    try {
      await rename(tmp, this.recordPath(lease.nodeName));
    } catch (err) {
      await unlinkIfPresent(tmp);
      throw storeError(`write node record of "${lease.nodeName}"`, err);
    }
  }

  /** A complete file beside its destination (same directory, so link/rename stay atomic). */
  private async writeTemp(data: string, dir = this.subnetsDir): Promise<string> {
    const tmp = join(dir, `.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
    const handle = await open(tmp, "wx", 0o644);
    try {
      await writeFile(handle, data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return tmp;
  }

  private async ensureDirs(): Promise<void> {
    try {
      await mkdir(this.subnetsDir, { recursive: true, mode: 0o755 });
      await mkdir(this.nodesDir, { recursive: true, mode: 0o755 });
    } catch (err) {
      throw storeError(`create ${this.opts.dir}`, err);
    }
  }

  private claimPath = (subnet: string) => join(this.subnetsDir, subnetFileName(subnet));
  private recordPath = (nodeName: string) => join(this.nodesDir, `${checkNodeName(nodeName)}.json`);
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || err instanceof SyntaxError) return null;
    throw storeError(`read ${path}`, err);
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw storeError(`remove ${path}`, err);
  }
}

const storeError = (op: string, err: unknown) => new DatastoreError(op, errorMessage(err));
