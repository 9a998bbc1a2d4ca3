import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run, type Runner } from "../../../shared/kernel/exec.js";
import { nullLogger, type Logger } from "../../../shared/log.js";
import { systemClock, type Clock } from "../../clock.js";
import { GRACEFUL_RESTART_TIME_S } from "./bird-config.js";
import { parseConfigureReply, parseStatus, type BirdProtocol, type ConfigureOutcome } from "./bird-answers.js";
import { BirdControl, quoteForBird } from "./bird-control.js";

/**
 * One BIRD per node, run in the foreground as twilld's child (`bird -f`), inside the node's
 * network namespace (twilld's own in production; `netns` names another for tests). BIRD
 * outlives twilld on purpose: a twilld restarted alone adopts the BIRD that still answers on
 * DIR/bird.ctl, and a node's routes survive a BIRD restart because its peers keep them for
 * the graceful restart time (RFC 4724) while BIRD comes back with `-R`. `-R` only when this
 * node announced within that time (DIR/announced): a fresh join with `-R` would hold its own
 * announcements back until `graceful restart wait`. BIRD's output goes to DIR/bird.log, never
 * to a pipe: a pipe whose reader (twilld) died would kill BIRD with SIGPIPE on its next line.
 */

/** Backoff between BIRD restarts: doubling from the first to the last. */
export const RESTART_FIRST_MS = 1_000;
export const RESTART_LAST_MS = 30_000;
/** A BIRD that ran this long before dying counts as healthy: the next restart waits the least again. */
export const HEALTHY_RUN_MS = 60_000;
/** The rendered `graceful restart time`: how long peers keep this node's routes. */
export const GRACEFUL_RESTART_TIME_MS = GRACEFUL_RESTART_TIME_S * 1000;
/** bird.log is moved to bird.log.1 at a start once it is larger. */
const LOG_KEEP_BYTES = 4 * 1024 * 1024;
const ADOPTED_CHECK_MS = 1_000;
const STOP_WAIT_MS = 10_000;

export interface BirdFiles {
  conf: string;
  next: string;
  ctl: string;
  pid: string;
  log: string;
  /** Unix ms of the last time this node's BIRD was seen announcing. */
  announced: string;
}

export const birdFiles = (dir: string): BirdFiles => ({
  conf: join(dir, "bird.conf"),
  next: join(dir, "bird.conf.new"),
  ctl: join(dir, "bird.ctl"),
  pid: join(dir, "bird.pid"),
  log: join(dir, "bird.log"),
  announced: join(dir, "announced"),
});

/** The wait before restart number `failures` (1: the first after a healthy run). */
export function restartDelayMs(failures: number): number {
  return Math.min(RESTART_LAST_MS, RESTART_FIRST_MS * 2 ** Math.max(0, Math.min(failures - 1, 16)));
}

/** Consecutive failures after one more exit of a BIRD that ran `ranMs`. */
export function failuresAfterExit(previous: number, ranMs: number): number {
  return ranMs >= HEALTHY_RUN_MS ? 1 : previous + 1;
}

/**
 * Whether to start BIRD with `-R`: the peers still hold this node's routes only when it
 * announced less than the graceful restart time ago. No marker, or one from the future (a
 * clock set back), is a fresh start.
 */
export function gracefulRestartWanted(announcedMs: number | null, nowMs: number, restartTimeMs = GRACEFUL_RESTART_TIME_MS): boolean {
  return announcedMs !== null && announcedMs <= nowMs && nowMs - announcedMs < restartTimeMs;
}

/** Whether BIRD announces to anyone now: a BGP session up that exported routes. */
export function announcing(protocols: readonly BirdProtocol[]): boolean {
  return protocols.some((p) => p.proto === "BGP" && p.state === "up" && p.channels.some((c) => c.exported > 0));
}

