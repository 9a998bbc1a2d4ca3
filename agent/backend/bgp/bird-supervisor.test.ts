import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Clock } from "../../clock.js";
import type { ExecResult } from "../../../shared/kernel/exec.js";
import { parseProtocols } from "./bird-answers.js";
import {
  announcing,
  birdArgv,
  birdFiles,
  BirdSupervisor,
  failuresAfterExit,
  gracefulRestartWanted,
  HEALTHY_RUN_MS,
  restartDelayMs,
  type BirdChild,
} from "./bird-supervisor.js";

describe("the restart policy", () => {
  it("doubles the wait from 1 s to 30 s over consecutive failures", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 40].map(restartDelayMs)).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });

  it("counts a death after a healthy run as the first again", () => {
    expect(failuresAfterExit(0, 10)).toBe(1);
    expect(failuresAfterExit(4, HEALTHY_RUN_MS - 1)).toBe(5);
    expect(failuresAfterExit(4, HEALTHY_RUN_MS)).toBe(1);
  });

  it("restarts with -R only when this node announced within the graceful restart time", () => {
    expect(gracefulRestartWanted(null, 1_000_000)).toBe(false);
    expect(gracefulRestartWanted(1_000_000 - 119_999, 1_000_000)).toBe(true);
    expect(gracefulRestartWanted(1_000_000 - 120_000, 1_000_000)).toBe(false);
    // A marker from the future: the clock was set back, nothing is known.
    expect(gracefulRestartWanted(1_000_001, 1_000_000)).toBe(false);
    expect(gracefulRestartWanted(1_000, 5_000, 3_000)).toBe(false);
  });

  it("sees announcing in an up BGP session that exported routes only", () => {
    const text = readFileSync(join(import.meta.dirname, "fixtures", "mesh-show-protocols-all.txt"), "utf8");
    const protocols = parseProtocols(text);
    expect(announcing(protocols)).toBe(true);
    expect(announcing(protocols.map((p) => ({ ...p, state: p.proto === "BGP" ? "start" : p.state })))).toBe(false);
    expect(announcing(protocols.filter((p) => p.proto !== "BGP"))).toBe(false);
  });

  it("runs BIRD in the foreground, in the given namespace", () => {
    const files = birdFiles("/run/twill/bird");
    expect(birdArgv(files, false, null)).toEqual(["bird", "-f", "-c", "/run/twill/bird/bird.conf", "-s", "/run/twill/bird/bird.ctl", "-P", "/run/twill/bird/bird.pid"]);
    expect(birdArgv(files, true, "/run/netns/n1").slice(0, 3)).toEqual(["nsenter", "--net=/run/netns/n1", "bird"]);
    expect(birdArgv(files, true, null).at(-1)).toBe("-R");
  });
});

/** A clock whose timers run when the test advances it. */
function manualClock(): Clock & { advance(ms: number): void; pending(): number[] } {
  let now = 1_000_000;
  let timers: { at: number; fn: () => void }[] = [];
  return {
    now: () => now,
    after(ms, fn) {
      const t = { at: now + ms, fn };
      timers.push(t);
      return () => (timers = timers.filter((x) => x !== t));
    },
    every: () => () => undefined,
    sleep: async () => undefined,
    advance(ms) {
      now += ms;
      const due = timers.filter((t) => t.at <= now);
      timers = timers.filter((t) => t.at > now);
      for (const t of due) t.fn();
    },
    pending: () => timers.map((t) => t.at - now),
  };
}

interface FakeChild extends BirdChild {
  argv: readonly string[];
  end(reason: string): void;
  detached: boolean;
}

