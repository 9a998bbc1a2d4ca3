import { accessSync, constants } from "node:fs";
import { join } from "node:path";
import { CniError, Code, type CodeNumber } from "../shared/cni/errors.js";
import type { Plugin } from "../shared/cni/skel.js";
import type { Attachment, IpConfig, Result } from "../shared/cni/types.js";
import { parseResult } from "../shared/cni/version.js";
import { formatIp, parseCidr, type Family } from "../shared/net/cidr.js";
import { nullLogger, type Logger } from "../shared/log.js";
import { candidates, capacity, usable } from "./allocator.js";
import {
  loadIpamConfig, parseIpamConfig, rangeText, requestedIps, setContains, type IpamConfig, type Range, type RangeSet,
} from "./config.js";
import { Store, bootId, isIpName } from "./store.js";

/**
 * Plugin-specific error codes (SPEC.md reserves 0-99). An exhausted pool is not transient, so
 * not 11: retrying will not help until pods are deleted or the range grows.
 */
export const IpamCode = {
  PoolExhausted: 110 as CodeNumber,
  DuplicateAllocation: 111 as CodeNumber,
  AddressUnavailable: 112 as CodeNumber,
};

export function createIpamPlugin(opts: { logger?: Logger } = {}): Plugin {
  const log = opts.logger ?? nullLogger;
  const storeFor = (cfg: { dataDir: string; network: string }) => new Store(join(cfg.dataDir, cfg.network));

  return {
    async add(args) {
      const cfg = loadIpamConfig(args.conf);
      const store = storeFor(cfg);
      store.ensure();
      const { containerId: id, ifname } = args;
      if (store.addressesOf(id, ifname).length > 0) {
        throw new CniError(IpamCode.DuplicateAllocation, `${id}/${ifname} already holds an address in network "${cfg.network}": duplicate allocation is not allowed`);
      }
      const requested = requestedIps(args.conf, args.args);
      const taken: { ip: string; range: Range }[] = [];
      try {
        cfg.rangeSets.forEach((set, i) => taken.push(allocate(store, set, i, requested, id, ifname)));
        const unmatched = requested.filter((r) => !taken.some((t) => t.ip === r.text));
        if (unmatched.length > 0) {
          throw new CniError(IpamCode.AddressUnavailable, `requested address ${unmatched[0]!.text} is in no range of network "${cfg.network}"`);
        }
        store.writeIndex({ containerID: id, ifname, ips: taken.map((t) => t.ip), bootId: bootId(), created: new Date().toISOString() });
      } catch (err) {
        for (const t of taken) store.releaseIfOwned(t.ip, id, ifname);
        throw err;
      }
      log.info("Allocated", { containerId: id, ifname, network: cfg.network, ips: taken.map((t) => t.ip) });
      return buildResult(cfg, taken);
    },

    async del(args) {
      // DEL needs only where the store is: it works while the node agent is down too.
      const cfg = parseIpamConfig(args.conf);
      const freed = storeFor(cfg).releaseAttachment(args.containerId, args.ifname);
      log.info("Released", { containerId: args.containerId, ifname: args.ifname, network: cfg.network, ips: freed });
    },

    async check(args) {
      const cfg = parseIpamConfig(args.conf);
      const held = storeFor(cfg).addressesOf(args.containerId, args.ifname);
      if (held.length === 0) {
        throw new CniError(Code.Internal, `no address is reserved for ${args.containerId}/${args.ifname} in network "${cfg.network}"`);
      }
      const prev = args.conf.prevResult === undefined ? undefined : parseResult(args.conf.prevResult);
      for (const ip of prev?.ips ?? []) {
        const addr = ip.address.split("/")[0]!;
        const cidr = parseCidr(ip.address);
        const ours = cfg.rangeSets.some((s) => setContains(s, { family: cidr.family, value: cidr.ip }));
        if (ours && !held.includes(formatIp(cidr.family, cidr.ip))) {
          throw new CniError(Code.Internal, `address ${addr} of ${args.containerId}/${args.ifname} is not reserved in network "${cfg.network}"`);
        }
      }
    },

    async status(args) {
      const notAvailable = (msg: string) => new CniError(Code.NotAvailable, msg);
      const cfg = loadIpamConfig(args.conf, (e) => notAvailable(e.message));
      const store = storeFor(cfg);
      try {
        store.ensure();
        accessSync(store.dir, constants.W_OK);
      } catch (err) {
        throw notAvailable(`IPAM store ${store.dir} is not usable: ${(err as Error).message}`);
      }
      const held = store.list();
      cfg.rangeSets.forEach((set) => {
        const used = held.filter((r) => setContains(set, ipOf(r.ip))).length;
        if (used >= capacity(set)) throw notAvailable(`no IP addresses available in range set ${rangeText(set)}`);
      });
    },

    async gc(args, valid) {
      const cfg = parseIpamConfig(args.conf);
      const store = storeFor(cfg);
      const keep = new Set(valid.map(key));
      const released: string[] = [];
      for (const r of store.list()) {
        if (!keep.has(key(r)) && store.releaseIfOwned(r.ip, r.containerID, r.ifname)) released.push(r.ip);
      }
      for (const e of store.indexEntries()) {
        if (!keep.has(key(e))) store.releaseAttachment(e.containerID, e.ifname);
      }
      log.info("Collected", { network: cfg.network, released });
    },
  };
}

const key = (a: Attachment | { containerID: string; ifname: string }) => `${a.containerID}\n${a.ifname}`;

const ipOf = (text: string): { family: Family; value: bigint } => {
  const c = parseCidr(`${text}/${text.includes(":") ? 128 : 32}`);
  return { family: c.family, value: c.ip };
};

/** Takes one address of the set: the one requested for it, else the next free in round-robin. */
function allocate(
  store: Store,
  set: RangeSet,
  index: number,
  requested: { family: Family; value: bigint; text: string }[],
  id: string,
  ifname: string,
): { ip: string; range: Range } {
  const rangeOf = (value: bigint) => set.find((r) => value >= r.start && value <= r.end)!;
  const wanted = requested.find((r) => setContains(set, r));
  if (wanted) {
    const range = rangeOf(wanted.value);
    if (!usable(range, wanted.value) || !store.reserve(wanted.text, id, ifname)) {
      throw new CniError(IpamCode.AddressUnavailable, `requested address ${wanted.text} is not available in range set ${rangeText(set)}`);
    }
    return { ip: wanted.text, range };
  }
  const family = set[0]!.subnet.family;
  const lastText = store.lastReserved(index);
  const last = lastText && isIpName(lastText) && lastText.includes(":") === (family === 6) ? ipOf(lastText).value : undefined;
  for (const value of candidates(set, last)) {
    const ip = formatIp(family, value);
    if (store.reserve(ip, id, ifname)) {
      store.setLastReserved(index, ip);
      return { ip, range: rangeOf(value) };
    }
  }
  throw new CniError(IpamCode.PoolExhausted, `no IP addresses available in range set ${rangeText(set)}`);
}

function buildResult(cfg: IpamConfig, taken: { ip: string; range: Range }[]): Result {
  const ips: IpConfig[] = taken.map(({ ip, range }) => ({
    address: `${ip}/${range.subnet.prefix}`,
    ...(range.gateway !== undefined ? { gateway: formatIp(range.subnet.family, range.gateway) } : {}),
  }));
  return {
    cniVersion: "1.1.0",
    ips,
    ...(cfg.routes.length ? { routes: cfg.routes } : {}),
    ...(cfg.dns ? { dns: cfg.dns } : {}),
  };
}
