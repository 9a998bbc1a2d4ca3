import { accessSync, constants } from "../shared/fs-sync.js";
import { join } from "node:path";
import { CniError, Code } from "../shared/cni/errors.js";
import { NAME_PATTERN, isValidIfname, type CmdArgs, type Plugin } from "../shared/cni/skel.js";
import type { IpConfig, Result } from "../shared/cni/types.js";
import { parseResult } from "../shared/cni/version.js";
import { formatIp, parseIp } from "../shared/net/cidr.js";
import { nullLogger, PhaseTimer, type Logger } from "../shared/log.js";
import { readSubnetFileFor } from "../shared/subnet-file.js";
import { assignRequested, pickAddress } from "./allocator.js";
import {
  parseIpamConfig, requestedIps, storeLocation, withNodeSubnets, type IpamConfig, type RequestedIp, type StoreLocation,
} from "./config.js";
import { IpamCode } from "./errors.js";
import { planGc } from "./gc.js";
import { capacity, cidrField, familyOf, setContains, setText, type Range, type RangeSet } from "./range.js";
import { Store, TORN_ADD_GRACE_MS, bootId, podText, type Owner, type PodRef, type Reservation } from "./store.js";

export { IpamCode } from "./errors.js";

/**
 * twill-ipam's operations. The `twill` plugin calls them in its own process with the CmdArgs
 * it got (the whole network config, with its `ipam` section); as its own executable
 * (ipam/main.ts) the reference bridge or any plugin delegates to it. ADD returns an IPAM
 * result: addresses without `interface`, routes, dns.
 */