/** The command line: `nsenter` execs BIRD, so the child's PID is BIRD's. */
export function birdArgv(files: BirdFiles, gracefulRestart: boolean, netns: string | null, bird = "bird"): string[] {
  const argv = [bird, "-f", "-c", files.conf, "-s", files.ctl, "-P", files.pid, ...(gracefulRestart ? ["-R"] : [])];
  return netns === null ? argv : ["nsenter", `--net=${netns}`, ...argv];
}

export interface BirdChild {
  pid: number | null;
  /** Resolves with why it ended (`killed by SIGKILL`, `exited with code 1`). */
  exited: Promise<string>;
  /** Lets this process exit while the child runs on. */
  detach(): void;
}

/** Starts a long-running child, stdout and stderr appended to `logFile`. */
export type Spawner = (argv: readonly string[], logFile: string) => BirdChild;

export const spawnChild: Spawner = (argv, logFile) => {
  const fd = openSync(logFile, "a");
  try {
    // Its own process group: a signal to twilld's group (a terminal's ^C) is not BIRD's.
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", fd, fd], detached: true });
    const exited = new Promise<string>((resolve) => {
      child.once("error", (err) => resolve(`failed to start: ${err.message}`));
      child.once("exit", (code, signal) => resolve(signal ? `killed by ${signal}` : `exited with code ${code}`));
    });
    return { pid: child.pid ?? null, exited, detach: () => child.unref() };
  } finally {
    closeSync(fd);
  }
};

export type BirdRunState = "stopped" | "waiting for config" | "running" | "adopted" | "restarting";

export interface BirdSupervisorStatus {
  state: BirdRunState;
  pid: number | null;
  /** The running BIRD was started with `-R`. */
  gracefulRestart: boolean;
  /** BIRD starts after the first. */
  restarts: number;
  /** Why the last BIRD ended. */
  lastExit: string | null;
  /** When the next start is due (restarting). */
  restartAt: number | null;
  /** BIRD's answer to the last refused configuration (`8002 FILE:LINE:COL syntax error`), until one is accepted. */
  configError: string | null;
}

export interface ConfigApplied {
  applied: boolean;
  /** BIRD's outcome when it was running; null when the file waits for BIRD's next start. */
  outcome: ConfigureOutcome | null;
  error: string | null;
}

export interface BirdSupervisorOptions {
  dir: string;
  /** The network namespace (a path, for nsenter) BIRD runs in; null: this process's own. */
  netns?: string | null;
  clock?: Clock;
  spawner?: Spawner;
  /** Runs `bird -p` to check a file while no BIRD is running. */
  runner?: Runner;
  logger?: Logger;
  bird?: string;
  gracefulRestartTimeMs?: number;
  controlTimeoutMs?: number;
}

