import type { IpLink } from "../../../testkit/iproute.js";
import { fail, type Case, type CaseContext, type Pod } from "../context.js";
import { ipIn } from "../../../testkit/netns.js";
import { addStandIn } from "../namespaces.js";
import { snippet } from "../shape.js";

/** Checklist lines 12-13: DEL succeeds whatever is already gone, and releases the address. */

/**
 * Fills the pool, runs `del` on the first pod, then checks the DEL succeeded with no output,
 * nothing of the attachment remains, and exactly its address is free again.
 */
async function delCase(ctx: CaseContext, what: string, del: (pod: Pod, host: IpLink[]) => Promise<void>): Promise<void> {
  const s = await ctx.poolScenario(1);
  const pod = s.pods[0]!;
  const host = await ctx.hostSide(pod);
  if (host.length === 0) ctx.note("no host-side link of the attachment found to watch");
  await del(pod, host);
  await ctx.expectGone(pod, host, what);
  await ctx.expectReleased(s, 1, what);
}

async function delSilently(ctx: CaseContext, pod: Pod, opts: Parameters<CaseContext["del"]>[1] = {}): Promise<void> {
  const out = await ctx.del(pod, opts);
  ctx.expectSuccess(out, out.label);
  if (out.stdout.trim() !== "") fail(`${out.label} printed output on success: ${snippet(out.stdout)}`);
}

export const delCases: Case[] = [
  {
    id: "12.1",
    name: "DEL, repeated three times, succeeds without output, removes the attachment and frees the address",
    async run(ctx) {
      await delCase(ctx, "three DELs", async (pod) => {
        for (let i = 0; i < 3; i++) await delSilently(ctx, pod);
      });
    },
  },
  {
    id: "12.2",
    name: "DEL of an attachment that was never added succeeds",
    async run(ctx) {
      await ctx.delOk(await ctx.pod(), { conf: ctx.conf() });
    },
  },
  {
    id: "12.3",
    name: "DEL with an empty CNI_NETNS after the sandbox is gone succeeds and frees the address",
    async run(ctx) {
      await delCase(ctx, "DEL with an empty CNI_NETNS", async (pod, host) => {
        await ctx.removePod(pod, host);
        await delSilently(ctx, pod, { env: { CNI_NETNS: "" } });
      });
    },
  },
  {
    id: "12.4",
    name: "DEL with a CNI_NETNS path that no longer exists succeeds and frees the address",
    async run(ctx) {
      await delCase(ctx, "DEL with a vanished netns", async (pod, host) => {
        await ctx.removePod(pod, host);
        await delSilently(ctx, pod);
      });
    },
  },
  {
    id: "12.5",
    name: "DEL without prevResult succeeds, removes the attachment and frees the address",
    async run(ctx) {
      await delCase(ctx, "DEL without prevResult", (pod) => delSilently(ctx, pod, { prevResult: false }));
    },
  },
  {
    id: "12.6",
    name: "DEL after a failed ADD succeeds and frees the address",
    async run(ctx) {
      const s = await ctx.poolScenario(1);
      await ctx.delOk(s.pods.shift()!);
      // ADD into a sandbox whose interface name is taken fails; the runtime then calls DEL.
      const pod = await ctx.pod();
      await addStandIn(pod.ns, pod.ifname);
      const out = await ctx.add(pod, s.conf);
      ctx.expectError(out, null, `ADD with ${pod.ifname} already in the sandbox`);
      await delSilently(ctx, pod, { conf: s.conf });
      await ctx.expectReleased(s, 1, "a failed ADD and its DEL");
    },
  },
  {
    id: "12.7",
    name: "DEL of one attachment leaves the others, and their reservations, intact",
    async run(ctx) {
      const s = await ctx.poolScenario(2);
      await ctx.delOk(s.pods[0]!);
      for (const other of s.pods.slice(1)) await ctx.expectAttached(other);
      await ctx.expectReleased(s, 1, "DEL of one attachment");
    },
  },
  {
    id: "13.1",
    name: "DEL after the sandbox interface was removed by someone else succeeds and frees the address",
    async run(ctx) {
      await delCase(ctx, "DEL with the interface already gone", async (pod) => {
        await ipIn(pod.ns).exec(["link", "del", pod.ifname], `delete ${pod.ifname}`);
        await delSilently(ctx, pod);
      });
    },
  },
];
