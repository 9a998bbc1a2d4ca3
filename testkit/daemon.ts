import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { inNetns } from "./netns.js";

/**
 * Starting the servers tests need (etcd, kube-apiserver, twilld, ...) and waiting until they
 * answer: one starter, one readiness wait, one HTTP probe.
 */

/**
 * A long-running server started for a test, its output in a log file. `exited` is set as soon
 * as it stops, so a readiness wait can give up at once instead of running out its deadline.
 */
export interface Daemon {
  name: string;
  pid: number;
  logFile: string;
  exited: () => string | undefined;
  logTail: (lines?: number) => string;
  stop: () => Promise<void>;
}

export function startDaemon(name: string, bin: string, args: readonly string[], logFile: string): Daemon {
  // Both streams append to one file (O_APPEND keeps their lines whole). cleanup, execa's
  // default, kills the daemon if the test process itself dies.
  const log = { file: logFile, append: true } as const;
  const subprocess = execa(bin, args, { stdin: "ignore", stdout: log, stderr: log, reject: false, cleanup: true });
  const pid = subprocess.pid;
  if (pid === undefined) throw new Error(`failed to start ${name} (${bin})`);
  let exit: string | undefined;
  const done = subprocess.then((r) => {
    exit = r.signal ? `killed by ${r.signal}` : `exited with code ${r.exitCode}`;
  });
  const logTail = (lines = 30): string => fileTail(logFile, lines);
  return {
    name,
    pid,
    logFile,
    exited: () => exit,
    logTail,
    stop: async () => {
      if (exit === undefined) subprocess.kill("SIGTERM");
      await done;
    },
  };
}

/** Polls `probe` until it returns true, failing early if `daemon` exits, or at the deadline. */
export async function waitUntilReady(
  daemon: Pick<Daemon, "name" | "exited" | "logTail">,
  what: string,
  probe: () => Promise<boolean>,
  deadlineMs: number,
): Promise<void> {
  const until = Date.now() + deadlineMs;
  let lastError = "";
  for (;;) {
    const exit = daemon.exited();
    if (exit !== undefined) {
      throw new Error(`${daemon.name} ${exit} before ${what}; log tail:\n${daemon.logTail()}`);
    }
    try {
      if (await probe()) return;
    } catch (e) {
      lastError = e instanceof Error ? e.message : String(e);
    }
    if (Date.now() > until) {
      throw new Error(
        `${daemon.name}: not ${what} after ${deadlineMs} ms (${lastError}); log tail:\n${daemon.logTail()}`,
      );
    }
    await sleep(250);
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("no port from 127.0.0.1:0"))));
    });
  });
}

export interface HttpAnswer {
  status: number;
  body: string;
}

/**
 * GET `url`, from inside the network namespace `netns` when given (with this Node binary: no
 * curl needed); status 0 when nothing answers.
 */
export async function httpGet(url: string, netns?: string): Promise<HttpAnswer> {
  if (netns === undefined) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      return { status: r.status, body: await r.text() };
    } catch {
      return { status: 0, body: "" };
    }
  }
  const script =
    "fetch(process.argv[1]).then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })))" +
    ".catch(() => process.stdout.write(JSON.stringify({ status: 0, body: '' })))";
  const r = await inNetns(netns, [process.execPath, "-e", script, url]);
  try {
    return JSON.parse(String(r.stdout)) as HttpAnswer;
  } catch {
    return { status: 0, body: String(r.stderr) };
  }
}

/** The last lines of a log file; empty when there is none. */
export function fileTail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}
