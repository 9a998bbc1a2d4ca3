import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { addNetns, deleteNetns, inNetns, ipIn, netnsPath, sysctls } from "../../../testkit/netns.js";
import { NflogGroupTaken, openFlowEvents, type ConntrackEvent, type DroppedPacket, type FlowEvents } from "./flow-events.js";
import { NLM_F } from "./codec.js";
import { libc } from "./libc.js";
import { NETLINK, NetlinkSocket } from "./socket.js";

// Flow events from a real kernel: a router namespace forwards between two hosts, each in a
// namespace of its own, and its nftables table logs what it drops to nflog group 7 and NATs a
// "Service" address. Everything (forwarding, accounting, short conntrack timeouts) is set
// inside these namespaces only. Runs on Bun, where bun:ffi is.

const tag = process.pid.toString(36);
const router = `twfe${tag}r`;
const hostA = `twfe${tag}a`;
const hostB = `twfe${tag}b`;
const GROUP = 7;

const TABLE = `table inet t {
  chain prerouting {
    type nat hook prerouting priority -100;
    ip daddr 10.91.9.9 tcp dport 80 dnat to 10.91.1.2:8080
  }
  chain forwarding {
    type filter hook forward priority 0;
    tcp dport 9 log group ${GROUP} prefix "drop_x_in" drop
  }
}
`;

let opened: FlowEvents[] = [];
const open = (): FlowEvents => {
  const e = openFlowEvents({ netns: netnsPath(router), nflogGroup: GROUP, conntrack: true }, libc()!);
  opened.push(e);
  return e;
};
/** Processes started in the host namespaces, stopped after each test by their own handle. */
let started: { kill(): boolean }[] = [];

beforeEach(async () => {
  for (const ns of [router, hostA, hostB]) await addNetns(ns);
  await ipIn(router).batch(
    [
      ["link", "add", "ra", "type", "veth", "peer", "name", "a0", "netns", hostA],
      ["link", "add", "rb", "type", "veth", "peer", "name", "b0", "netns", hostB],
      ["addr", "add", "10.91.1.1/24", "dev", "ra"],
      ["addr", "add", "fd91:1::1/64", "dev", "ra", "nodad"],
      ["addr", "add", "10.91.2.1/24", "dev", "rb"],
      ["addr", "add", "fd91:2::1/64", "dev", "rb", "nodad"],
      ["link", "set", "ra", "up"],
      ["link", "set", "rb", "up"],
    ],
    "wire the router",
  );
  for (const [ns, dev, n] of [[hostA, "a0", 1], [hostB, "b0", 2]] as const) {
    await ipIn(ns).batch(
      [
        ["addr", "add", `10.91.${n}.2/24`, "dev", dev],
        ["addr", "add", `fd91:${n}::2/64`, "dev", dev, "nodad"],
        ["link", "set", dev, "up"],
        ["route", "add", "default", "via", `10.91.${n}.1`],
        ["route", "add", "::/0", "via", `fd91:${n}::1`],
      ],
      `wire host ${ns}`,
    );
  }
  await sysctls(router, {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.netfilter.nf_conntrack_acct": 1,
    // A closed connection's entry ends (and its DESTROY event comes) within seconds, not 2 minutes.
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": 1,
    "net.netfilter.nf_conntrack_tcp_timeout_close": 1,
  });
  await ipIn(router).nft(["-f", "-"], "add the router's table", TABLE);
});

afterEach(async () => {
  for (const e of opened) e.close();
  opened = [];
  for (const p of started) p.kill();
  started = [];
  for (const ns of [router, hostA, hostB]) await deleteNetns(ns);
});

/** Runs a small script on this runtime (Bun) inside `ns`; resolves when it has printed `ready` or exited. */
async function script(ns: string, code: string): Promise<void> {
  const p = inNetns(ns, [process.execPath, "-e", code], { all: true });
  started.push(p);
  await new Promise<void>((resolve) => {
    p.stdout?.on("data", (d: Buffer) => {
      if (String(d).includes("ready")) resolve();
    });
    void p.then(() => resolve());
  });
}

const listen = (host: string, port: number) =>
  script(hostA, `require("net").createServer((c) => { c.on("data", () => {}); c.end("ok"); }).listen(${port}, "${host}", () => console.log("ready"));`);

/** Connects from host B, reads until the server closes, and closes too. */
const connect = (host: string, port: number) =>
  script(hostB, `const c = require("net").connect(${port}, "${host}"); c.on("data", () => {}); c.on("end", () => c.end()); c.on("close", () => process.exit(0)); c.on("error", () => process.exit(1));`);

