import { closeSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { systemClock, type Clock } from "../../clock.js";
import { nullLogger, type Logger } from "../../../shared/log.js";
import { writeFileAtomic } from "../../../shared/fs.js";
import {
  failuresAfterExit, HEALTHY_RUN_MS, isAlive, keepLogSmall, readNumber, restartDelayMs, spawnChild, type BirdChild, type Spawner,
} from "../bgp/bird-supervisor.js";
import { UapiClient } from "./uapi.js";

/**
 * wireguard-go, the userspace WireGuard device, supervised by twilld as a foreground child
 * inside the node's network namespace (docs/wireguard-design.md §3). It outlives twilld on
 * purpose: stopping it takes the device and every route through it, so a twilld restarted
 * alone adopts the device whose UAPI socket still answers. An exit is followed by a restart
 * with backoff (1 s doubling to 30 s); a fresh device has no key, a random port and no peers,
 * so `onStart` tells the backend to configure it whole.
 *
 * wireguard-go listens on /var/run/wireguard/IFNAME.sock and watches that path. Where nodes
 * share a filesystem (the testbed), `dir` is bound over /run/wireguard in a mount namespace of
 * wireguard-go's own, so each node's socket is DIR/IFNAME.sock and nothing is mounted outside.
 * Its output goes to a file, never a pipe: a pipe whose reader (twilld) died would kill it
 * with SIGPIPE on its next line.
 */

/** The device's name, the same in kernel and userspace mode. */
export const WG_DEVICE = "twill-wg";
/** Where wireguard-go keeps its sockets when no directory is given. */
export const WIREGUARD_RUN_DIR = "/var/run/wireguard";

const ADOPTED_CHECK_MS = 1_000;

/** The TUN clone device wireguard-go opens. */
export const TUN_DEVICE = "/dev/net/tun";

/**
 * Opens the TUN clone device and closes it again (nothing is created without TUNSETIFF), so
 * that a node which cannot run wireguard-go says why at start, not in wireguard-go's log.
 */
export function checkTunDevice(path = TUN_DEVICE): void {
  let fd: number;
  try {
    fd = openSync(path, "r+");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    const why = code === "ENOENT"
      ? `${path} does not exist: load the tun module on the node; in a container, the runtime gives the host's ${path} to privileged containers only (see the wireguard section of deploy/twill.yaml)`
      : code === "EPERM" || code === "EACCES"
        ? `${path} cannot be opened (${code}): in a container the runtime's device rules must allow it (containerd 1.6.8 and later deny it to unprivileged containers: see the wireguard section of deploy/twill.yaml)`
        : `${path} cannot be opened: ${(err as Error).message}`;
    throw new Error(`wireguard backend, userspace mode: wireguard-go needs a TUN device, and ${why}`);
  }
  closeSync(fd);
}

export interface WireguardGoFiles {
  socket: string;
  pid: string;
  log: string;
}

export const wireguardGoFiles = (dir: string | null): WireguardGoFiles => {
  const d = dir ?? WIREGUARD_RUN_DIR;
  return { socket: join(d, `${WG_DEVICE}.sock`), pid: join(d, `${WG_DEVICE}.pid`), log: join(d, "wireguard-go.log") };
};

/**
 * The command line. Every step execs the next (nsenter, env, unshare, sh), so the child's PID
 * is wireguard-go's. With a directory of its own, wireguard-go (which puts its socket in
 * /run/wireguard, whatever it is told) runs in a private mount namespace with a tmpfs over
 * /run and the directory bound on /run/wireguard there: nothing is made on the machine's /run
 * (`cd` first, so a directory under /run is still reachable once the tmpfs hides it). `WG_PROCESS_FOREGROUND=1` also silences its banner, which tells every
 * Linux user to use the kernel's module.
 */
export function wireguardGoArgv(dir: string | null, netns: string | null, binary = "wireguard-go"): string[] {
  const env = ["env", "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error"];
  const run = dir === null
    ? [binary, "-f", WG_DEVICE]
    : ["unshare", "--mount", "--propagation", "private", "sh", "-c",
      'cd "$0" && mount -t tmpfs -o mode=0755 twill-run /run && mkdir /run/wireguard && mount --bind . /run/wireguard && exec "$1" -f "$2"', dir, binary, WG_DEVICE];
  const argv = [...env, ...run];
  return netns === null ? argv : ["nsenter", `--net=${netns}`, ...argv];
}

export type WireguardGoState = "stopped" | "running" | "adopted" | "restarting";

export interface WireguardGoStatus {
  state: WireguardGoState;
  pid: number | null;
  restarts: number;
  lastExit: string | null;
  restartAt: number | null;
}

export interface WireguardGoOptions {
  /** The socket's directory bound over /run/wireguard; null: wireguard-go's own (/var/run/wireguard). */
  dir: string | null;
  /** The network namespace (a path, for nsenter); null: this process's own. */
  netns?: string | null;
  binary?: string;
  clock?: Clock;
  spawner?: Spawner;
  logger?: Logger;
  /** Called after every start or adoption: the device must be configured (whole, after a start). */
  onStart?: (how: "started" | "adopted") => void;
}

export class WireguardGoSupervisor {
  readonly files: WireguardGoFiles;
  readonly uapi: UapiClient;
  private readonly clock: Clock;
  private readonly log: Logger;
  private status: WireguardGoStatus = { state: "stopped", pid: null, restarts: 0, lastExit: null, restartAt: null };
  private child: BirdChild | null = null;
  private startedAt = 0;
  private failures = 0;
  private started = false;
  private cancelTimer: () => void = () => undefined;

  constructor(private readonly options: WireguardGoOptions) {
    this.files = wireguardGoFiles(options.dir);
    this.uapi = new UapiClient(this.files.socket, { timeoutMs: 2_000 });
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? nullLogger;
  }

  state(): WireguardGoStatus {
    return { ...this.status };
  }

  /** Adopts the device whose socket answers, or starts wireguard-go. */
  async start(): Promise<void> {
    mkdirSync(this.options.dir ?? WIREGUARD_RUN_DIR, { recursive: true, mode: 0o700 });
    this.started = true;
    if (await this.answering()) this.adopt();
    else this.launch();
  }

  /** Stops supervising; wireguard-go runs on (its device and routes stay for the next twilld). */
  stop(): void {
    this.started = false;
    this.cancelTimer();
    this.child?.detach();
    this.child = null;
    this.status = { ...this.status, state: "stopped", restartAt: null };
  }

  async answering(): Promise<boolean> {
    try {
      await this.uapi.get();
      return true;
    } catch {
      return false;
    }
  }

  private adopt(): void {
    // Not this process's child: its end is seen by polling its PID, or its socket when the PID is not known.
    const pid = readNumber(this.files.pid);
    const known = pid !== null && isAlive(pid) ? pid : null;
    this.status = { ...this.status, state: "adopted", pid: known };
    this.log.info("Adopted running wireguard-go", { pid: known, socket: this.files.socket });
    this.cancelTimer = this.clock.every(ADOPTED_CHECK_MS, () => void this.checkAdopted(known));
    this.options.onStart?.("adopted");
  }

  private async checkAdopted(pid: number | null): Promise<void> {
    const alive = pid !== null ? isAlive(pid) : await this.answering();
    if (alive || this.status.state !== "adopted" || !this.started) return;
    this.cancelTimer();
    this.exited(`adopted wireguard-go${pid !== null ? ` ${pid}` : ""} is gone`);
  }

  private launch(): void {
    keepLogSmall(this.files.log);
    const argv = wireguardGoArgv(this.options.dir, this.options.netns ?? null, this.options.binary);
    const child = (this.options.spawner ?? spawnChild)(argv, this.files.log);
    const restarts = this.status.state === "restarting" ? this.status.restarts + 1 : this.status.restarts;
    this.child = child;
    this.startedAt = this.clock.now();
    this.status = { ...this.status, state: "running", pid: child.pid, restarts, restartAt: null };
    if (child.pid !== null) writeFileAtomic(this.files.pid, `${child.pid}\n`, 0o644, false);
    this.log.info("Started wireguard-go", { pid: child.pid, device: WG_DEVICE, socket: this.files.socket });
    void child.exited.then((reason) => {
      if (this.child === child) this.exited(reason);
    });
    this.options.onStart?.("started");
  }

  private exited(reason: string): void {
    this.child = null;
    // An adopted device ran for an unknown time: it counts as a healthy run.
    this.failures = failuresAfterExit(this.failures, this.status.state === "running" ? this.clock.now() - this.startedAt : HEALTHY_RUN_MS);
    const delayMs = restartDelayMs(this.failures);
    this.status = { ...this.status, state: "restarting", lastExit: reason, restartAt: this.clock.now() + delayMs };
    // The device went with it, and every route through it: pod traffic to peers stops until the restart.
    this.log.warn("wireguard-go ended; restarting", { reason, delayMs, failures: this.failures, log: this.files.log });
    this.cancelTimer = this.clock.after(delayMs, () => this.started && this.status.state === "restarting" && this.launch());
  }

}
