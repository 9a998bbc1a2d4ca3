import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { atLeast } from "../../shared/cni/version.js";
import { attachmentProblems, hostSide, remainingProblems, type NsState } from "./attachment.js";
import type { IpLink } from "../../testkit/iproute.js";
import { shrinkPool, withPrevResult, withTempPaths, withVersion, type Conf } from "./config.js";
import { invoke, type Outcome } from "./invoke.js";
import { netnsPath } from "../../testkit/netns.js";
import { Namespaces, readNamespace } from "./namespaces.js";
import { errorText, snippet } from "./shape.js";

/** Everything about the plugin under test that does not change between cases. */
export interface SuiteSetup {
  plugin: string;
  pluginType: string;
  cniPath: string;
  conf: Conf;
  /** Versions the config file allows, highest first. */
  fileVersions: string[];
  /** The plugin's VERSION answer; empty when VERSION failed. */
  supported: string[];
  /** A config whose pool holds only a few addresses; null when none is known. */
  smallPool: Conf | null;
  /** A config under which the plugin cannot serve ADD (STATUS must say so); null when none is given. */
  notReady: Conf | null;
  tempPathKeys: string[];
  unsupported: { key: string; value: unknown }[];
  namespaces: Namespaces;
  tmpRoot: string;
}

export class CaseFailure extends Error {}
export class NotApplicable extends Error {}

export const fail = (reason: string): never => {
  throw new CaseFailure(reason);
};
export const notApplicable = (reason: string): never => {
  throw new NotApplicable(reason);
};

export interface Pod {
  ns: string;
  netns: string;
  containerId: string;
  ifname: string;
  conf?: Conf;
  result?: Record<string, any>;
}

export interface CallOptions {
  /** Variables to set, or to remove with null. */
  env?: Record<string, string | null>;
  /** Raw stdin instead of the config. */
  stdin?: string;
  /** Another binary, e.g. the delegated IPAM plugin. */
  plugin?: string;
}

/** A pool to check releases against: `small` when it is full, so a freed address shows. */
export interface PoolScenario {
  conf: Conf;
  small: boolean;
  pods: Pod[];
}

const SMALL_POOL_SIZE = 3;
const KERNEL_CLEANUP_POLLS = 200;
const FILL_LIMIT = 32;
const VERSIONS_NEWEST_FIRST = ["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0"];

/** One case's world: its own node namespace, pods and state directory. */
export class CaseContext {
  node = "";
  readonly notes: string[] = [];
  private readonly dir: string;
  private readonly owned: string[] = [];
  private pods = 0;

  constructor(
    readonly setup: SuiteSetup,
    private readonly tag: string,
  ) {
    this.dir = join(setup.tmpRoot, tag);
  }

  async init(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    this.node = await this.ns(`${this.tag}-node`);
  }