/** Sends a SYN that is never answered (the router drops it) and gives up. */
const knock = (host: string, port: number) =>
  script(hostB, `const c = require("net").connect(${port}, "${host}"); c.on("error", () => {}); setTimeout(() => process.exit(0), 300);`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Dumps the router's conntrack table (IPCTNL_MSG_CT_GET, NLM_F_DUMP), as `conntrack -L` does.
 * The kernel's collector of expired entries is shared by all namespaces and may come by only
 * once a minute; a dump ends the expired entries it meets at once, and so sends their DESTROY.
 */
function reapExpired(): void {
  const sock = NetlinkSocket.open(libc()!, netnsPath(router), NETLINK.NETFILTER);
  try {
    sock.request({ type: (1 << 8) | 1, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { nfgen: { family: 2 } } }, "dump the router's conntrack table");
  } finally {
    sock.close();
  }
}

/**
 * Drains `e` until `done` holds of everything seen so far, running `between` before each look;
 * the bound only keeps a broken kernel path from hanging the run.
 */
async function collect(e: FlowEvents, done: (seen: { conntrack: ConntrackEvent[]; dropped: DroppedPacket[] }) => boolean, between = () => {}) {
  const seen = { conntrack: [] as ConntrackEvent[], dropped: [] as DroppedPacket[], lost: 0 };
  for (let i = 0; i < 600 && !done(seen); i++) {
    between();
    seen.lost += e.drain({ conntrack: (c) => seen.conntrack.push(c), dropped: (p) => seen.dropped.push(p) }).lost;
    if (!done(seen)) await sleep(50);
  }
  return seen;
}

const ifindex = async (dev: string): Promise<number> => (await ipIn(router).link(dev))!.ifindex;

describe("flow events from the kernel", () => {
  it("reports a forwarded TCP connection's start, its close, and its DESTROY with counters; a DNAT'd one's backend in the reply", async () => {
    const events = open();
    await listen("10.91.1.2", 8080);
    await connect("10.91.1.2", 8080);
    await connect("10.91.9.9", 80);
    const ours = (c: ConntrackEvent) => c.protocol === "TCP" && c.src === "10.91.2.2";
    const ends = (n: number) => (s: { conntrack: ConntrackEvent[] }) => s.conntrack.filter((c) => ours(c) && c.kind === "end").length >= n;
    // The close (TIME_WAIT) comes as an update, without waiting for conntrack's collector.
    const closed = await collect(events, ends(2));
    const direct = closed.conntrack.filter((c) => ours(c) && c.dst === "10.91.1.2");
    expect(direct.map((c) => c.kind)).toEqual(["new", "end"]);
    const [start, close] = direct as [ConntrackEvent, ConntrackEvent];
    expect(start).toMatchObject({
      family: 4, protocol: "TCP", src: "10.91.2.2", dst: "10.91.1.2", dport: 8080,
      replySrc: "10.91.1.2", replyDst: "10.91.2.2", replySport: 8080, replyDport: start.sport, packets: null, bytes: null,
    });
    expect(start.sport).toBeGreaterThan(0);
    expect(start.id).not.toBeNull();
    expect(close).toMatchObject({ id: start.id, src: start.src, sport: start.sport, dst: start.dst, dport: start.dport });
    const natted = closed.conntrack.filter((c) => ours(c) && c.dst === "10.91.9.9");
    expect(natted.map((c) => c.kind)).toEqual(["new", "end"]);
    expect(natted[0]).toMatchObject({ dport: 80, replySrc: "10.91.1.2", replySport: 8080, replyDst: "10.91.2.2", replyDport: natted[0]!.sport });

    // The DESTROY, once the entry expired and is reaped: the same connection, with accounting
    // on, its counters.
    const destroyed = await collect(events, ends(2), reapExpired);
    const end = destroyed.conntrack.find((c) => ours(c) && c.kind === "end" && c.id === start.id)!;
    expect(end).toMatchObject({ src: start.src, sport: start.sport, dst: start.dst, dport: start.dport });
    expect(end.packets![0]).toBeGreaterThan(0);
    expect(end.packets![1]).toBeGreaterThan(0);
    // "ok" went back: the reply direction carried more than bare headers' 40 bytes a packet.
    expect(end.bytes![1]).toBeGreaterThan(end.packets![1] * 40);
    expect(closed.lost + destroyed.lost).toBe(0);
  });

  it("reports packets a rule logs to the nflog group, IPv4 and IPv6, with prefix, addresses and devices", async () => {
    const events = open();
    await knock("10.91.1.2", 9);
    await knock("fd91:1::2", 9);
    const seen = await collect(events, (s) => new Set(s.dropped.map((p) => p.family)).size === 2);
    const [inB, outA] = [await ifindex("rb"), await ifindex("ra")];
    const v4 = seen.dropped.find((p) => p.family === 4);
    const v6 = seen.dropped.find((p) => p.family === 6);
    // NF_INET_FORWARD is hook 2.
    expect(v4).toMatchObject({ prefix: "drop_x_in", protocol: "TCP", src: "10.91.2.2", dst: "10.91.1.2", dport: 9, inIfindex: inB, outIfindex: outA, hook: 2 });
    expect(v6).toMatchObject({ prefix: "drop_x_in", protocol: "TCP", src: "fd91:2::2", dst: "fd91:1::2", dport: 9, inIfindex: inB, outIfindex: outA, hook: 2 });
    expect(v4!.sport).toBeGreaterThan(0);
    expect(seen.lost).toBe(0);
  });

  it("refuses a second listener of the group clearly, and lets one in once the first has closed", async () => {
    const first = open();
    let err: unknown;
    try {
      open();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NflogGroupTaken);
    expect((err as Error).message).toContain(`nflog group ${GROUP} is taken by another process`);
    // The kernel answers another socket's bind with EPERM (the group's listener is not it).
    expect((err as NflogGroupTaken).errno).toBe(1);
    first.close();
    const second = open();
    await knock("10.91.1.2", 9);
    const seen = await collect(second, (s) => s.dropped.length > 0);
    expect(seen.dropped[0]).toMatchObject({ prefix: "drop_x_in", dport: 9 });
  });
});
