import { mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { nullLogger } from "../../shared/log.js";
import { flowRecord } from "../../testkit/flows.js";
import { NODE, allPods, client, namespaces, pod, policy, remoteClient, web, webOnly } from "../../testkit/policy.js";
import { compilePolicies, podCounter } from "../policy/compile.js";
import type { PolicySnapshot } from "../policy/types.js";
import { FlowCollector, podIndex, type FlowSink, type FlowSource, type FlowView } from "./collector.js";
import type { ConntrackEvent, DroppedPacket } from "../../shared/kernel/netlink/flow-events.js";
import { TokenBucket } from "./limiter.js";
import { createFlowMetrics } from "./metrics.js";
import type { FlowRecord } from "./record.js";
import { printFlows } from "./cli.js";
import { flowSocketPath, readFlows, serveFlows, type FlowLine } from "./socket.js";

const webIp = web.ips[0]!;
const clientIp = client.ips[0]!;
/** On another node: a connection from it is this node's only at the server's end. */
const remoteIp = remoteClient.ips[0]!;
const snapshot: PolicySnapshot = { policies: [policy("default", "deny-web", webOnly)], pods: allPods, namespaces };
const plan = compilePolicies(snapshot, { nodeName: NODE, logDropsPerSecond: 5 });

const syn = (src: string, dst: string): ConntrackEvent => ({
  kind: "new", id: 1, family: 4, protocol: "TCP", src, dst, sport: 40000, dport: 80,
  replySrc: dst, replyDst: src, replySport: 80, replyDport: 40000, packets: null, bytes: null,
});
const drop = (prefix: string): DroppedPacket => ({ prefix, family: 4, protocol: "TCP", src: clientIp, dst: webIp, sport: 40000, dport: 80, inIfindex: 3, outIfindex: 4 });

/** A stand-in for the kernel's sources: what is queued, whether open, how often opened. */
class Queue implements FlowSource {
  conntrack: ConntrackEvent[] = [];
  dropped: DroppedPacket[] = [];
  lost = 0;
  closed = false;
  drain(on: { conntrack(e: ConntrackEvent): void; dropped(p: DroppedPacket): void }): { lost: number } {
    for (const e of this.conntrack.splice(0)) on.conntrack(e);
    for (const p of this.dropped.splice(0)) on.dropped(p);
    const lost = this.lost;
    this.lost = 0;
    return { lost };
  }
  close(): void {
    this.closed = true;
  }
}

function collector(over: { sink?: FlowSink; metrics?: boolean; rate?: number; view?: FlowView } = {}) {
  const opened: Queue[] = [];
  const registry = new Registry();
  const c = new FlowCollector({
    nodeName: NODE,
    open: () => {
      const q = new Queue();
      opened.push(q);
      return q;
    },
    view: () => over.view ?? { snapshot, enforced: plan },
    sink: over.sink ?? null,
    metrics: over.metrics ? createFlowMetrics(registry) : null,
    limiter: new TokenBucket(over.rate ?? 1000, over.rate ?? 1000, () => 0),
    logger: nullLogger,
    pollMs: 3_600_000,
  });
  return { c, opened, registry };
}

const stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

describe("FlowCollector", () => {
  it("reads the kernel only while someone follows, and closes it when the last one leaves", () => {
    const { c, opened } = collector();
    c.start();
    expect(opened).toHaveLength(0);
    const seen: FlowRecord[][] = [[], []];
    const leave = [c.follow((r) => seen[0]!.push(r)), c.follow((r) => seen[1]!.push(r))];
    expect(opened).toHaveLength(1);
    opened[0]!.conntrack.push(syn(remoteIp, webIp));
    c.poll();
    expect(seen[0]!.map((r) => [r.event, r.direction, r.pod])).toEqual([["start", "ingress", "default/web"]]);
    expect(seen[1]).toEqual(seen[0]);
    expect(c.recent()).toEqual(seen[0]);
    leave[0]!();
    expect(opened[0]!.closed).toBe(false);
    leave[1]!();
    expect(opened[0]!.closed).toBe(true);
    expect(c.hello()).toEqual({ collecting: "on-demand", kept: 1 });
  });

  it("keeps reading with a sink or metrics, and hands each record to both", () => {
    const written: FlowRecord[] = [];
    const { c, opened, registry } = collector({ sink: { write: (r) => written.push(...r), close: () => undefined }, metrics: true });
    c.start();
    stops.push(() => c.stop());
    expect(opened).toHaveLength(1);
    expect(c.hello().collecting).toBe("always");
    c.follow(() => undefined)();
    expect(opened[0]!.closed).toBe(false);
    opened[0]!.dropped.push(drop(podCounter("default/web", "ingress").name));
    c.poll();
    expect(written.map((r) => [r.event, r.pod, r.source.pod, r.policies])).toEqual([["drop", "default/web", "default/client", ["default/deny-web"]]]);
    return registry.metrics().then((text) => expect(text).toMatch(/twill_flow_drops_total\{namespace="default",policy="default\/deny-web"\} 1/));
  });

  it("counts what it cannot tell or keep: an unknown prefix, a queue overflow, a burst over the rate", async () => {
    const { c, opened, registry } = collector({ metrics: true, rate: 2 });
    c.start();
    stops.push(() => c.stop());
    const q = opened[0]!;
    q.dropped.push(drop("drop_0000000000000000_in"));
    q.lost = 3;
    for (let i = 0; i < 5; i++) q.conntrack.push(syn(remoteIp, webIp));
    c.poll();
    expect(c.recent()).toHaveLength(2);
    const text = await registry.metrics();
    expect(text).toMatch(/twill_flows_lost_total\{reason="unknown-prefix"\} 1/);
    expect(text).toMatch(/twill_flows_lost_total\{reason="overflow"\} 3/);
    expect(text).toMatch(/twill_flows_lost_total\{reason="rate"\} 3/);
  });

  it("records a TCP connection's end once: at its close, not again at its DESTROY; a DESTROY alone is an end", () => {
    const { c, opened } = collector();
    const seen: FlowRecord[] = [];
    c.follow((r) => seen.push(r));
    const q = opened[0]!;
    q.conntrack.push(syn(remoteIp, webIp), { ...syn(remoteIp, webIp), kind: "end", closed: true }, { ...syn(remoteIp, webIp), kind: "end" });
    q.conntrack.push({ ...syn(remoteIp, webIp), id: 2, protocol: "UDP", kind: "end" });
    c.poll();
    expect(seen.map((r) => [r.event, r.protocol])).toEqual([["start", "TCP"], ["end", "TCP"], ["end", "UDP"]]);
  });

  it("with a sink, tries the kernel again while it cannot be read (the nflog group taken, say)", () => {
    vi.useFakeTimers();
    try {
      let attempts = 0;
      const c = new FlowCollector({
        nodeName: NODE,
        open: () => {
          if (++attempts < 3) throw new Error("nflog group 1024 is taken by another process");
          return new Queue();
        },
        view: () => ({ snapshot, enforced: plan }),
        sink: { write: () => undefined, close: () => undefined },
        metrics: null,
        limiter: new TokenBucket(10, 10, () => 0),
        logger: nullLogger,
      });
      c.start();
      expect(c.reading).toBe(false);
      vi.advanceTimersByTime(10_000);
      expect(c.reading).toBe(false);
      vi.advanceTimersByTime(10_000);
      expect(c.reading).toBe(true);
      expect(attempts).toBe(3);
      c.stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it("opens the kernel's sources again when reading them fails, without throwing out of its timer", () => {
    vi.useFakeTimers();
    try {
      const opened: Queue[] = [];
      const c = new FlowCollector({
        nodeName: NODE,
        open: () => {
          const q = new Queue();
          if (opened.length === 0) q.drain = () => { throw new Error("read conntrack events: Bad file descriptor"); };
          opened.push(q);
          return q;
        },
        view: () => ({ snapshot, enforced: plan }),
        sink: null,
        metrics: null,
        limiter: new TokenBucket(10, 10, () => 0),
        logger: nullLogger,
        pollMs: 100,
      });
      const seen: FlowRecord[] = [];
      c.follow((r) => seen.push(r));
      vi.advanceTimersByTime(100);
      expect(opened).toHaveLength(2);
      expect(opened[0]!.closed).toBe(true);
      opened[1]!.conntrack.push(syn(remoteIp, webIp));
      vi.advanceTimersByTime(100);
      expect(seen).toHaveLength(1);
      c.stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it("names pods by the newest snapshot at once, and reads policies again at most once a second", () => {
    let now = 0;
    const open: PolicySnapshot = { policies: [], pods: allPods, namespaces };
    let view: FlowView = { snapshot: open, enforced: null };
    const newcomer = { ...pod("team-x", "newcomer", ["10.0.1.99"]), nodeName: "node-b" };
    const c = new FlowCollector({
      nodeName: NODE, open: () => new Queue(), view: () => view, sink: null, metrics: null,
      limiter: new TokenBucket(100, 100, () => now), logger: nullLogger, now: () => now,
    });
    const seen: FlowRecord[] = [];
    c.follow((r) => seen.push(r));
    const q = (c as unknown as { source: Queue }).source;
    const connect = (at: number) => {
      now = at;
      q.conntrack.push(syn("10.0.1.99", webIp));
      c.poll();
    };
    connect(0);
    // A pod starts and a policy admitting anyone to web comes, in one new snapshot.
    const admitAll = policy("default", "web-from-all", { ...webOnly, ingress: [{}] });
    view = { snapshot: { policies: [admitAll], pods: [...allPods, newcomer], namespaces }, enforced: null };
    connect(500);
    connect(1000);
    expect(seen.map((r) => [r.source.pod, r.policies])).toEqual([
      [null, []],
      ["team-x/newcomer", []],
      ["team-x/newcomer", ["default/web-from-all"]],
    ]);
  });

  it("tells nothing before the first snapshot: no record, nothing thrown", () => {
    const { c, opened } = collector({ view: { snapshot: null, enforced: null } });
    const seen: FlowRecord[] = [];
    c.follow((r) => seen.push(r));
    opened[0]!.conntrack.push(syn(clientIp, webIp));
    opened[0]!.dropped.push(drop(podCounter("default/web", "ingress").name));
    c.poll();
    expect(seen).toEqual([]);
  });
});

describe("podIndex", () => {
  it("finds a pod by its address however the API spells it, this node's running pod first", () => {
    const old = { ...pod("default", "old", ["fd00:0::3"]), nodeName: NODE, terminating: true };
    const now = { ...pod("default", "new", ["fd00::3"]), nodeName: NODE };
    // Written with the leading zeros the apiserver's old parser took, as the compiler reads it.
    const remote = { ...pod("default", "remote", ["010.9.0.1"]), nodeName: "elsewhere" };
    const podOf = podIndex({ policies: [], pods: [old, now, remote], namespaces }, NODE);
    expect(podOf("fd00::3")?.name).toBe("new");
    expect(podOf("fd00:0:0::3")?.name).toBe("new");
    expect(podOf("10.9.0.1")?.name).toBe("remote");
    expect(podOf("10.9.0.2")).toBeNull();
    expect(podOf("not an address")).toBeNull();
  });
});

describe("the flows socket", () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("answers the kept flows that match, then follows; refuses a bad request with its reason", async () => {
    dir = mkdtempSync(join(tmpdir(), "twill-flows-"));
    const path = join(dir, "flows.sock");
    const kept = [flowRecord(), flowRecord({ pod: "default/other", source: { ip: "10.0.0.9", port: 1, pod: "default/other" }, destination: { ip: "10.0.0.8", port: 2, pod: null } })];
    const feed: { follower: ((r: FlowRecord) => void) | null } = { follower: null };
    const server = await serveFlows(
      path,
      { hello: () => ({ collecting: "on-demand", kept: kept.length }), recent: () => kept, follow: (on) => ((feed.follower = on), () => (feed.follower = null)) },
      (req) => {
        if (req.pod === "bad") throw new Error("pod must be NAMESPACE/NAME");
        return (r) => !req.pod || r.pod === req.pod;
      },
      nullLogger,
    );
    try {
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const lines: FlowLine[] = [];
      await readFlows(path, { follow: false, pod: "default/web" }, (l) => lines.push(l));
      expect(lines).toEqual([{ hello: { collecting: "on-demand", kept: 2 } }, { flow: kept[0] }]);

      const refused: FlowLine[] = [];
      await readFlows(path, { follow: false, pod: "bad" }, (l) => refused.push(l));
      expect(refused).toEqual([{ error: "pod must be NAMESPACE/NAME" }]);

      const followed: FlowLine[] = [];
      const stop = new AbortController();
      const done = readFlows(path, { follow: true, pod: "default/web" }, (l) => {
        followed.push(l);
        if ("flow" in l && l.flow.event === "end") stop.abort();
      }, stop.signal);
      while (!feed.follower) await new Promise((r) => setTimeout(r, 10));
      feed.follower(flowRecord({ pod: "default/other" }));
      feed.follower(flowRecord({ event: "end" }));
      await done;
      expect(followed.map((l) => ("flow" in l ? l.flow.event : "hello" in l ? "hello" : "error"))).toEqual(["hello", "start", "end"]);
      // The agent stops sending to a follower that left.
      while (feed.follower) await new Promise((r) => setTimeout(r, 10));
    } finally {
      await server.close();
    }
    await expect(readFlows(path, { follow: false }, () => undefined)).rejects.toThrow(/no twilld answers on .*flows.sock/);
  });

  it("twilld flows prints each flow (a line, or JSON), skips lines it does not know, and says when the agent keeps none", async () => {
    dir = mkdtempSync(join(tmpdir(), "twill-flows-"));
    const stateDir = dir;
    const path = flowSocketPath(stateDir);
    const kept: FlowRecord[] = [];
    // An agent newer than the command: a kind of line this one does not know comes first.
    const server = createServer((sock) => sock.once("data", () => {
      sock.write(JSON.stringify({ stats: { lost: 0 } }) + "\n");
      sock.write(JSON.stringify({ hello: { collecting: "on-demand", kept: kept.length } }) + "\n");
      sock.end(kept.map((f) => JSON.stringify({ flow: f }) + "\n").join(""));
    }));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      const run = async (output: "table" | "json") => {
        let out = "";
        let err = "";
        const ok = await printFlows({ stateDir, output, follow: false }, (s) => (out += s), (s) => (err += s));
        return { ok, out, err };
      };
      expect(await run("table")).toMatchObject({ ok: true, out: "", err: expect.stringMatching(/^No flows kept: .*--follow/) });
      kept.push(flowRecord());
      const table = await run("table");
      expect(table).toMatchObject({ ok: true, err: "" });
      expect(table.out).toMatch(/^12:03:04\.123  start +ingress +default\/client 10\.0\.0\.11:43210 -> default\/web 10\.0\.0\.10:8080 TCP  by default\/allow-client\n$/);
      expect(JSON.parse((await run("json")).out)).toEqual(flowRecord());
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
