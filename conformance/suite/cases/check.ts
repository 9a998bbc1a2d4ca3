import { existsSync } from "node:fs";
import { join } from "node:path";
import { hostInterfaces } from "../attachment.js";
import { ipamType } from "../config.js";
import { fail, notApplicable, type Case, type CaseContext, type Pod } from "../context.js";
import { ipIn } from "../../../testkit/netns.js";
import { snippet } from "../shape.js";

/** Checklist lines 14-15: CHECK passes on a healthy attachment and names what broke. */

async function added(ctx: CaseContext): Promise<Pod> {
  const pod = await ctx.pod();
  await ctx.addOk(pod, ctx.conf({ version: ctx.versionAtLeast("0.4.0") }));
  return pod;
}

/** Breaks one thing, then CHECK must fail and its message name one of `names`. */
function brokenCase(id: string, what: string, breakIt: (ctx: CaseContext, pod: Pod) => Promise<string[]>): Case {
  return {
    id,
    name: `CHECK fails after ${what} is removed, naming it`,
    async run(ctx) {
      const pod = await added(ctx);
      const names = await breakIt(ctx, pod);
      const text = ctx.expectError(await ctx.check(pod), null, `CHECK after removing ${what}`);
      if (!names.some((n) => text.toLowerCase().includes(n.toLowerCase()))) fail(`the error names none of ${names.join(", ")}: ${snippet(text)}`);
    },
  };
}

function firstRoute(pod: Pod): { dst: string; gw?: string } {
  const routes: any[] = pod.result?.routes ?? [];
  return routes.find((r) => r.dst === "0.0.0.0/0" || r.dst === "::/0") ?? routes[0] ?? notApplicable("the result has no routes");
}

export const checkCases: Case[] = [
  {
    id: "14.1",
    name: "CHECK right after ADD succeeds without output",
    async run(ctx) {
      const pod = await added(ctx);
      const out = await ctx.check(pod);
      ctx.expectSuccess(out, "CHECK after ADD");
      if (out.stdout.trim() !== "") fail(`CHECK printed output on success: ${snippet(out.stdout)}`);
    },
  },
  brokenCase("14.2", "the sandbox interface", async (_ctx, pod) => {
    await ipIn(pod.ns).exec(["link", "del", pod.ifname], `delete ${pod.ifname}`);
    return [pod.ifname];
  }),
  brokenCase("14.3", "the sandbox address", async (_ctx, pod) => {
    const address: string = pod.result?.ips?.[0]?.address ?? notApplicable("the result has no address");
    await ipIn(pod.ns).exec(["addr", "del", address, "dev", pod.ifname], `delete address ${address}`);
    return [address.split("/")[0]!];
  }),
  brokenCase("14.4", "the sandbox route", async (_ctx, pod) => {
    const r = firstRoute(pod);
    const family = r.dst.includes(":") ? "-6" : "-4";
    await ipIn(pod.ns).exec([family, "route", "del", r.dst, ...(r.gw ? ["via", r.gw] : [])], `delete route ${r.dst}`);
    return [r.dst, ...(r.gw ? [r.gw] : []), "route"];
  }),
  brokenCase("14.5", "the host veth", async (ctx, pod) => {
    const [veth] = hostInterfaces(pod.result, await ctx.nodeState(), "veth");
    if (!veth) notApplicable("the result lists no host veth");
    await ipIn(ctx.node).exec(["link", "del", veth!], `delete ${veth}`);
    return [veth!, pod.ifname];
  }),
  brokenCase("14.6", "the bridge", async (ctx, pod) => {
    const [bridge] = hostInterfaces(pod.result, await ctx.nodeState(), "bridge");
    if (!bridge) notApplicable("the result lists no bridge");
    await ipIn(ctx.node).exec(["link", "del", bridge!], `delete ${bridge}`);
    return [bridge!];
  }),
  {
    id: "14.7",
    name: "CHECK without prevResult fails",
    async run(ctx) {
      const pod = await added(ctx);
      ctx.expectError(await ctx.check(pod, { prevResult: false }), null, "CHECK without prevResult");
    },
  },
  {
    id: "15.1",
    name: "CHECK fails when the IPAM reservation is gone (CHECK is delegated to IPAM)",
    async run(ctx) {
      const type = ipamType(ctx.setup.conf) ?? notApplicable("the config has no ipam section");
      const ipam = ctx.setup.cniPath
        .split(":")
        .map((dir) => join(dir, type))
        .find((p) => existsSync(p));
      if (!ipam) notApplicable(`IPAM plugin ${type} is not in CNI_PATH`);
      const pod = await added(ctx);
      const release = await ctx.del(pod, { plugin: ipam! });
      ctx.expectSuccess(release, `DEL of the IPAM plugin ${type}`);
      ctx.expectError(await ctx.check(pod), null, "CHECK after the IPAM reservation was released");
    },
  },
];
