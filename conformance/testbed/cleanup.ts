import { readFileSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { deleteNetnsSync } from "../../testkit/netns.js";

/**
 * What a testbed must undo, kept so that it is undone also when the run is interrupted:
 * SIGINT/SIGTERM or an exit before the normal teardown kills the processes (by PID), deletes
 * the namespaces and removes the temp dirs, synchronously.
 */
export interface Resources {
  pids: Set<number>;
  /**
   * PID files of daemons the testbed's own processes start (a node's BIRD, started by its
   * twilld, outlives it): each PID is killed only while its command line names the file.
   */
  pidFiles: Set<string>;
  /**
   * Namespaces of the testbed's own whose every process is killed before they go: a daemon a
   * node's twilld starts that names no PID file on its command line (wireguard-go) keeps its
   * namespace alive, and its device with it, after `ip netns del`.
   */
  daemonNamespaces: Set<string>;
  namespaces: Set<string>;
  dirs: Set<string>;
}

const live = new Set<Resources>();
let hooked = false;

export function trackResources(): Resources {
  const r: Resources = { pids: new Set(), pidFiles: new Set(), daemonNamespaces: new Set(), namespaces: new Set(), dirs: new Set() };
  live.add(r);
  hook();
  return r;
}

/** Forget a set whose owner cleaned up (or that must outlive this process: `demo --keep`). */
export const untrack = (r: Resources): boolean => live.delete(r);

export function releaseSync(r: Resources): void {
  for (const pid of r.pids) kill(pid);
  for (const file of r.pidFiles) {
    const pid = pidFromFile(file);
    if (pid !== null) kill(pid);
  }
  for (const ns of r.daemonNamespaces) for (const pid of netnsPidsSync(ns)) kill(pid);
  // Namespaces in reverse: pods before nodes before the switch.
  for (const ns of [...r.namespaces].reverse()) deleteNetnsSync(ns);
  for (const d of r.dirs) rmSync(d, { recursive: true, force: true });
  r.pids.clear();
  r.pidFiles.clear();
  r.daemonNamespaces.clear();
  r.namespaces.clear();
  r.dirs.clear();
  live.delete(r);
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.once("exit", () => {
    for (const r of [...live]) releaseSync(r);
  });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      for (const r of [...live]) releaseSync(r);
      process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGTERM" ? 15 : 1));
    });
  }
}

function kill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/**
 * The PID a daemon wrote to `file`, when that process is still the daemon: by default its
 * command line names the file (a PID reused by another process since does not); `isDaemon`
 * tells one whose command line names no file (wireguard-go's names only its device).
 */
export function pidFromFile(file: string, isDaemon = (argv: readonly string[]) => argv.includes(file)): number | null {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    if (!Number.isSafeInteger(pid) || pid <= 1) return null;
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    return isDaemon(argv) ? pid : null;
  } catch {
    return null;
  }
}

/** The PIDs of the processes in namespace `ns` (`ip netns pids`); none when it is gone. */
function netnsPidsSync(ns: string): number[] {
  try {
    return execFileSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).split("\n").map(Number).filter((p) => Number.isSafeInteger(p) && p > 1);
  } catch {
    return [];
  }
}