export class BirdSupervisor {
  readonly files: BirdFiles;
  private readonly control: BirdControl;
  private readonly clock: Clock;
  private readonly log: Logger;
  private status: BirdSupervisorStatus = { state: "stopped", pid: null, gracefulRestart: false, restarts: 0, lastExit: null, restartAt: null, configError: null };
  private child: BirdChild | null = null;
  private startedAt = 0;
  private failures = 0;
  private started = false;
  private cancelTimer: () => void = () => undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: BirdSupervisorOptions) {
    this.files = birdFiles(options.dir);
    this.control = new BirdControl(this.files.ctl, { timeoutMs: options.controlTimeoutMs ?? 5_000 });
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? nullLogger;
  }

  /** A copy of the state, for status. */
  state(): BirdSupervisorStatus {
    return { ...this.status };
  }

  /** Adopts the BIRD answering on bird.ctl, or starts one when bird.conf exists, or waits for applyConfig. */
  async start(): Promise<void> {
    mkdirSync(this.options.dir, { recursive: true, mode: 0o700 });
    this.started = true;
    if (await this.answering()) {
      this.adopt();
      return;
    }
    if (existsSync(this.files.conf)) this.launch();
    else this.status.state = "waiting for config";
  }

  /**
   * Puts `text` in force: with BIRD running, bird.conf.new must pass `configure check` before
   * it replaces bird.conf and BIRD re-reads it; with none, it must pass `bird -p`, and the next
   * start reads it. A refused file leaves bird.conf and the running configuration as they were.
   */
  applyConfig(text: string): Promise<ConfigApplied> {
    const next = this.queue.then(() => this.apply(text));
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Records that BIRD announces now (the read loop calls this when announcing(protocols)). */
  markAnnounced(): void {
    writeAtomic(this.files.announced, `${this.clock.now()}\n`);
  }

  /**
   * Stops supervising. BIRD keeps running unless `stopBird` (then SIGTERM: its peers withdraw
   * this node's routes at once), as its peers' graceful restart covers the time until a new
   * twilld adopts it or restarts it with `-R`.
   */
  async stop({ stopBird = false } = {}): Promise<void> {
    this.started = false;
    this.cancelTimer();
    const { pid } = this.status;
    const child = this.child;
    this.child = null;
    this.control.close();
    if (stopBird && pid !== null && isAlive(pid)) {
      process.kill(pid, "SIGTERM");
      for (let waited = 0; isAlive(pid) && waited < STOP_WAIT_MS; waited += 100) await this.clock.sleep(100, new AbortController().signal);
      if (isAlive(pid)) process.kill(pid, "SIGKILL");
      this.log.info("Stopped BIRD", { pid });
    }
    child?.detach();
    this.status = { ...this.status, state: "stopped", restartAt: null };
  }

  private async apply(text: string): Promise<ConfigApplied> {
    writeFileSync(this.files.next, text);
    const live = this.status.state === "running" || this.status.state === "adopted";
    if (live) return this.reconfigure();
    const parsed = await (this.options.runner ?? run)([this.options.bird ?? "bird", "-p", "-c", this.files.next]);
    if (parsed.code !== 0) return this.refused((parsed.stderr || parsed.stdout).trim().replace(/^bird: /, ""));
    renameSync(this.files.next, this.files.conf);
    this.status.configError = null;
    if (this.started && this.status.state === "waiting for config") this.launch();
    return { applied: true, outcome: null, error: null };
  }

  private async reconfigure(): Promise<ConfigApplied> {
    try {
      const check = parseConfigureReply(await this.control.request(`configure check ${quoteForBird(this.files.next)}`));
      if (check.outcome !== "checked") return this.refused(`${check.code} ${check.message}`);
      const previous = readFileSync(this.files.conf, "utf8");
      renameSync(this.files.next, this.files.conf);
      const reply = parseConfigureReply(await this.control.request("configure"));
      if (reply.outcome === "refused" || reply.outcome === "ignored") {
        // bird.conf must stay what BIRD runs: a restart reads it.
        writeAtomic(this.files.conf, previous);
        return this.refused(`${reply.code} ${reply.message}`);
      }
      this.status.configError = null;
      return { applied: true, outcome: reply.outcome, error: null };
    } catch (err) {
      // BIRD not answering: the caller applies again later (a checked bird.conf may be in place already).
      return { applied: false, outcome: null, error: (err as Error).message };
    }
  }

  private refused(error: string): ConfigApplied {
    this.status.configError = error;
    this.log.warn("BIRD refused its configuration", { error, file: this.files.next });
    return { applied: false, outcome: null, error };
  }

  private async answering(): Promise<boolean> {
    try {
      parseStatus(await this.control.request("show status"));
      return true;
    } catch {
      return false;
    }
  }

  private adopt(): void {
    const pid = readNumber(this.files.pid);
    this.status = { ...this.status, state: "adopted", pid, gracefulRestart: false };
    this.log.info("Adopted running BIRD", { pid, socket: this.files.ctl });
    // Not this process's child: its end is seen by polling.
    const gone = async (): Promise<boolean> => (pid !== null ? !isAlive(pid) : !(await this.answering()));
    const cancel = this.clock.every(ADOPTED_CHECK_MS, () => {
      void gone().then((dead) => {
        if (!dead || this.status.state !== "adopted" || !this.started) return;
        cancel();
        this.exited(pid === null ? "adopted BIRD is gone" : `adopted BIRD ${pid} is gone`);
      });
    });
    this.cancelTimer = cancel;
  }

  private launch(): void {
    const gracefulRestart = gracefulRestartWanted(readNumber(this.files.announced), this.clock.now(), this.options.gracefulRestartTimeMs);
    keepLogSmall(this.files.log);
    const argv = birdArgv(this.files, gracefulRestart, this.options.netns ?? null, this.options.bird);
    const child = (this.options.spawner ?? spawnChild)(argv, this.files.log);
    const restarts = this.status.state === "restarting" ? this.status.restarts + 1 : this.status.restarts;
    this.child = child;
    this.startedAt = this.clock.now();
    this.status = { ...this.status, state: "running", pid: child.pid, gracefulRestart, restarts, restartAt: null };
    this.log.info("Started BIRD", { pid: child.pid, gracefulRestart, argv: argv.join(" ") });
    void child.exited.then((reason) => {
      if (this.child === child) this.exited(reason);
    });
  }

  private exited(reason: string): void {
    this.child = null;
    const ran = this.status.state === "running" ? this.clock.now() - this.startedAt : HEALTHY_RUN_MS;
    this.failures = failuresAfterExit(this.failures, ran);
    const delay = restartDelayMs(this.failures);
    this.status = { ...this.status, state: "restarting", lastExit: reason, restartAt: this.clock.now() + delay };
    this.log.warn("BIRD ended; restarting", { reason, delayMs: delay, failures: this.failures });
    this.cancelTimer = this.clock.after(delay, () => {
      if (this.started && this.status.state === "restarting") this.launch();
    });
  }
}

