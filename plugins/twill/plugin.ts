import { existsSync } from "../../shared/fs-sync.js";
import { CniError, Code, invalidConfig } from "../../shared/cni/errors.js";
import type { CmdArgs, Plugin } from "../../shared/cni/skel.js";
import type { Attachment as GcAttachment, Result } from "../../shared/cni/types.js";
import { parseResult } from "../../shared/cni/version.js";
import { bridgeMismatch, ensureBridge } from "../../shared/kernel/bridge.js";
import { KernelError, wrongKind } from "../../shared/kernel/types.js";
import { podKernel } from "../../shared/kernel/netlink/kernel.js";
import type { BridgeState, PodKernel } from "../../shared/kernel/pod-kernel.js";
import { fileLogger, PhaseTimer, type Logger } from "../../shared/log.js";
import { readSubnetFileFor } from "../../shared/subnet-file.js";
import { policyReadyPath } from "../../shared/policy-ready.js";
import { expectedFromResult, nodeProblems, podProblems } from "./check.js";
import { DEFAULT_LOG_FILE, parseConf, type TwillConf } from "./config.js";
import { ExecIpam, inProcessIpam, type Ipam } from "./ipam.js";
import { hostVethName } from "./names.js";
import { buildResult, missingGatewaySteps, planNode, planPod, type Attachment, type NodePlan, type Step } from "./plan.js";
import { Undo } from "./undo.js";
import { waitForPolicy } from "./policy-wait.js";

/**
 * The `twill` CNI plugin: a Linux bridge per node and a veth pair per pod, like the reference
 * `bridge` plugin, with derived names (DEL and CHECK need no prevResult to find the veth),
 * netlink spoken in-process (no process started),
 * race-free bridge set-up, and IPAM in-process when it is twill-ipam.
 */

export interface TwillDeps {
  /** The environment the plugin was started with; delegated IPAM plugins get the same. */
  env: Record<string, string | undefined>;
  /** twill-ipam in this process; without it, `twill-ipam` is run from CNI_PATH like any IPAM. */
  localIpam?: (log: Logger) => Plugin;
  logger?: (path: string) => Logger;
  /**
   * Every kernel read and write ADD, DEL and CHECK make (nft and sysctls included); by default
   * netlink (this runtime must reach libc). Tests pass one that records calls.
   */
  kernel?: () => PodKernel;
}

/** Codes that say the invocation or its config is wrong (SPEC.md "Error"). */
const CONFIG_CODES: ReadonlySet<number> = new Set([Code.IncompatibleVersion, Code.UnsupportedField, Code.InvalidEnv, Code.DecodeFailure, Code.InvalidConfig]);

