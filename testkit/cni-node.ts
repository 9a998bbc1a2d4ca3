import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { addNetns, deleteNetnsSync, inNetns, netnsPath, removeNetns } from "./netns.js";

/**
 * A node for privileged tests: a network namespace the plugin runs in (`ip netns exec`, clean
 * environment, as a runtime runs it), pod namespaces in both path forms, a temp dir for the
 * IPAM store, subnet file and log. Everything is removed by `destroy`, also after failures.
 */

export const TWILL = resolve("dist/bin/twill");
export const CNI_PATH = `${resolve("dist/bin")}:/usr/lib/cni`;
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed, or undefined when empty. */
  doc: any;
  /** The call was killed after `timeoutMs`: it hung. */
  timedOut: boolean;
}

export interface Call {
  containerId?: string;
  netns?: string;
  ifname?: string;
  env?: Record<string, string>;
  /** Another plugin executable to invoke (twill-ipam, a reference plugin); twill by default. */
  binary?: string;
  /** Kill the plugin after this long (a test of something that must never hang). */
  timeoutMs?: number;
  /** A command the plugin runs under, inside the node namespace (`strace -f ...`). */
  wrap?: string[];
}

let counter = 0;

export class TestNode {
  readonly node: string;
  readonly dir: string;
  private readonly namespaces: string[] = [];
  private readonly sleepers: ChildProcess[] = [];

  private constructor(readonly prefix: string) {
    this.node = `${prefix}-node`;
    this.dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  }

  static async create(): Promise<TestNode> {
    const n = new TestNode(`tw${process.pid % 100000}x${counter++}`);
    await n.addNetns(n.node);
    return n;
  }

  private async addNetns(name: string): Promise<string> {
    this.namespaces.push(name);
    await addNetns(name);
    return netnsPath(name);
  }

  /** A pod namespace by name: /run/netns/NAME. */
  pod(name: string): Promise<string> {
    return this.addNetns(`${this.prefix}-${name}`);
  }

  /** A pod namespace known only as /proc/PID/ns/net of a process that holds it. */
  async procPod(): Promise<{ path: string; pid: number }> {
    const child = spawn("unshare", ["--net", "sleep", "600"], { stdio: "ignore" });
    this.sleepers.push(child);
    const pid = child.pid!;
    // unshare execs sleep in the same process once the namespace exists.
    for (let i = 0; i < 200; i++) {
      if (await procNetnsDiffers(pid)) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    return { path: `/proc/${pid}/ns/net`, pid };
  }

  /** Runs a command inside the node namespace. */
  inNode(argv: string[]) {
    return inNetns(this.node, argv);
  }

  /** Runs a command inside a pod namespace given by path. */
  inPod(netns: string, argv: string[]) {
    return execa("nsenter", [`--net=${netns}`, ...argv], { reject: false });
  }

  /** Invokes dist/bin/twill in the node namespace as a runtime would. */
  async cni(command: string, conf: object, call: Call = {}): Promise<Outcome> {
    // Logs go to the test's own dir, also those of plugins started by another (bridge → twill-ipam).
    const env: Record<string, string> = { PATH, CNI_COMMAND: command, CNI_PATH, TWILL_LOG_FILE: join(this.dir, "twill.log"), ...call.env };
    if (call.containerId !== undefined) env.CNI_CONTAINERID = call.containerId;
    if (call.netns !== undefined) env.CNI_NETNS = call.netns;
    if (call.containerId !== undefined) env.CNI_IFNAME = call.ifname ?? "eth0";
    const r = await inNetns(this.node, [...(call.wrap ?? []), call.binary ?? TWILL], {
      input: JSON.stringify(conf),
      env,
      extendEnv: false,
      ...(call.timeoutMs ? { timeout: call.timeoutMs } : {}),
    });
    const stdout = String(r.stdout);
    return {
      code: r.exitCode ?? -1,
      stdout,
      stderr: String(r.stderr),
      doc: stdout.trim() ? JSON.parse(stdout) : undefined,
      timedOut: r.timedOut,
    };
  }

  /** Names of the links in the node namespace. */
  async nodeLinks(): Promise<string[]> {
    const r = await execa("ip", ["-n", this.node, "-json", "link", "show"]);
    return (JSON.parse(String(r.stdout)) as { ifname: string }[]).map((l) => l.ifname);
  }

  /** host-local/twill-ipam reservations: files named by an IP in the network's store directory. */
  reservations(network: string): string[] {
    try {
      return readdirSync(join(this.dir, "ipam", network)).filter((f) => /^[0-9a-f.:]+$/i.test(f) && /[.:]/.test(f));
    } catch {
      return [];
    }
  }

  async destroy(): Promise<void> {
    for (const s of this.sleepers) s.kill("SIGKILL");
    for (const ns of [...this.namespaces].reverse()) deleteNetnsSync(ns);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Deletes a pod namespace created by `pod`, as a runtime does when the sandbox goes away. */
  async deletePod(path: string): Promise<void> {
    await removeNetns(path.split("/").pop()!);
  }
}

async function procNetnsDiffers(pid: number): Promise<boolean> {
  try {
    const { readlinkSync } = await import("node:fs");
    return readlinkSync(`/proc/${pid}/ns/net`) !== readlinkSync("/proc/self/ns/net") &&
      readlinkSync(`/proc/${pid}/exe`).endsWith("sleep");
  } catch {
    return false;
  }
}