  async dispose(): Promise<void> {
    for (const name of this.owned.reverse()) await this.setup.namespaces.remove(name);
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async ns(suffix: string): Promise<string> {
    const name = await this.setup.namespaces.create(suffix);
    this.owned.push(name);
    return name;
  }

  note(text: string): void {
    this.notes.push(text);
  }

  /** The version a runtime would use: the config's highest that the plugin supports. */
  get version(): string {
    return this.setup.fileVersions.find((v) => this.supports(v)) ?? this.setup.fileVersions[0]!;
  }

  supports = (version: string): boolean => this.setup.supported.includes(version);

  /** The runtime's version if it is at least `min`, else the newest supported one that is. */
  versionAtLeast(min: string): string {
    if (atLeast(this.version, min) && this.supports(this.version)) return this.version;
    const v = VERSIONS_NEWEST_FIRST.find((x) => atLeast(x, min) && this.supports(x));
    return v ?? notApplicable(`the plugin supports no CNI version ≥ ${min} (VERSION: ${this.setup.supported.join(", ") || "none"})`);
  }

  /** The config for this case, its state paths inside the case's directory. */
  conf(opts: { version?: string; small?: boolean } = {}): Conf {
    const base = opts.small ? (this.smallPoolBase() ?? notApplicable("no small pool")) : this.setup.conf;
    return withTempPaths(withVersion(base, opts.version ?? this.version), this.setup.tempPathKeys, this.dir);
  }

  smallPoolBase(): Conf | null {
    return this.setup.smallPool ?? shrinkPool(this.setup.conf, SMALL_POOL_SIZE);
  }

  async pod(ifname = "eth0"): Promise<Pod> {
    const ns = await this.ns(`${this.tag}-p${++this.pods}`);
    return { ns, netns: netnsPath(ns), containerId: randomBytes(32).toString("hex"), ifname };
  }

  /**
   * Deletes a pod's namespace, as a runtime does when a sandbox goes away. The kernel destroys
   * the namespace's interfaces, and with them their veth peers on the node, in deferred work
   * after `ip netns del` returns: wait (bounded) for the `host` links to go, so what remains
   * afterwards is the plugin's doing, not the kernel's lag.
   */
  async removePod(pod: Pod, host: readonly IpLink[] = []): Promise<void> {
    await this.setup.namespaces.remove(pod.ns);
    for (let i = 0; i < KERNEL_CLEANUP_POLLS; i++) {
      const node = await this.nodeState();
      if (!host.some((h) => node.links.some((l) => l.ifindex === h.ifindex))) return;
      await sleep(50);
    }
  }

  async call(command: string, pod: Pod | null, conf: Conf | null, opts: CallOptions = {}): Promise<Outcome> {
    const env: Record<string, string> = { CNI_COMMAND: command, CNI_PATH: this.setup.cniPath };
    if (pod) Object.assign(env, { CNI_CONTAINERID: pod.containerId, CNI_NETNS: pod.netns, CNI_IFNAME: pod.ifname });
    for (const [k, v] of Object.entries(opts.env ?? {})) {
      if (v === null) delete env[k];
      else env[k] = v;
    }
    const changed = Object.entries(opts.env ?? {}).map(([k, v]) => (v === null ? `without ${k}` : `${k}=${JSON.stringify(v)}`));
    const label = [command, ...changed].join(" ");
    const stdin = opts.stdin ?? (conf ? JSON.stringify(conf) : "");
    return invoke({ node: this.node, plugin: opts.plugin ?? this.setup.plugin, env, stdin }, label);
  }

  add = (pod: Pod, conf: Conf, opts?: CallOptions) => this.call("ADD", pod, conf, opts);

  /** ADD that must succeed; remembers the result for DEL and CHECK. */
  async addOk(pod: Pod, conf: Conf, opts?: CallOptions): Promise<Record<string, any>> {
    const out = await this.add(pod, conf, opts);
    const doc = out.parsed.ok ? out.parsed.doc : null;
    if (out.code !== 0 || doc === null || typeof doc !== "object") fail(`ADD failed: ${describe(out)}`);
    pod.conf = conf;
    pod.result = doc as Record<string, any>;
    return pod.result;
  }

  /** The pod's config with its ADD result as prevResult, as libcni passes it from 0.4.0 on. */
  private withPrev(pod: Pod, conf: Conf | undefined, prevResult: boolean): Conf {
    const c = conf ?? pod.conf ?? this.conf();
    const version = String(c.cniVersion);
    return prevResult && pod.result && atLeast(version, "0.4.0") ? withPrevResult(c, pod.result) : c;
  }

  del(pod: Pod, opts: CallOptions & { conf?: Conf; prevResult?: boolean } = {}): Promise<Outcome> {
    return this.call("DEL", pod, this.withPrev(pod, opts.conf, opts.prevResult ?? true), opts);
  }

  async delOk(pod: Pod, opts: CallOptions & { conf?: Conf; prevResult?: boolean } = {}): Promise<void> {
    const out = await this.del(pod, opts);
    if (out.code !== 0) fail(`${out.label} failed: ${describe(out)}`);
  }

  check(pod: Pod, opts: CallOptions & { conf?: Conf; prevResult?: boolean } = {}): Promise<Outcome> {
    return this.call("CHECK", pod, this.withPrev(pod, opts.conf, opts.prevResult ?? true), opts);
  }

  /**
   * An error that must have happened: non-zero exit, one JSON document on stdout, and a code
   * from `codes` (any when null). Returns the error's text.
   */
  expectError(out: Outcome, codes: readonly number[] | null, what: string): string {
    if (out.code === 0) fail(`${what} succeeded; expected ${codes ? `error code ${codes.join(" or ")}` : "an error"}`);
    if (!out.parsed.ok) fail(`${what} exited ${out.code} but ${out.parsed.problem}${stderrHint(out)}`);
    const doc = out.parsed.ok ? (out.parsed.doc as Record<string, unknown>) : {};
    const text = errorText(doc);
    if (codes && !codes.includes(doc.code as number)) {
      fail(`${what} gave code ${JSON.stringify(doc.code)} (${snippet(text, 120)}); expected ${codes.join(" or ")}`);
    }
    return text;
  }

  expectSuccess(out: Outcome, what: string): void {
    if (out.code !== 0) fail(`${what} failed: ${describe(out)}`);
  }

  podState = (pod: Pod): Promise<NsState> => readNamespace(pod.ns);
  nodeState = (): Promise<NsState> => readNamespace(this.node);

  /** The kernel holds what the pod's ADD result reports. */
  async expectAttached(pod: Pod): Promise<void> {
    const problems = attachmentProblems(pod.result, { ifname: pod.ifname, netns: pod.netns }, await this.podState(pod), await this.nodeState());
    if (problems.length > 0) fail(`after ADD: ${problems.join("; ")}`);
  }

  /** The node's links that belong to the pod's attachment; read it before DEL. */
  async hostSide(pod: Pod): Promise<IpLink[]> {
    return hostSide(pod.result, pod.ifname, await this.podState(pod), await this.nodeState());
  }

  /** Nothing of the pod's attachment remains (the sandbox may be gone already). */
  async expectGone(pod: Pod, host: readonly IpLink[], when: string): Promise<void> {
    const podState = this.setup.namespaces.has(pod.ns) ? await this.podState(pod) : null;
    const problems = remainingProblems(pod.ifname, podState, host, await this.nodeState());
    if (problems.length > 0) fail(`after ${when}: ${problems.join("; ")}`);
  }

  /** ADDs new pods until one fails. Returns the pods that got an address and the failure. */
  async fillPool(conf: Conf): Promise<{ pods: Pod[]; failure: Outcome | null; failedPod: Pod | null }> {
    const pods: Pod[] = [];
    for (let i = 0; i < FILL_LIMIT; i++) {
      const pod = await this.pod();
      const out = await this.add(pod, conf);
      if (out.code !== 0) return { pods, failure: out, failedPod: pod };
      pod.conf = conf;
      pod.result = (out.parsed.ok ? out.parsed.doc : {}) as Record<string, any>;
      pods.push(pod);
    }
    return { pods, failure: null, failedPod: null };
  }

  /**
   * A pool to watch releases in: the small pool filled to the last address when there is
   * one (a freed address is then the only way a new ADD can succeed), else one pod in the
   * normal pool and a note that releases are not verified.
   */
  async poolScenario(minPods = 1, version = this.version): Promise<PoolScenario> {
    const small = this.smallPoolBase();
    if (small) {
      const conf = this.conf({ small: true, version });
      const { pods, failure, failedPod } = await this.fillPool(conf);
      if (failure && pods.length >= minPods) {
        // A runtime always follows a failed ADD with DEL.
        await this.del(failedPod!, { conf });
        return { conf, small: true, pods };
      }
      if (failure) fail(`the small pool took ${pods.length} pods, the case needs ${minPods}; ADD: ${describe(failure)}`);
      this.note(`the small pool never ran out after ${FILL_LIMIT} pods; releases not verified`);
      return { conf, small: false, pods };
    }
    this.note("releases not verified: the IPAM section has no host-local ranges and no --small-pool-config was given");
    const conf = this.conf({ version });
    const pods: Pod[] = [];
    for (let i = 0; i < minPods; i++) {
      const pod = await this.pod();
      await this.addOk(pod, conf);
      pods.push(pod);
    }
    return { conf, small: false, pods };
  }

  /** Exactly `n` addresses are free again in a full small pool (after `what`). */
  async expectReleased(s: PoolScenario, n: number, what: string): Promise<void> {
    if (!s.small) return;
    for (let i = 0; i < n; i++) {
      const pod = await this.pod();
      const out = await this.add(pod, s.conf);
      if (out.code !== 0) {
        fail(`after ${what}, ${n === 1 ? "the pool had no free address" : `only ${i} of ${n} addresses were free`} (the reservation leaked): ADD: ${describe(out)}`);
      }
    }
    const extra = await this.pod();
    const out = await this.add(extra, s.conf);
    if (out.code === 0) fail(`after ${what}, more than ${n} address(es) were free: reservations still in use were released`);
    await this.del(extra, { conf: s.conf });
  }
}

/** One line about an invocation's outcome for a failure reason. */
export function describe(out: Outcome): string {
  if (!out.parsed.ok) return `exit ${out.code}, ${out.parsed.problem}${stderrHint(out)}`;
  const doc = out.parsed.doc as Record<string, unknown>;
  if (out.code === 0) return "exit 0";
  return `exit ${out.code}, code ${JSON.stringify(doc?.code)}: ${snippet(errorText(doc), 200)}`;
}

const stderrHint = (out: Outcome) => (out.stderr.trim() ? ` (stderr: ${snippet(out.stderr, 120)})` : "");

/** One assertion of the checklist. `id` is "<checklist line>.<n>". */
export interface Case {
  id: string;
  name: string;
  run(ctx: CaseContext): Promise<void>;
}