/** Whether a process of this PID exists (EPERM: it does, another user's). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A positive integer from a file (a PID file, a marker), or null. */
export function readNumber(path: string): number | null {
  try {
    const n = Number(readFileSync(path, "utf8").trim());
    return Number.isSafeInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

function writeAtomic(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/** Moves a daemon's log to LOG.1 at a start once it is larger than LOG_KEEP_BYTES. */
export function keepLogSmall(log: string): void {
  try {
    if (statSync(log).size > LOG_KEEP_BYTES) renameSync(log, `${log}.1`);
  } catch {
    // No log yet.
  }
}

/**
 * Ends the BIRD answering in `dir` through its control socket (`down`: it tells its peers
 * and they withdraw its routes at once). The socket, not a PID: in a container BIRD's PID
 * file holds a PID of another PID namespace. `stopped` false with no error: no BIRD answers.
 */
export async function shutdownBird(dir: string, timeoutMs = 5_000): Promise<{ stopped: boolean; error: string | null }> {
  const files = birdFiles(dir);
  if (!existsSync(files.ctl)) return { stopped: false, error: null };
  const control = new BirdControl(files.ctl, { timeoutMs });
  try {
    parseStatus(await control.request("show status"));
  } catch {
    control.close();
    return { stopped: false, error: null };
  }
  try {
    // `0007 Shutdown requested`; BIRD then stops its protocols (peers are told) and exits.
    const reply = await control.request("down");
    return /^0007 /m.test(reply) ? { stopped: true, error: null } : { stopped: false, error: `BIRD answered ${JSON.stringify(reply.trim())}` };
  } catch (err) {
    // BIRD closes the socket as it goes down.
    return /closed by BIRD|ECONNRESET|EPIPE/.test((err as Error).message) ? { stopped: true, error: null } : { stopped: false, error: (err as Error).message };
  } finally {
    control.close();
  }
}
