import { closeSync, openSync } from "../../fs-sync.js";
import { KernelError } from "../types.js";
import { ensureMasquerade } from "../nft.js";
import type { NetStep, PodKernel } from "../pod-kernel.js";
import { ensureSysctl } from "../sysctl.js";
import { netTools } from "../tools.js";
import { errnoText, requireLibc, type Libc } from "./libc.js";
import { Rtnl } from "./rtnl.js";
import { readMasqueradeNetlink } from "./nftables.js";
import { NETLINK, NetlinkError, NetlinkSocket } from "./socket.js";

/**
 * The plugin's kernel over rtnetlink, in-process: one socket for the node's namespace and one
 * per pod namespace, each opened in its namespace and then used from the node's. No process
 * is started. Errors are KernelErrors carrying the kernel's errno and the failed step.
 */
export function netlinkKernel(c: Libc): PodKernel {
  const sockets = new Map<string | null, NetlinkSocket>();
  let nftables: NetlinkSocket | undefined;
  const rtnl = (netns: string | null): Rtnl => {
    let s = sockets.get(netns);
    if (!s) {
      s = NetlinkSocket.open(c, netns);
      sockets.set(netns, s);
    }
    return new Rtnl(s);
  };
  /** Runs a read or a change; a netlink failure becomes a KernelError naming `op`. */
  const call = async <T>(op: string, fn: () => T, step?: number): Promise<T> => {
    try {
      return fn();
    } catch (err) {
      throw asKernelError(err, op, step);
    }
  };

  const apply = async (netns: string | null, steps: readonly NetStep[], op: string): Promise<void> => {
    const nl = await call(op, () => rtnl(netns));
    for (const [i, s] of steps.entries()) await call(op, () => applyStep(nl, s, op), i + 1);
  };

  return {
    apply,
    async applyAndReadBridge(steps, bridge, op) {
      await apply(null, steps, op);
      return call(op, () => {
        const nl = rtnl(null);
        const link = nl.link(bridge);
        return link ? { ...link, addresses: nl.addrsOf(link) } : null;
      });
    },
    createBridge: (spec) => call(`create bridge "${spec.name}"`, () => rtnl(null).addBridge(spec, `create bridge "${spec.name}"`)),
    link: (netns, name) => call(`read link "${name}"`, () => rtnl(netns).link(name)),
    links: (netns) => call("list links", () => rtnl(netns).links()),
    podState: (netns) =>
      call(`read the pod network in ${netns}`, () => {
        const nl = rtnl(netns);
        const links = nl.links();
        return { links, addresses: nl.addrs(links), routes: nl.routes(links) };
      }),
    readMasquerade: (network) =>
      call(`read the masquerade table of network "${network}"`, () => {
        nftables ??= NetlinkSocket.open(c, null, NETLINK.NETFILTER);
        return readMasqueradeNetlink(nftables, network);
      }),
    // Not netlink: a masquerade change is one `nft -f` transaction, a sysctl a write to /proc/sys.
    writeMasquerade: (spec, have) => ensureMasquerade(netTools(null), spec, have),
    setSysctl: ensureSysctl,
    deleteLink: (name, what) => call(`delete ${what} "${name}"`, () => rtnl(null).deleteLink(name, `delete ${what} "${name}"`)),
    close() {
      for (const s of sockets.values()) s.close();
      sockets.clear();
      nftables?.close();
      nftables = undefined;
    },
  };
}

function applyStep(nl: Rtnl, s: NetStep, op: string): void {
  switch (s.op) {
    case "set-link":
      return nl.setLink(s, op);
    case "add-veth": {
      // The peer goes straight into the pod's namespace, named by an open fd.
      const fd = openSync(s.veth.peer.netns, "r");
      try {
        const { netns: _path, ...peer } = s.veth.peer;
        return nl.addVeth({ ...s.veth, peer: { ...peer, netnsFd: fd } }, op);
      } finally {
        closeSync(fd);
      }
    }
    case "hairpin":
      return nl.hairpin(s.dev, op);
    case "add-address":
      return nl.addAddress(s.dev, s.cidr, s.replace, op);
    case "add-route":
      return nl.addRoute(s, op);
  }
}

export function asKernelError(err: unknown, op: string, step: number | undefined): Error {
  if (err instanceof KernelError) return err;
  const detail = step === undefined ? {} : { step };
  if (err instanceof NetlinkError) {
    const reason = `${err.detail ? `${err.detail}: ` : ""}${errnoText(err.errno)}`;
    return new KernelError(op, reason, { ...detail, errno: err.errno });
  }
  const errno = (err as NodeJS.ErrnoException).errno;
  // fs errors (opening a namespace) carry a negative errno in Node and Bun.
  if (typeof errno === "number") return new KernelError(op, (err as Error).message, { ...detail, errno: Math.abs(errno) });
  return err as Error;
}

/** The plugin's kernel: netlink; an error where this runtime cannot reach libc (only Bun can). */
export const podKernel = (): PodKernel => netlinkKernel(requireLibc("twill"));