export function createIpamPlugin(opts: { logger?: Logger } = {}): Plugin {
  const log = opts.logger ?? nullLogger;
  const storeOf = (loc: StoreLocation) => new Store(join(loc.dataDir, loc.network), log.with({ network: loc.network }));
  const ownerOf = (args: CmdArgs): Owner => ({ containerID: args.containerId, ifname: args.ifname });
  /**
   * host-local's DEL removes reservations and leaves their index entries. Where host-local
   * works too, DEL and STATUS sweep the index (GC always does), so none accumulate; elsewhere
   * every reservation goes away through twill-ipam with its entry, and STATUS stays a listing.
   */
  const sweepIndex = (store: Store, loc: StoreLocation) => {
    if (!store.usedByHostLocal()) return;
    const dropped = store.dropStaleIndex();
    if (dropped.length > 0) log.info("Dropped index entries without a reservation", { network: loc.network, attachments: dropped });
  };

  return {
    async add(args) {
      const timer = new PhaseTimer();
      const cfg = resolveRanges(parseIpamConfig(args.conf), "ADD");
      const wanted = assignRequested(cfg.rangeSets, requestedIps(args.conf, args.args));
      const owner = ownerOf(args);
      const store = storeOf(cfg);
      timer.mark("config");
      // As host-local: a second ADD without a DEL between is refused. Only the index is read
      // unless host-local has used this directory too.
      const held = store.addressesOf(owner, "if-host-local");
      if (held.length > 0) {
        throw new CniError(IpamCode.DuplicateAllocation, `${held.join(", ")} has been allocated to ${describe(owner, cfg)}, duplicate allocation is not allowed`);
      }
      const pod = podOf(args.args);
      const taken: Taken[] = [];
      try {
        cfg.rangeSets.forEach((set, i) => taken.push(takeAddress(store, set, i, wanted[i], owner)));
        // The round-robin positions move only once every family has its address: a dual-stack
        // ADD that fails on one family leaves the store exactly as it found it.
        for (const t of taken) if (t.walked) store.setLastReserved(t.set, t.ip);
        store.writeIndex({
          ...owner, ips: taken.map((t) => t.ip), bootId: bootId(), created: new Date().toISOString(), plugin: args.conf.type, ...(pod ? { pod } : {}),
        });
      } catch (err) {
        // A later set failed (exhausted, requested address taken): give back what earlier ones took.
        for (const t of taken) store.release(t.ip, owner);
        throw err;
      }
      timer.mark("store");
      log.info("Allocated", {
        containerId: owner.containerID, ifname: owner.ifname, network: cfg.network, ips: taken.map((t) => t.ip),
        ...(pod ? { pod: podText(pod) } : {}), ...timer.fields(),
      });
      return buildResult(cfg, taken);
    },

    async del(args) {
      const timer = new PhaseTimer();
      // Only where the store is: DEL works with the node agent down and any other field broken.
      const loc = storeLocation(args.conf);
      const owner = ownerOf(args);
      const store = storeOf(loc);
      const freed = store.releaseAttachment(owner);
      timer.mark("store");
      log.info("Released", { containerId: owner.containerID, ifname: owner.ifname, network: loc.network, ips: freed, ...timer.fields() });
      sweepIndex(store, loc);
    },

    async check(args) {
      const parsed = parseIpamConfig(args.conf);
      const owner = ownerOf(args);
      const held = storeOf(parsed).addressesOf(owner);
      if (held.length === 0) throw new CniError(IpamCode.NotReserved, `no address is reserved for ${describe(owner, parsed)}`);
      if (args.conf.prevResult === undefined || args.conf.prevResult === null) return;
      // Addresses of the result that are ours must be reserved; with the node's subnets
      // unknown (no subnet file), every address is taken to be ours.
      let sets: RangeSet[] | undefined;
      try {
        sets = resolveRanges(parsed, "STATUS").rangeSets;
      } catch {
        sets = undefined;
      }
      for (const { address } of parseResult(args.conf.prevResult).ips ?? []) {
        const c = cidrField(address, "prevResult.ips[].address");
        const ip = { family: c.family, value: c.ip };
        const ours = sets === undefined || sets.some((s) => setContains(s, ip));
        if (ours && !held.includes(formatIp(c.family, c.ip))) {
          throw new CniError(IpamCode.NotReserved, `address ${address} of the result is not reserved for ${describe(owner, parsed)} (it holds ${held.join(", ")})`);
        }
      }
    },

    async status(args) {
      const notAvailable = (msg: string) => new CniError(Code.NotAvailable, msg);
      const cfg = resolveRanges(parseIpamConfig(args.conf), "STATUS");
      const store = storeOf(cfg);
      try {
        store.ensure();
        accessSync(store.dir, constants.W_OK);
      } catch (err) {
        throw notAvailable(`IPAM store ${store.dir} is not writable: ${(err as Error).message}`);
      }
      sweepIndex(store, cfg);
      // File names suffice to count: STATUS runs every few seconds under containerd 2.
      const reserved = store.reservedAddresses().flatMap((name) => {
        try {
          return [parseIp(name)];
        } catch {
          return []; // shaped like an address but is none (999.0.0.1): no reservation of ours
        }
      });
      for (const set of cfg.rangeSets) {
        const used = reserved.filter((ip) => setContains(set, ip)).length;
        if (BigInt(used) >= capacity(set)) throw notAvailable(`no IP addresses available in range set ${setText(set)}`);
      }
    },

    async gc(args, valid) {
      const loc = storeLocation(args.conf);
      const store = storeOf(loc);
      const { entries, junk } = store.indexEntries();
      const plan = planGc(store.list(), entries, valid, bootId());
      // SPEC.md GC: go on past a failure and report every one at the end.
      const failures: string[] = [];
      const attempt = (fn: () => unknown) => {
        try {
          fn();
        } catch (err) {
          failures.push((err as Error).message);
        }
      };
      const released: string[] = [];
      // An empty file (no owner yet) may be a live ADD's between create and write: only an old one goes.
      const release = (r: Reservation) => (r.containerID === "" ? store.releaseEmpty(r.ip, Date.now() - TORN_ADD_GRACE_MS) : store.release(r.ip, r));
      for (const r of plan.release) attempt(() => release(r) && released.push(r.ip));
      for (const e of plan.dropIndex) attempt(() => store.dropIndex(e));
      for (const name of junk) attempt(() => store.removeIndexFile(name));
      attempt(() => store.removeOldTemporaries());
      log.info("Collected", {
        network: loc.network,
        released,
        releasedFromEarlierBoot: plan.releasedFromEarlierBoot,
      });
      if (plan.keptFromEarlierBoot.length > 0) {
        log.warn("Kept listed attachments reserved before the last reboot", { network: loc.network, attachments: plan.keptFromEarlierBoot });
      }
      if (failures.length > 0) throw new CniError(Code.IoFailure, `GC of network "${loc.network}" failed to release: ${failures.join("; ")}`);
    },
  };
}

