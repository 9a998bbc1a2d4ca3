import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { inNetns } from "../../testkit/netns.js";

/** Traffic between testbed namespaces: ping, DF ping at a size, and a TCP echo. */

export const ECHO_PORT = 7777;
const ECHO_SCRIPT = join(import.meta.dirname, "tcp-echo.mjs");

export interface PingResult {
  ok: boolean;
  /** Average round trip, when any reply came back. */
  rttMs?: number;
  output: string;
}

export interface PingOptions {
  count?: number;
  /** ICMP payload size. */
  size?: number;
  /** Set DF and never fragment locally (`-M do`). */
  dontFragment?: boolean;
  timeoutS?: number;
  intervalS?: number;
}

export async function ping(ns: string, target: string, o: PingOptions = {}): Promise<PingResult> {
  // Not -q: it hides "local error: message too long", which the MTU checks look for.
  const args = ["ping", "-n", "-c", String(o.count ?? 1), "-W", String(o.timeoutS ?? 2)];
  if (o.intervalS !== undefined) args.push("-i", String(o.intervalS));
  if (o.size !== undefined) args.push("-s", String(o.size));
  if (o.dontFragment) args.push("-M", "do");
  const r = await inNetns(ns, [...args, target]);
  const output = `${String(r.stdout)}${String(r.stderr)}`;
  const m = /= [\d.]+\/([\d.]+)\//.exec(output);
  return { ok: r.exitCode === 0, ...(m ? { rttMs: Number(m[1]) } : {}), output };
}

export interface StreamResult {
  sent: number;
  received: number;
  /** The longest run of unanswered pings, as time (run × interval): how long the path was down. */
  longestGapMs: number;
  /** How many of the last pings were all answered: the path is back when the stream ends. */
  trailingAnswered: number;
  /** The slowest answer: a path that queued packets while it was down delays them instead of losing them. */
  maxRttMs: number | null;
  output: string;
}

/** `count` pings `intervalS` apart (1 s timeout each): how many were answered, and the longest run that was not. */
export async function pingStream(ns: string, target: string, count: number, intervalS = 0.05): Promise<StreamResult> {
  const r = await ping(ns, target, { count, intervalS, timeoutS: 1 });
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.output);
  if (!m) throw new Error(`no ping summary: ${r.output}`);
  const sent = Number(m[1]);
  const answered = new Set([...r.output.matchAll(/icmp_seq=(\d+) ttl=/g)].map((x) => Number(x[1])));
  let longest = 0;
  let run = 0;
  for (let seq = 1; seq <= sent; seq++) {
    run = answered.has(seq) ? 0 : run + 1;
    longest = Math.max(longest, run);
  }
  let trailing = 0;
  while (trailing < sent && answered.has(sent - trailing)) trailing++;
  const rtt = /= [\d.]+\/[\d.]+\/([\d.]+)\//.exec(r.output);
  return { sent, received: Number(m[2]), longestGapMs: Math.round(longest * intervalS * 1000), trailingAnswered: trailing, maxRttMs: rtt ? Number(rtt[1]) : null, output: r.output };
}

export interface ProbeResult {
  target: string;
  ok: boolean;
  ms?: number;
  error?: string;
}

/** From inside `ns`, one TCP echo exchange with each `host` (one process for all targets). */
export async function tcpProbe(ns: string, hosts: readonly string[], port = ECHO_PORT): Promise<ProbeResult[]> {
  const targets = hosts.map((h) => (h.includes(":") ? `[${h}]:${port}` : `${h}:${port}`));
  const r = await inNetns(ns, [process.execPath, ECHO_SCRIPT, "probe", ...targets]);
  const lines = String(r.stdout).trim().split("\n").filter(Boolean);
  if (lines.length !== targets.length) {
    throw new Error(`TCP probe in ${ns} failed (exit ${r.exitCode}): ${String(r.stderr)}`);
  }
  return lines.map((l) => JSON.parse(l) as ProbeResult);
}

export interface EchoServer {
  pid: number;
  stop: () => Promise<void>;
}

/** Starts the TCP echo inside `ns` and waits until it listens. */
export async function startEcho(ns: string, port = ECHO_PORT): Promise<EchoServer> {
  const child: ResultPromise = execa("ip", ["netns", "exec", ns, process.execPath, ECHO_SCRIPT, "serve", String(port)], {
    stdin: "ignore",
    reject: false,
    cleanup: true,
  });
  if (child.pid === undefined) throw new Error(`failed to start the TCP echo in ${ns}`);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`TCP echo in ${ns} did not listen`)), 10_000);
    child.stdout!.once("data", () => {
      clearTimeout(timer);
      resolve();
    });
    void child.then((r) => {
      clearTimeout(timer);
      reject(new Error(`TCP echo in ${ns} exited: ${String(r.stderr)}`));
    });
  });
  return {
    pid: child.pid,
    stop: async () => {
      child.kill("SIGKILL");
      await child;
    },
  };
}

/** A kernel SNMP counter of a namespace (`IpFragCreates`, `Ip6FragCreates`, ...), via nstat. */
export async function netCounter(ns: string, name: string): Promise<number> {
  const r = await inNetns(ns, ["nstat", "-a", "-s", "-z", "-j", name]);
  if (r.exitCode !== 0) throw new Error(`failed to read ${name} in ${ns}: ${String(r.stderr)}`);
  const parsed = JSON.parse(String(r.stdout)) as { kernel?: Record<string, number> };
  return parsed.kernel?.[name] ?? 0;
}

