import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNetns, deleteNetns, netnsPath } from "../../testkit/netns.js";
import { IpRoute, KernelError } from "./iproute.js";
import { listFdb } from "./fdb.js";

const ns = `twbs${process.pid.toString(36)}`;
let ip: IpRoute;
let oneShot: IpRoute;

beforeAll(async () => {
  await addNetns(ns);
  ip = new IpRoute(netnsPath(ns), undefined, { persistent: true });
  oneShot = new IpRoute(netnsPath(ns));
  await oneShot.batch([["link", "add", "d0", "type", "veth", "peer", "name", "d1"], ["link", "set", "d1", "up"], ["link", "set", "d0", "up"], ["addr", "add", "10.9.0.1/24", "dev", "d0"]], "set up d0");
});

afterAll(async () => {
  ip?.close();
  await deleteNetns(ns);
});

describe("an IpRoute with persistent ip and bridge processes", () => {
  it("applies forced batches and reads them back", async () => {
    const routes = Array.from({ length: 250 }, (_, i) => ["route", "replace", `10.50.${i}.0/24`, "via", "10.9.0.2", "proto", "150"]);
    await ip.batch(routes, "add routes", true);
    // Reads of one kind share a process and run in order.
    const [v4, again] = await Promise.all([ip.routes(4, ["proto", "150"]), ip.routes(4, ["proto", "150"])]);
    expect([v4.length, again.length]).toEqual([250, 250]);
    expect((await oneShot.routes(4, ["proto", "150"])).length).toBe(250);
    await ip.batch(routes.map(([, , dst]) => ["route", "del", dst!, "proto", "150"]), "remove routes", true);
    expect(await ip.routes(4, ["proto", "150"])).toEqual([]);
  });

  it("reports a failing line by its number in that batch, and applies the others", async () => {
    await ip.batch([["route", "replace", "10.60.0.0/24", "dev", "d0", "proto", "150"]], "warm up", true);
    const err = await ip
      .batch([["route", "replace", "10.61.0.0/24", "dev", "d0", "proto", "150"], ["route", "replace", "10.62.0.0/24", "dev", "nosuchdev"], ["route", "replace", "10.63.0.0/24", "dev", "d0", "proto", "150"]], "add routes", true)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect((err as KernelError).batchLine).toBe(2);
    expect((err as KernelError).message).toMatch(/add routes.*nosuchdev/s);
    expect((await ip.routes(4, ["proto", "150"])).map((r) => r.dst).sort()).toEqual(["10.60.0.0/24", "10.61.0.0/24", "10.63.0.0/24"]);
  });

  it("gives a read of a missing device the one-shot error, so callers still see notFound", async () => {
    const err = await ip.json(["link", "show", "dev", "nosuchdev"], "read nosuchdev").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect((err as KernelError).notFound).toBe(true);
    expect(await ip.link("nosuchdev")).toBeNull();
    expect(await listFdb(ip, "nosuchdev")).toEqual([]);
  });

  it("lists addresses after links were read (iproute2 keeps state between lines)", async () => {
    for (let i = 0; i < 2; i++) {
      expect((await ip.link("d0"))?.ifname).toBe("d0");
      const [d0] = await ip.addrs("d0");
      expect(d0?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toContain("10.9.0.1/24");
    }
  });

  it("starts a new process after one exits on a line it cannot parse", async () => {
    const err = await ip.batch([["route", "replace", "10.70.0.0/24", "via", "1.2.3.4.5"]], "bad route", true).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect((err as KernelError).stderr).toMatch(/exited with code/);
    await ip.batch([["route", "replace", "10.71.0.0/24", "dev", "d0", "proto", "150"]], "good route", true);
    expect((await ip.routes(4, ["proto", "150"])).map((r) => r.dst)).toContain("10.71.0.0/24");
  });

  it("programs and lists FDB entries through bridge", async () => {
    await oneShot.batch([["link", "add", "vx0", "type", "vxlan", "id", "7", "dstport", "4789", "dev", "d0"], ["link", "set", "vx0", "up"]], "add vx0");
    const macs = Array.from({ length: 50 }, (_, i) => `02:00:00:00:01:${i.toString(16).padStart(2, "0")}`);
    await ip.bridgeBatch(macs.map((m, i) => ["fdb", "replace", m, "dev", "vx0", "dst", `10.9.0.${i + 10}`, "self", "permanent"]), "add fdb", true);
    expect((await listFdb(ip, "vx0")).map((f) => f.mac).sort()).toEqual(macs);
  });

  it("ends the process that printed a large dump or ran a long batch, and goes on with new ones", async () => {
    ip.close();
    await ip.link("d0");
    expect(ip.persistentProcesses).toBe(1); // the link reads'
    await ip.routes(4, ["proto", "150"]); // small: its process stays
    expect(ip.persistentProcesses).toBe(2);
    const many = Array.from({ length: 5000 }, (_, i) => ["route", "replace", `10.80.${i >> 8}.${i & 255}/32`, "dev", "d0", "proto", "151"]);
    await oneShot.batch(many, "add 5000 routes");
    try {
      expect((await ip.routes(4, ["proto", "151"])).length).toBe(5000); // about 375 KB of JSON
      expect(ip.persistentProcesses).toBe(1);
      expect((await ip.routes(4, ["proto", "151"])).length).toBe(5000);
      const before = ip.persistentProcesses;
      await ip.batch(many.slice(0, 10).map(([, , dst]) => ["route", "del", dst!, "proto", "151"]), "a short batch", true);
      expect(ip.persistentProcesses).toBe(before + 1); // the batch process stays
      await ip.batch(many.slice(10).map(([, , dst]) => ["route", "del", dst!, "proto", "151"]), "a long batch", true);
      expect(ip.persistentProcesses).toBe(before);
      expect(await ip.routes(4, ["proto", "151"])).toEqual([]);
    } finally {
      await oneShot.batch([["route", "flush", "proto", "151"]], "remove them");
    }
  });
});