export function createTwillPlugin(deps: TwillDeps): Plugin {
  const kernelFor = deps.kernel ?? podKernel;
  const loggerFor = (conf: TwillConf, args: CmdArgs): Logger =>
    (deps.logger ?? fileLogger)(conf.logFile ?? deps.env.TWILL_LOG_FILE ?? DEFAULT_LOG_FILE).with({
      network: conf.network,
      ...(args.containerId ? { containerId: args.containerId, ifname: args.ifname } : {}),
    });
  const ipamFor = (conf: TwillConf, log: Logger): Ipam | null => {
    if (!conf.ipam) return null;
    if (conf.ipam.type === "twill-ipam" && deps.localIpam) return inProcessIpam(deps.localIpam(log), conf);
    return new ExecIpam(conf.ipam.type, deps.env);
  };

  return {
    async add(args: CmdArgs): Promise<Result> {
      const timer = new PhaseTimer();
      const conf = parseConf(args.conf, args.args);
      const log = loggerFor(conf, args);
      const subnet = conf.nodeMode ? readSubnetFileFor("ADD", conf.subnetFile) : null;
      const mtu = conf.mtu ?? subnet?.mtu;
      const prev = args.conf.prevResult ? parseResult(args.conf.prevResult) : null;
      if (!existsSync(args.netns)) throw new CniError(Code.InvalidNetns, `network namespace ${args.netns} does not exist`);
      const at: Attachment = { containerId: args.containerId, ifname: args.ifname, netns: args.netns };
      const ipam = ipamFor(conf, log);
      const nodePlan = planNode(conf, mtu, at);
      const kernel = kernelFor();
      const undo = new Undo(log);
      timer.mark("prepare");
      try {
        // The node's changes need nothing IPAM decides: start them, then allocate.
        const settingUp = timer.time("node", () => setUpNode(kernel, nodePlan, at));
        // Reading the masquerade table is cheap (netlink, or one `nft list` beside the rest);
        // changing it is not, so `nft -f` runs only when it lacks something.
        const masqRead = conf.ipMasq ? kernel.readMasquerade(conf.network) : null;
        masqRead?.catch(() => undefined);
        const { bridge, allocated } = await allocateWithNodeSetup(settingUp, kernel, nodePlan, ipam, args, undo, timer);

        const mismatch = bridgeMismatch(bridge, nodePlan.bridge);
        if (mismatch) throw new Error(mismatch);
        const podPlan = planPod(conf, at, allocated);
        for (const key of podPlan.forwarding) kernel.setSysctl(key, "1");
        const gatewaySteps = missingGatewaySteps(nodePlan.bridge, bridge.addresses, podPlan.gateways);
        const done = await Promise.allSettled([
          timer.time("pod", () => applySteps(kernel, at.netns, podPlan.steps, `configure "${at.ifname}" in ${at.netns}`)),
          kernel.apply(null, gatewaySteps, `add gateway addresses ${podPlan.gateways.join(", ")} to bridge "${nodePlan.bridge.name}"`),
          masqRead && podPlan.podSubnets.length > 0
            ? timer.time("masquerade", () => masqRead.then((have) =>
                kernel.writeMasquerade({ network: conf.network, sources: podPlan.podSubnets, keep: subnet?.clusterCIDRs ?? [] }, have),
              ))
            : null,
        ]);
        const failed = done.find((d) => d.status === "rejected");
        if (failed) throw (failed as PromiseRejectedResult).reason;

        if (conf.nodeMode) {
          const ips = podPlan.ips.map((i) => i.address.split("/")[0]!);
          await timer.time("policy", () => waitForPolicy(policyReadyPath(conf.subnetFile), args.args.K8S_POD_NAMESPACE, ips, log));
        }
        const result = buildResult(args.conf.cniVersion, prev, nodePlan, podPlan, bridge.mac ?? nodePlan.bridge.mac, allocated.dns, args.conf.dns);
        log.info("Added pod", {
          netns: at.netns,
          hostVeth: nodePlan.veth.name,
          ips: podPlan.ips.map((i) => i.address),
          ...timer.fields(),
          // What the runtime asked with: an operator comparing runtimes (containerd, CRI-O,
          // cnitool) sees the version, capabilities and pod identity it passed.
          cniVersion: args.conf.cniVersion,
          runtimeConfig: args.conf.runtimeConfig ?? {},
          cniArgs: args.args,
        });
        return result;
      } catch (err) {
        await undo.run();
        log.error("Failed to add pod", { netns: at.netns, error: err });
        throw err;
      } finally {
        kernel.close();
      }
    },

    async del(args: CmdArgs): Promise<void> {
      const timer = new PhaseTimer();
      const conf = parseConf(args.conf, args.args);
      const log = loggerFor(conf, args);
      const ipam = ipamFor(conf, log);
      const hostVeth = hostVethName(args.containerId, args.ifname);
      const kernel = kernelFor();
      timer.mark("prepare");
      try {
        // DEL must succeed whatever is already gone (no netns, no veth, no reservation), and the
        // address is released even when the pod's namespace no longer exists (SPEC.md DEL).
        const [link, released] = await Promise.allSettled([
          timer.time("link", () => kernel.deleteLink(hostVeth, "veth")),
          ipam ? timer.time("ipam", () => ipam.del(args)) : undefined,
        ]);
        if (link.status === "rejected") throw link.reason;
        if (released.status === "rejected") throw released.reason;
        log.info("Deleted pod", { hostVeth, removed: link.value, ...timer.fields() });
      } finally {
        kernel.close();
      }
    },

    async check(args: CmdArgs): Promise<void> {
      const conf = parseConf(args.conf, args.args);
      const log = loggerFor(conf, args);
      if (!args.conf.prevResult) throw invalidConfig("CHECK needs prevResult (the result of ADD)");
      const at: Attachment = { containerId: args.containerId, ifname: args.ifname, netns: args.netns };
      const exp = expectedFromResult(parseResult(args.conf.prevResult), at, conf.bridge, hostVethName(at.containerId, at.ifname));
      if (!existsSync(at.netns)) throw new CniError(Code.InvalidNetns, `network namespace ${at.netns} does not exist`);
      const ipam = ipamFor(conf, log);
      const kernel = kernelFor();
      try {
        const [links, pod] = await Promise.all([kernel.links(null), kernel.podState(at.netns)]);
        const host = links.find((l) => l.name === exp.hostVeth);
        const problems = [...nodeProblems(links, exp), ...podProblems(pod.links, pod.addresses, pod.routes, exp, host?.peerIndex)];
        if (problems.length > 0) throw new CniError(Code.Internal, problems.join("; "));
      } finally {
        kernel.close();
      }
      if (ipam) await ipam.check(args);
    },

    async status(args: CmdArgs): Promise<void> {
      const conf = parseConf(args.conf, args.args);
      if (conf.nodeMode) readSubnetFileFor("STATUS", conf.subnetFile);
      const ipam = ipamFor(conf, loggerFor(conf, args));
      if (!ipam) return;
      try {
        await ipam.status(args);
      } catch (err) {
        // A config IPAM cannot use is the operator's to fix, not a wait for readiness (SPEC.md
        // STATUS: 50 and 51 are for a plugin that is otherwise fine).
        if (err instanceof CniError && CONFIG_CODES.has(err.code)) throw err;
        throw new CniError(Code.NotAvailable, `IPAM is not ready: ${(err as Error).message}`);
      }
    },

    async gc(args: CmdArgs, valid: GcAttachment[]): Promise<void> {
      const conf = parseConf(args.conf, args.args);
      const ipam = ipamFor(conf, loggerFor(conf, args));
      if (ipam) await ipam.gc(args, valid);
    },
  };
}