interface Taken {
  ip: string;
  range: Range;
  /** The range set's index. */
  set: number;
  /** Taken by the round-robin walk (not requested): its position moves on. */
  walked: boolean;
}

/**
 * Node mode: the ranges are the node's subnets from the node agent's subnet file, read as
 * `command` reads it (a missing file is 11 on ADD, 50 on STATUS).
 */
function resolveRanges(cfg: IpamConfig, command: "ADD" | "STATUS"): IpamConfig {
  return cfg.nodeMode ? withNodeSubnets(cfg, readSubnetFileFor(command, cfg.subnetFile)) : cfg;
}

/** One address of set `index`: the one requested for it, else the next free in round-robin. */
function takeAddress(store: Store, set: RangeSet, index: number, wanted: RequestedIp | undefined, owner: Owner): Taken {
  const family = familyOf(set);
  if (wanted) {
    const range = set.find((r) => wanted.value >= r.start && wanted.value <= r.end)!;
    if (!store.reserve(wanted.text, owner)) {
      // The holder is named only when the file reads as one: never echo a planted file's content.
      const holder = store.owner(wanted.text);
      const named = holder && NAME_PATTERN.test(holder.containerID) && (holder.ifname === "" || isValidIfname(holder.ifname));
      const by = named ? ` by ${holder.containerID}${holder.ifname ? `/${holder.ifname}` : ""}` : "";
      throw new CniError(IpamCode.AddressTaken, `requested address ${wanted.text} (${wanted.from}) is already reserved${by}`);
    }
    return { ip: wanted.text, range, set: index, walked: false };
  }
  const lastText = store.lastReserved(index);
  let last: bigint | undefined;
  try {
    const ip = lastText === undefined ? undefined : parseIp(lastText);
    last = ip?.family === family ? ip.value : undefined;
  } catch {
    last = undefined; // a torn or foreign hint: start at the first range
  }
  const picked = pickAddress(set, last, (ip) => store.reserve(formatIp(family, ip), owner));
  if (!picked) throw new CniError(IpamCode.PoolExhausted, `no IP addresses available in range set ${setText(set)}`);
  return { ip: formatIp(family, picked.ip), range: picked.range, set: index, walked: true };
}

function buildResult(cfg: IpamConfig, taken: Taken[]): Result {
  const ips: IpConfig[] = taken.map(({ ip, range }) => ({
    address: `${ip}/${range.subnet.prefix}`,
    gateway: formatIp(range.subnet.family, range.gateway),
  }));
  return {
    cniVersion: "1.1.0",
    ips,
    ...(cfg.routes.length > 0 ? { routes: cfg.routes } : {}),
    ...(cfg.dns ? { dns: cfg.dns } : {}),
  };
}

/**
 * The pod kubelet names in CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID). Recorded in
 * the index only, never in the reservation file, whose content host-local reads and compares.
 */
export function podOf(cniArgs: Record<string, string>): PodRef | undefined {
  const namespace = cniArgs.K8S_POD_NAMESPACE ?? "";
  const name = cniArgs.K8S_POD_NAME ?? "";
  if (!namespace || !name) return undefined;
  return { namespace, name, uid: cniArgs.K8S_POD_UID ?? "" };
}

const describe = (o: Owner, loc: StoreLocation) => `${o.containerID}/${o.ifname} in network "${loc.network}"`;
