// One CNI invocation, started as a runtime starts a plugin (a clean environment, the config on
// stdin), timed and with the CPU it used. The CPU is wait4's: the plugin's own plus that of every
// process it started and waited for (bridge's host-local, Flannel's bridge), so a chain is
// counted whole.
import { spawnSync } from "node:child_process";

export const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface Target {
  binary: string;
  cniPath: string;
  conf: object;
  /** The pods' namespace paths, by index; empty for the start floor. */
  pods: string[];
  /** The plugin's own log, whose closing lines carry its phase timings (twill's). */
  log?: string;
  /** CNI_ARGS by pod index, as a runtime names the pod (only the --policies column). */
  cniArgs?: string[];
  /**
   * Sandbox IDs are `<sandboxPrefix><pod index>` (default "bench-"). Two twill columns in one
   * node namespace need their own: twill names the host veth after the sandbox ID.
   */
  sandboxPrefix?: string;
}

export interface Sample {
  ms: number;
  /** User + system CPU of the invocation and its waited-for children. */
  cpuMs: number;
  ok: boolean;
  out: string;
}

/** The part of Bun's spawn used here: unlike node:child_process it reports the child's rusage. */
interface Subprocess {
  stdin: { write(text: string): unknown; end(): unknown };
  stdout: unknown;
  exited: Promise<number>;
  resourceUsage(): { cpuTime: { total: bigint } } | undefined;
}
declare const Bun: {
  spawn(argv: string[], opts: { env: Record<string, string>; stdin: "pipe"; stdout: "pipe"; stderr: "ignore" }): Subprocess;
};

/** The sandbox of pod `i`, as the runtime names it in CNI_CONTAINERID. */
export const containerIdOf = (t: Pick<Target, "sandboxPrefix">, i: number): string => `${t.sandboxPrefix ?? "bench-"}${i}`;

const envFor = (t: Target, command: string, i: number): Record<string, string> => ({
  PATH,
  CNI_COMMAND: command,
  CNI_CONTAINERID: containerIdOf(t, i),
  CNI_NETNS: t.pods[i] ?? "",
  CNI_IFNAME: "eth0",
  CNI_PATH: t.cniPath,
  ...(t.cniArgs?.[i] ? { CNI_ARGS: t.cniArgs[i] } : {}),
});

export async function invoke(t: Target, command: string, i: number): Promise<Sample> {
  const started = performance.now();
  const child = Bun.spawn([t.binary], { env: envFor(t, command, i), stdin: "pipe", stdout: "pipe", stderr: "ignore" });
  try {
    child.stdin.write(JSON.stringify(t.conf));
    await child.stdin.end();
  } catch {
    // A plugin may exit without reading its config.
  }
  const [out, code] = await Promise.all([new Response(child.stdout as ConstructorParameters<typeof Response>[0]).text(), child.exited]);
  const ms = performance.now() - started;
  const cpuUs = child.resourceUsage()?.cpuTime.total ?? 0n;
  return { ms, cpuMs: Number(cpuUs) / 1000, ok: code === 0, out };
}

/** Peak RSS of one invocation, measured apart from the timing (GNU time forks and waits). */
export function rssKb(t: Target, command: string, i: number): number {
  const r = spawnSync("/usr/bin/time", ["-f", "%M", t.binary], { input: JSON.stringify(t.conf), env: envFor(t, command, i), encoding: "utf8" });
  const lines = r.stderr.trim().split("\n");
  return Number(lines[lines.length - 1]);
}
