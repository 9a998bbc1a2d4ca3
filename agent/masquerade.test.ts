import { describe, expect, it } from "vitest";
import { KernelError } from "../shared/kernel/types.js";
import { type IpRoute } from "../testkit/iproute.js";
import { nullLogger } from "../shared/log.js";
import { parseNetworkConfig } from "./config.js";
import { Masquerade } from "./masquerade.js";

/** nft as a map of tables: `-f` installs what the script's last table defines, `list` prints it. */
function fakeNft() {
  const tables = new Map<string, string>();
  const calls: string[] = [];
  const ip = {
    async nft(args: readonly string[], op: string, input?: string): Promise<string> {
      calls.push(args.join(" "));
      if (args[0] === "-f") {
        tables.set("twill", input!.slice(input!.lastIndexOf("table inet twill {")));
        return "";
      }
      const name = args.at(-1)!;
      if (args[0] === "delete" && tables.delete(name)) return "";
      const text = tables.get(name);
      if (args[0] === "list" && text !== undefined) return text;
      throw new KernelError(op, "Error: No such file or directory");
    },
  };
  return { ip: ip as unknown as IpRoute, tables, calls };
}

const network = (ipMasq: boolean) => parseNetworkConfig({ Network: "10.244.0.0/16", IPMasq: ipMasq });

describe("Masquerade", () => {
  it("installs the table once, leaves it while it is as installed, and puts it back when edited", async () => {
    const nft = fakeNft();
    const masq = new Masquerade(network(true), nft.ip, nullLogger);
    expect(await masq.reconcile()).toBe(1);
    expect(nft.tables.get("twill")).toContain("ip saddr 10.244.0.0/16 ip daddr != { 10.244.0.0/16, 224.0.0.0/4 } masquerade");
    expect(await masq.reconcile()).toBe(0);
    nft.tables.set("twill", "table inet twill {}");
    expect(await masq.reconcile()).toBe(1);
    expect(nft.calls.filter((c) => c === "-f -")).toHaveLength(2);
  });

  it("lists the table only when nft monitor saw it change", async () => {
    const nft = fakeNft();
    let moved = true;
    const changes = { sinceLast: async () => moved, close: () => {} };
    const masq = new Masquerade(network(true), nft.ip, nullLogger, changes);
    expect(await masq.reconcile()).toBe(1);
    moved = false;
    nft.calls.length = 0;
    expect(await masq.reconcile()).toBe(0);
    expect(nft.calls).toEqual([]);
    nft.tables.set("twill", "table inet twill {}");
    moved = true;
    expect(await masq.reconcile()).toBe(1);
    expect(nft.calls).toEqual(["list table inet twill", "-f -", "list table inet twill"]);
  });

  it("removes a table left from when ipMasq was on, and does nothing when there is none", async () => {
    const nft = fakeNft();
    nft.tables.set("twill", "table inet twill {}");
    const masq = new Masquerade(network(false), nft.ip, nullLogger);
    expect(await masq.reconcile()).toBe(1);
    expect(nft.tables.has("twill")).toBe(false);
    expect(await masq.reconcile()).toBe(0);
  });
});