/**
 * The pod's addresses from IPAM, and the node's changes already started (over netlink
 * in-process, they are done by the time IPAM starts), awaited together. Registers the undo of
 * whatever succeeded, then fails with IPAM's error first, as the spec's order (IPAM, then
 * interfaces) would have.
 */
async function allocateWithNodeSetup(
  settingUp: Promise<BridgeState>,
  kernel: PodKernel,
  plan: NodePlan,
  ipam: Ipam | null,
  args: CmdArgs,
  undo: Undo,
  timer: PhaseTimer,
): Promise<{ bridge: BridgeState; allocated: Result }> {
  const [bridgeRead, allocatedRead] = await Promise.allSettled([
    settingUp,
    ipam ? timer.time("ipam", () => ipam.add(args)) : Promise.resolve<Result>({ cniVersion: args.conf.cniVersion }),
  ]);
  if (allocatedRead.status === "fulfilled" && ipam) {
    undo.push("release the pod's addresses", () => ipam.del({ ...args, command: "DEL" }));
  }
  const vethMade = bridgeRead.status === "fulfilled" || (bridgeRead.reason as NodeSetupError).vethCreated !== false;
  if (vethMade) undo.push(`delete "${plan.veth.name}"`, () => kernel.deleteLink(plan.veth.name, "veth"));
  if (allocatedRead.status === "rejected") throw allocatedRead.reason;
  if (bridgeRead.status === "rejected") throw bridgeRead.reason;
  return { bridge: bridgeRead.value, allocated: allocatedRead.value };
}

/** A failed node step; `vethCreated` false when the veth certainly does not exist because of it. */
class NodeSetupError extends Error {
  constructor(
    message: string,
    readonly vethCreated: boolean,
  ) {
    super(message);
  }
}

/**
 * The node namespace's changes. The bridge exists on every ADD but a node's first, so they
 * assume it does; when the first step finds no bridge, the bridge is created (a concurrent ADD
 * creating it first is fine) and the steps run again. Returns the bridge as read back.
 */
async function setUpNode(kernel: PodKernel, plan: NodePlan, at: Attachment): Promise<BridgeState> {
  const steps = plan.steps.map((s) => s.step);
  const op = `set up "${plan.veth.name}" on bridge "${plan.bridge.name}"`;
  let bridge: BridgeState | null;
  try {
    bridge = await kernel.applyAndReadBridge(steps, plan.bridge.name, op);
  } catch (err) {
    if (!(err instanceof KernelError && err.failedStep === 1 && err.notFound)) throw await nodeStepError(kernel, err, plan, at);
    await ensureBridge(kernel, plan.bridge);
    try {
      bridge = await kernel.applyAndReadBridge(steps, plan.bridge.name, op);
    } catch (err2) {
      throw await nodeStepError(kernel, err2, plan, at);
    }
  }
  if (!bridge) throw new NodeSetupError(`bridge "${plan.bridge.name}" could not be read back`, true);
  return bridge;
}

/** Names the node step that failed, and whether the veth was made before it. */
async function nodeStepError(kernel: PodKernel, err: unknown, plan: NodePlan, at: Attachment): Promise<Error> {
  if (!(err instanceof KernelError)) return new NodeSetupError((err as Error).message, true);
  const index = err.failedStep === null ? null : err.failedStep - 1;
  const vethCreated = index === null || index > plan.vethStep;
  const step = index === null ? undefined : plan.steps[index];
  if (index === plan.vethStep && err.exists) {
    // The pod's interface or the node end: say which, it is the difference between a runtime
    // bug (ADD twice without DEL) and a pod that already has this interface.
    const inPod = await kernel.link(at.netns, at.ifname).catch(() => null);
    return new NodeSetupError(
      inPod
        ? `interface "${at.ifname}" already exists in ${at.netns}`
        : `host interface "${plan.veth.name}" already exists (an earlier ADD of container ${at.containerId} was not deleted)`,
      false,
    );
  }
  if (index === plan.vethStep) {
    // Enslaving fails when the bridge's name is taken by another kind of device: say that.
    const bridge = await kernel.link(null, plan.bridge.name).catch(() => null);
    const notBridge = bridge && wrongKind(bridge, "bridge", `"${plan.bridge.name}"`);
    if (notBridge) return new NodeSetupError(notBridge, false);
  }
  return new NodeSetupError(`failed to ${step?.what ?? `set up "${plan.veth.name}"`}: ${err.reason}`, vethCreated);
}

async function applySteps(kernel: PodKernel, netns: string, steps: Step[], op: string): Promise<void> {
  try {
    await kernel.apply(netns, steps.map((s) => s.step), op);
  } catch (err) {
    if (!(err instanceof KernelError)) throw err;
    const step = err.failedStep === null ? undefined : steps[err.failedStep - 1];
    throw new Error(`failed to ${step?.what ?? op}: ${err.reason}`);
  }
}