describe("BirdSupervisor with a fake BIRD", () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const setup = (runnerResult: ExecResult = { code: 0, stdout: "", stderr: "" }) => {
    dir = mkdtempSync(join(tmpdir(), "twill-bird-supervisor-"));
    const clock = manualClock();
    const children: FakeChild[] = [];
    const supervisor = new BirdSupervisor({
      dir,
      clock,
      controlTimeoutMs: 200,
      runner: async () => runnerResult,
      spawner: (argv) => {
        let end: (reason: string) => void = () => undefined;
        const exited = new Promise<string>((resolve) => (end = resolve));
        const child: FakeChild = { argv, pid: 100 + children.length, exited, end: (r) => end(r), detached: false, detach: () => (child.detached = true) };
        children.push(child);
        return child;
      },
    });
    return { supervisor, clock, children, files: birdFiles(dir) };
  };
  const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

  it("waits for a configuration, then starts BIRD without -R on a fresh join", async () => {
    const { supervisor, children, files } = setup();
    await supervisor.start();
    expect(supervisor.state().state).toBe("waiting for config");
    expect(children).toHaveLength(0);
    expect(await supervisor.applyConfig("router id 192.0.2.1;\n")).toEqual({ applied: true, outcome: null, error: null });
    expect(readFileSync(files.conf, "utf8")).toBe("router id 192.0.2.1;\n");
    expect(children.map((c) => c.argv.includes("-R"))).toEqual([false]);
    expect(supervisor.state()).toMatchObject({ state: "running", pid: 100, gracefulRestart: false, restarts: 0 });
  });

  it("refuses a file bird -p refuses while no BIRD runs, and keeps bird.conf", async () => {
    const { supervisor, children, files } = setup({ code: 1, stdout: "", stderr: "bird: /x/bird.conf.new:3:1 syntax error, unexpected '{'\n" });
    writeFileSync(join(dir, "bird.conf"), "old\n");
    const result = await supervisor.applyConfig("broken {\n");
    expect(result).toEqual({ applied: false, outcome: null, error: "/x/bird.conf.new:3:1 syntax error, unexpected '{'" });
    expect(readFileSync(files.conf, "utf8")).toBe("old\n");
    expect(supervisor.state().configError).toBe(result.error);
    expect(children).toHaveLength(0);
  });

  it("restarts a dead BIRD with a growing backoff, with -R once this node announced, and reports why it ended", async () => {
    const { supervisor, clock, children } = setup();
    writeFileSync(join(dir, "bird.conf"), "x\n");
    await supervisor.start();
    children[0]!.end("killed by SIGKILL");
    await settle();
    expect(supervisor.state()).toMatchObject({ state: "restarting", lastExit: "killed by SIGKILL", restartAt: clock.now() + 1_000 });
    clock.advance(999);
    expect(children).toHaveLength(1);
    supervisor.markAnnounced();
    clock.advance(1);
    expect(children).toHaveLength(2);
    expect(children[1]!.argv.at(-1)).toBe("-R");
    expect(supervisor.state()).toMatchObject({ state: "running", pid: 101, gracefulRestart: true, restarts: 1 });

    children[1]!.end("exited with code 1");
    await settle();
    expect(clock.pending()).toEqual([2_000]);
    clock.advance(2_000);
    children[2]!.end("exited with code 1");
    await settle();
    expect(clock.pending()).toEqual([4_000]);
    // Long after the last announcement: a start like a fresh join's.
    clock.advance(200_000);
    expect(children[3]!.argv).not.toContain("-R");
    clock.advance(HEALTHY_RUN_MS);
    children[3]!.end("exited with code 1");
    await settle();
    expect(clock.pending()).toEqual([1_000]);
  });

  it("leaves BIRD running on stop, and restarts nothing after", async () => {
    const { supervisor, clock, children } = setup();
    writeFileSync(join(dir, "bird.conf"), "x\n");
    await supervisor.start();
    await supervisor.stop();
    expect(children[0]!.detached).toBe(true);
    expect(supervisor.state()).toMatchObject({ state: "stopped", pid: 100 });
    children[0]!.end("killed by SIGKILL");
    await settle();
    clock.advance(60_000);
    expect(children).toHaveLength(1);
    expect(supervisor.state().state).toBe("stopped");
  });

  it("does not touch bird.conf when a running BIRD does not answer", async () => {
    const { supervisor, files } = setup();
    writeFileSync(files.conf, "old\n");
    await supervisor.start();
    const result = await supervisor.applyConfig("new\n");
    expect(result.applied).toBe(false);
    expect(result.error).toMatch(/bird\.ctl/);
    expect(readFileSync(files.conf, "utf8")).toBe("old\n");
  });
});
