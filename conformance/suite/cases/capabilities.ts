import { formatIp, lastAddress, parseCidr } from "../../../shared/net/cidr.js";
import { declaredCapabilities, setKey, type Conf } from "../config.js";
import { fail, notApplicable, type Case, type CaseContext, type Pod } from "../context.js";
import { resultAddresses } from "../attachment.js";

/**
 * Checklist line 18: runtimeConfig is honoured for the capabilities the config declares, and
 * unknown keys pass. Filtering is the runtime's job: SPEC.md ("Deriving execution
 * configuration") has the runtime put only declared capabilities in runtimeConfig and remove
 * the `capabilities` key, so a plugin cannot and must not rely on seeing that key.
 */

const MAC = "c2:00:00:00:cf:01";

/** Capabilities whose effect the suite can see in the result and the kernel. */
interface Probe {
  capability: string;
  /** A value for the capability, chosen after a first ADD showed the pool. */
  value(sample: Record<string, any>): unknown;
  /** Whether the attachment shows the value. */
  applied(pod: Pod, value: unknown, ctx: CaseContext): Promise<boolean>;
}

const PROBES: Probe[] = [
  {
    capability: "ips",
    value(sample) {
      const address: string = sample.ips?.[0]?.address ?? notApplicable("the result has no address to pick a neighbour of");
      const c = parseCidr(address);
      const next = c.ip + 5n;
      if (next >= lastAddress(c)) notApplicable(`no room beside ${address}`);
      return [`${formatIp(c.family, next)}/${c.prefix}`];
    },
    async applied(pod, value) {
      const want = String((value as string[])[0]).split("/")[0]!;
      return resultAddresses(pod.result).includes(want);
    },
  },
  {
    capability: "mac",
    value: () => MAC,
    async applied(pod, _value, ctx) {
      const link = (await ctx.podState(pod)).links.find((l) => l.ifname === pod.ifname);
      return link?.address?.toLowerCase() === MAC;
    },
  },
];

async function withRuntimeConfig(ctx: CaseContext, probe: Probe, conf: Conf): Promise<boolean> {
  const sample = await ctx.addOk(await ctx.pod(), conf);
  const value = probe.value(sample);
  const pod = await ctx.pod();
  await ctx.addOk(pod, setKey(conf, "runtimeConfig", { [probe.capability]: value }));
  return probe.applied(pod, value, ctx);
}

/** The observable capabilities the config declares; the case does not apply without one. */
function declaredProbes(conf: Conf): Probe[] {
  const declared = declaredCapabilities(conf);
  const probes = PROBES.filter((p) => declared.includes(p.capability));
  if (probes.length === 0) notApplicable(`the config declares none of ${PROBES.map((p) => p.capability).join(", ")}`);
  return probes;
}

export const capabilityCases: Case[] = [
  {
    id: "18.1",
    name: "runtimeConfig for a declared capability (ips, mac) is honoured",
    async run(ctx) {
      const conf = ctx.conf();
      for (const p of declaredProbes(conf)) {
        if (!(await withRuntimeConfig(ctx, p, conf))) fail(`runtimeConfig.${p.capability} is declared but was not applied`);
      }
    },
  },
  {
    id: "18.2",
    name: "runtimeConfig is honoured when the runtime strips `capabilities`, as SPEC.md requires",
    async run(ctx) {
      const conf = ctx.conf();
      const probes = declaredProbes(conf);
      const { capabilities: _stripped, ...stripped } = conf as Conf & { capabilities?: unknown };
      for (const p of probes) {
        if (!(await withRuntimeConfig(ctx, p, stripped as Conf))) {
          fail(`runtimeConfig.${p.capability} was not applied once "capabilities" was removed from the config`);
        }
      }
    },
  },
  {
    id: "18.3",
    name: "unknown runtimeConfig keys, args and kubelet's CNI_ARGS are accepted",
    async run(ctx) {
      const pod = await ctx.pod();
      const conf = {
        ...ctx.conf(),
        runtimeConfig: { "conformance.example/unknown": { any: ["value"] } },
        args: { cni: { labels: [{ key: "app", value: "conformance" }] }, "conformance.example": { x: 1 } },
      };
      const kubelet = `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=conformance;K8S_POD_INFRA_CONTAINER_ID=${pod.containerId}`;
      await ctx.addOk(pod, conf, { env: { CNI_ARGS: kubelet } });
      await ctx.expectAttached(pod);
    },
  },
];
