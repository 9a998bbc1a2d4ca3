import { atLeast } from "../../../shared/cni/version.js";
import { leftoverProblems, resultAddresses } from "../attachment.js";
import { UNREACHABLE_ROUTE, withUnreachableRoute } from "../config.js";
import { fail, notApplicable, describe, type Case, type CaseContext, type Pod } from "../context.js";
import { ipIn, netnsPath } from "../../../testkit/netns.js";
import { addStandIn, readNamespace } from "../namespaces.js";
import { missingFromResult, snippet } from "../shape.js";

/** Checklist lines 7-11: ADD against the kernel, chaining, rollback, parallelism, exhaustion. */

const PARALLEL = 8;
const ADDRESS_IN_TEXT = /\b\d{1,3}(\.\d{1,3}){3}\b|\b[0-9a-f]{1,4}(:[0-9a-f]{0,4}){2,7}\b/i;

/**
 * Runs an ADD that must fail in a full pool with exactly one free address, then checks that it
 * left no link and that the free address is still free: the plugin released its reservation
 * itself, before any DEL (checklist 9).
 */
async function expectCleanFailure(ctx: CaseContext, provoke: (conf: any) => Promise<{ pod: Pod; out: any } | null>): Promise<void> {
  const s = await ctx.poolScenario(1);
  await ctx.delOk(s.pods.shift()!);
  const before = await ctx.nodeState();
  const attempt = await provoke(s.conf);
  if (!attempt) return;
  ctx.expectError(attempt.out, null, attempt.out.label);
  const podState = ctx.setup.namespaces.has(attempt.pod.ns) ? await readNamespace(attempt.pod.ns) : null;
  const left = leftoverProblems({ ifname: attempt.pod.ifname, netns: attempt.pod.netns }, podState, before, await ctx.nodeState());
  const leaked = await ctx.expectReleased(s, 1, "a failed ADD without DEL").then(
    () => [],
    (err: Error) => [err.message],
  );
  const problems = [...left, ...leaked];
  if (problems.length > 0) fail(`after the failed ADD (${describe(attempt.out)}): ${problems.join("; ")}`);
}

