import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNetns, deleteNetns, ipIn, netnsPath } from "../../../testkit/netns.js";
import { fileTail } from "../../../testkit/daemon.js";
import { until } from "../../../testkit/until.js";
import { parseProtocols, parseStatus } from "./bird-answers.js";
import { renderBirdConfig } from "./bird-config.js";
import { BirdControl } from "./bird-control.js";
import { BirdSupervisor } from "./bird-supervisor.js";

/**
 * A real BIRD under BirdSupervisor, in a namespace of its own (eth0, one end of a veth pair
 * within it, holding 192.0.2.10; a mesh peer at 192.0.2.11 that never answers): started once a
 * configuration is applied, restarted after kill -9 (with -R: this node announced), left
 * running when the supervisor stops, adopted by the next one, and a broken file refused with
 * the running one kept. Every BIRD PID the supervisors started is killed at the end if still
 * there, also after a failure, and the namespace and the directory removed.
 */

const NS = `twill-birdsup-${process.pid}`;

function render(peers: number[], extra = ""): string {
  const config = renderBirdConfig({
    nodeName: "node-0",
    clusterCIDRs: ["10.244.0.0/16"],
    local: { routerId: "192.0.2.10", addresses: ["192.0.2.10"], underlayDev: "eth0", subnets: ["10.244.10.0/24"], as: 64512 },
    peering: { mode: "mesh" },
    peers: peers.map((i) => ({ nodeName: `node-${i}`, address: `192.0.2.${10 + i}`, subnets: [`10.244.${10 + i}.0/24`] })),
  });
  return config.text + extra;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const cmdline = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);

describe("BirdSupervisor with a real BIRD in a namespace", () => {
  let dir: string;
  let control: BirdControl;
  const supervisors: BirdSupervisor[] = [];
  /** Every BIRD PID a supervisor reported: the only processes this test may kill. */
  const started = new Set<number>();

  const supervise = (): BirdSupervisor => {
    const s = new BirdSupervisor({ dir, netns: netnsPath(NS) });
    supervisors.push(s);
    return s;
  };
  const runningPid = (s: BirdSupervisor): number => {
    const { pid } = s.state();
    if (pid !== null) started.add(pid);
    return pid!;
  };
  const log = () => fileTail(join(dir, "bird.log"));
  const protocolNames = async (): Promise<string[]> => parseProtocols(await control.request("show protocols all")).map((p) => p.name);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "twill-bird-supervisor-"));
    control = new BirdControl(join(dir, "bird.ctl"), { timeoutMs: 2_000 });
    await addNetns(NS);
    const ip = ipIn(NS);
    await ip.exec(["link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer"], "add eth0");
    await ip.exec(["link", "set", "eth0-peer", "up"], "set eth0-peer up");
    await ip.exec(["addr", "add", "192.0.2.10/24", "dev", "eth0"], "address eth0");
    await ip.exec(["link", "set", "eth0", "up"], "set eth0 up");
  });

  afterAll(async () => {
    control?.close();
    for (const s of supervisors) await s.stop().catch(() => undefined);
    for (const pid of started) {
      // Only a PID that is still this test's BIRD (its command line names this test's directory).
      if (alive(pid) && existsSync(`/proc/${pid}/cmdline`) && cmdline(pid).includes(join(dir, "bird.conf"))) process.kill(pid, "SIGKILL");
    }
    await deleteNetns(NS);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("starts BIRD inside the namespace once a configuration is applied, without -R on a fresh join", async () => {
    const supervisor = supervise();
    await supervisor.start();
    expect(supervisor.state().state).toBe("waiting for config");
    expect(await supervisor.applyConfig(render([1]))).toEqual({ applied: true, outcome: null, error: null });
    const pid = runningPid(supervisor);
    expect(supervisor.state()).toMatchObject({ state: "running", gracefulRestart: false });
    const status = parseStatus(await until("BIRD answering", () => control.request("show status"), undefined, log));
    expect(status.routerId).toBe("192.0.2.10");
    expect(Number(readFileSync(join(dir, "bird.pid"), "utf8"))).toBe(pid);
    expect(cmdline(pid)).not.toContain("-R");
    // In the namespace: its socket for node-1 is bound to the namespace's own 192.0.2.10.
    expect(readFileSync(`/proc/${pid}/net/dev`, "utf8")).toMatch(/^\s*eth0:/m);
  });

  it("applies a reload through the control socket", async () => {
    const supervisor = supervisors[0]!;
    const result = await supervisor.applyConfig(render([1, 2]));
    expect(result.applied).toBe(true);
    expect(["reconfigured", "in progress"]).toContain(result.outcome);
    expect(await until("node-2's session configured", async () => (await protocolNames()).includes("mesh_node_2"), undefined, log)).toBe(true);
  });

  it("refuses a broken file with BIRD's error and where it is, keeping the running one and bird.conf", async () => {
    const supervisor = supervisors[0]!;
    const before = readFileSync(join(dir, "bird.conf"), "utf8");
    const result = await supervisor.applyConfig(render([1, 2, 3], "protocol bgp broken from twill_mesh {\n"));
    expect(result.applied).toBe(false);
    expect(result.error).toMatch(new RegExp(`^8\\d{3} ${join(dir, "bird.conf.new").replace(/[.]/g, "\\.")}:\\d+:\\d+ `));
    expect(supervisor.state().configError).toBe(result.error);
    expect(readFileSync(join(dir, "bird.conf"), "utf8")).toBe(before);
    const names = await protocolNames();
    expect(names).toContain("mesh_node_2");
    expect(names).not.toContain("mesh_node_3");
  });

  it("restarts a BIRD killed with SIGKILL, with -R as this node announced", async () => {
    const supervisor = supervisors[0]!;
    const old = runningPid(supervisor);
    supervisor.markAnnounced();
    process.kill(old, "SIGKILL");
    const state = await until("BIRD restarted", () => {
      const s = supervisor.state();
      return s.state === "running" && s.pid !== old && s;
    }, undefined, log);
    expect(state).toMatchObject({ restarts: 1, lastExit: "killed by SIGKILL", gracefulRestart: true });
    // The command line of the BIRD that answers (the supervisor's current one).
    await until("the new BIRD answering", () => control.request("show status"), undefined, log);
    expect(cmdline(runningPid(supervisor)), log()).toContain("-R");
    expect(await protocolNames()).toContain("mesh_node_2");
  });

  it("leaves BIRD running when it stops, and a new supervisor adopts it, then stops it when asked", async () => {
    const first = supervisors[0]!;
    const pid = runningPid(first);
    await first.stop();
    expect(alive(pid)).toBe(true);
    parseStatus(await control.request("show status"));

    const second = supervise();
    await second.start();
    expect(second.state()).toMatchObject({ state: "adopted", pid });
    const reload = await second.applyConfig(render([1]));
    expect(reload.applied).toBe(true);
    await second.stop({ stopBird: true });
    expect(alive(pid)).toBe(false);
    expect(second.state().state).toBe("stopped");
  });
});
