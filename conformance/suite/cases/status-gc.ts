import { Code } from "../../../shared/cni/errors.js";
import { setKey, withTempPaths, withVersion } from "../config.js";
import { fail, notApplicable, type Case, type CaseContext } from "../context.js";
import { snippet } from "../shape.js";

/** Checklist lines 16-17: STATUS and GC, both new in CNI 1.1.0. */

function need11(ctx: CaseContext): string {
  if (!ctx.supports("1.1.0")) notApplicable(`STATUS and GC are CNI 1.1.0; the plugin lists ${ctx.setup.supported.join(", ") || "nothing"}`);
  return "1.1.0";
}

const statusUnavailable = [Code.NotAvailable, Code.LimitedConnectivity];

/**
 * GC keeping the first `keep` pods of a full small pool: the others' addresses must be free
 * afterwards and the kept ones untouched. Without a small pool, CHECK tells which
 * reservations survived instead.
 */
async function gcCase(ctx: CaseContext, key: string, keepNone: boolean): Promise<void> {
  const s = await ctx.poolScenario(2, need11(ctx));
  const keep = keepNone ? [] : s.pods.slice(0, Math.ceil(s.pods.length / 2));
  const freed = s.pods.filter((p) => !keep.includes(p));
  const list = keep.map((p) => ({ containerID: p.containerId, ifname: p.ifname }));
  const out = await ctx.call("GC", null, setKey(s.conf, key, list));
  ctx.expectSuccess(out, `GC with ${key}`);
  if (out.stdout.trim() !== "") fail(`GC printed output on success: ${snippet(out.stdout)}`);
  for (const p of keep) {
    await ctx.expectAttached(p);
    const check = await ctx.check(p);
    if (check.code !== 0) fail(`GC broke an attachment it was told to keep: CHECK failed: ${snippet(check.stdout)}`);
  }
  if (s.small) return ctx.expectReleased(s, freed.length, `GC keeping ${keep.length} of ${s.pods.length}`);
  for (const p of freed) {
    if ((await ctx.check(p)).code === 0) fail(`after GC without ${p.containerId.slice(0, 12)}, CHECK still finds its reservation`);
  }
}

export const statusGcCases: Case[] = [
  {
    id: "16.1",
    name: "STATUS succeeds when the plugin is ready",
    async run(ctx) {
      const out = await ctx.call("STATUS", null, ctx.conf({ version: need11(ctx) }));
      ctx.expectSuccess(out, "STATUS");
      if (out.stdout.trim() !== "") ctx.note(`STATUS printed ${snippet(out.stdout, 60)}`);
    },
  },
  {
    id: "16.2",
    name: "STATUS with the pool exhausted fails with code 50 or 51",
    async run(ctx) {
      const s = await ctx.poolScenario(1, need11(ctx));
      if (!s.small) notApplicable("needs a small pool");
      ctx.expectError(await ctx.call("STATUS", null, s.conf), statusUnavailable, "STATUS with the pool exhausted");
    },
  },
  {
    id: "16.3",
    name: "STATUS when the plugin cannot serve ADD (--not-ready-config) fails with code 50 or 51",
    async run(ctx) {
      const version = need11(ctx);
      const base = ctx.setup.notReady ?? notApplicable("no --not-ready-config given");
      const conf = withTempPaths(withVersion(base, version), ctx.setup.tempPathKeys, `${ctx.setup.tmpRoot}/not-ready`);
      ctx.expectError(await ctx.call("STATUS", null, conf), statusUnavailable, "STATUS with the not-ready config");
    },
  },
  {
    id: "17.1",
    name: "GC with cni.dev/valid-attachments frees unlisted reservations and keeps listed ones",
    run: (ctx) => gcCase(ctx, "cni.dev/valid-attachments", false),
  },
  {
    id: "17.2",
    name: "GC with the older key cni.dev/attachments does the same",
    run: (ctx) => gcCase(ctx, "cni.dev/attachments", false),
  },
  {
    id: "17.3",
    name: "GC with an empty list frees every reservation",
    run: (ctx) => gcCase(ctx, "cni.dev/valid-attachments", true),
  },
];
