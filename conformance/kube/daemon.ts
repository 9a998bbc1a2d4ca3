import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";

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
  const logTail = (lines = 30): string => {
    try {
      return readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  };
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
  daemon: Daemon,
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