export const addCases: Case[] = [
  {
    id: "7.1",
    name: "ADD creates CNI_IFNAME in CNI_NETNS, up, with the MAC, addresses and routes it reports",
    async run(ctx) {
      const pod = await ctx.pod();
      await ctx.addOk(pod, ctx.conf());
      await ctx.expectAttached(pod);
    },
  },
  {
    id: "7.2",
    name: "ADD honours a CNI_IFNAME other than eth0",
    async run(ctx) {
      const pod = await ctx.pod("net1");
      await ctx.addOk(pod, ctx.conf());
      await ctx.expectAttached(pod);
    },
  },
  {
    id: "7.3",
    name: "ADD fails when CNI_IFNAME already exists in the sandbox and leaves that interface alone",
    async run(ctx) {
      const pod = await ctx.pod();
      await addStandIn(pod.ns, pod.ifname);
      const [mine] = (await ctx.podState(pod)).links.filter((l) => l.ifname === pod.ifname);
      const before = await ctx.nodeState();
      ctx.expectError(await ctx.add(pod, ctx.conf()), null, `ADD with ${pod.ifname} already in the sandbox`);
      const after = (await ctx.podState(pod)).links.find((l) => l.ifname === pod.ifname);
      if (!after || after.ifindex !== mine!.ifindex || after.linkinfo?.info_kind !== "veth") {
        fail(`the failed ADD replaced or removed the existing ${pod.ifname}`);
      }
      const left = leftoverProblems({ ifname: "", netns: pod.netns }, null, before, await ctx.nodeState());
      if (left.length > 0) fail(`after the failed ADD: ${left.join("; ")}`);
    },
  },
  {
    id: "7.4",
    name: "a second ADD of the same attachment fails and the first stays intact",
    async run(ctx) {
      const pod = await ctx.pod();
      const first = await ctx.addOk(pod, ctx.conf());
      ctx.expectError(await ctx.add(pod, ctx.conf()), null, "a second ADD of the same attachment");
      pod.result = first;
      await ctx.expectAttached(pod);
    },
  },
  {
    id: "8.1",
    name: "ADD with a prevResult outputs it with its own changes merged",
    async run(ctx) {
      const pod = await ctx.pod();
      await addStandIn(pod.ns, "cfprev0");
      await ipIn(pod.ns).exec(["link", "set", "cfprev0", "up"], "set cfprev0 up");
      await ipIn(pod.ns).exec(["addr", "add", "192.0.2.10/24", "dev", "cfprev0"], "address cfprev0");
      await ipIn(pod.ns).exec(["route", "add", "198.51.100.0/24", "via", "192.0.2.1"], "route via cfprev0");
      const mac = (await ctx.podState(pod)).links.find((l) => l.ifname === "cfprev0")?.address;
      const version = ctx.version;
      const prev = {
        cniVersion: version,
        interfaces: [{ name: "cfprev0", mac, sandbox: pod.netns }],
        ips: [{ ...(atLeast(version, "1.0.0") ? {} : { version: "4" }), address: "192.0.2.10/24", gateway: "192.0.2.1", interface: 0 }],
        routes: [{ dst: "198.51.100.0/24", gw: "192.0.2.1" }],
        dns: { nameservers: ["192.0.2.53"] },
      };
      const result = await ctx.addOk(pod, { ...ctx.conf(), prevResult: prev });
      const missing = missingFromResult(prev, result);
      if (missing.length > 0) fail(`the result dropped the prevResult's ${missing.join(", ")}`);
      await ctx.expectAttached(pod);
    },
  },
  {
    id: "9.1",
    name: "ADD failing after IPAM (a route it cannot install) leaves no link and no reservation",
    async run(ctx) {
      await expectCleanFailure(ctx, async (conf) => {
        const bad = withUnreachableRoute(conf) ?? notApplicable("the config has no ipam section to add a route to");
        const pod = await ctx.pod();
        const out = await ctx.add(pod, bad);
        if (out.code === 0) {
          await ctx.del(pod, { conf: bad });
          const what = `${UNREACHABLE_ROUTE.dst} via ${UNREACHABLE_ROUTE.gw}`;
          return notApplicable(`ADD succeeded with ipam route ${what} (not on-link); no failure after IPAM could be provoked`);
        }
        return { pod, out };
      });
    },
  },
  {
    id: "9.2",
    name: "ADD into a network namespace that does not exist fails and leaves no link and no reservation",
    async run(ctx) {
      await expectCleanFailure(ctx, async (conf) => {
        const pod: Pod = { ...(await ctx.pod()), netns: netnsPath(`${ctx.node}-missing`) };
        return { pod, out: await ctx.add(pod, conf) };
      });
    },
  },
  {
    id: "10.1",
    name: `${PARALLEL} parallel ADDs get ${PARALLEL} distinct addresses`,
    async run(ctx) {
      const conf = ctx.conf();
      const pods = await Promise.all(Array.from({ length: PARALLEL }, () => ctx.pod()));
      const outs = await Promise.all(pods.map((p) => ctx.add(p, conf)));
      const failed = outs.filter((o) => o.code !== 0);
      if (failed.length > 0) fail(`${failed.length} of ${PARALLEL} parallel ADDs failed; first: ${describe(failed[0]!)}`);
      pods.forEach((p, i) => {
        p.conf = conf;
        p.result = outs[i]!.parsed.ok ? (outs[i]!.parsed.doc as Record<string, any>) : {};
      });
      const addrs = pods.flatMap((p) => resultAddresses(p.result));
      const dup = addrs.filter((a, i) => addrs.indexOf(a) !== i);
      if (dup.length > 0) fail(`parallel ADDs handed out ${[...new Set(dup)].join(", ")} twice`);
      for (const p of pods) await ctx.expectAttached(p);
    },
  },
  {
    id: "10.2",
    name: "parallel DELs on a full pool free every address for parallel ADDs",
    async run(ctx) {
      const s = await ctx.poolScenario(2);
      if (!s.small) notApplicable("needs a small pool");
      const dels = await Promise.all(s.pods.map((p) => ctx.del(p)));
      const bad = dels.find((o) => o.code !== 0);
      if (bad) fail(`parallel DEL failed: ${describe(bad)}`);
      const pods = await Promise.all(s.pods.map(() => ctx.pod()));
      const outs = await Promise.all(pods.map((p) => ctx.add(p, s.conf)));
      const failed = outs.filter((o) => o.code !== 0);
      if (failed.length > 0) fail(`${failed.length} of ${pods.length} parallel ADDs after the DELs failed; first: ${describe(failed[0]!)}`);
      const addrs = outs.flatMap((o) => resultAddresses(o.parsed.ok ? o.parsed.doc : null));
      if (new Set(addrs).size !== addrs.length) fail(`parallel ADDs handed out an address twice: ${addrs.join(", ")}`);
    },
  },
  {
    id: "11.1",
    name: "ADD in an exhausted pool fails with an error naming the range and leaves nothing",
    async run(ctx) {
      if (!ctx.smallPoolBase()) notApplicable("needs a small pool (host-local ranges or --small-pool-config)");
      const conf = ctx.conf({ small: true });
      const before = await ctx.nodeState();
      const { pods, failure, failedPod } = await ctx.fillPool(conf);
      if (!failure) return notApplicable(`the small pool never ran out after ${pods.length} pods`);
      if (pods.length === 0) fail(`the first ADD failed already: ${describe(failure)}`);
      const text = ctx.expectError(failure, null, "ADD in an exhausted pool");
      if (!ADDRESS_IN_TEXT.test(text)) fail(`the error does not name the range: ${snippet(text)}`);
      const code = failure.parsed.ok ? (failure.parsed.doc as { code: number }).code : 0;
      ctx.note(`exhausted after ${pods.length} pods, code ${code}`);
      for (const p of pods) await ctx.delOk(p);
      const left = leftoverProblems({ ifname: failedPod!.ifname, netns: failedPod!.netns }, await ctx.podState(failedPod!), before, await ctx.nodeState());
      if (left.length > 0) fail(`the failed ADD left: ${left.join("; ")}`);
    },
  },
];
