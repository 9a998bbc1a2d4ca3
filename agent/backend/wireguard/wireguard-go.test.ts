import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FakeClock } from "../../../testkit/clock.js";
import { fakeWireguardDevice } from "../../../testkit/wireguard-device.js";
import type { BirdChild } from "../bgp/bird-supervisor.js";
import { checkTunDevice, WG_DEVICE, wireguardGoArgv, wireguardGoFiles, WireguardGoSupervisor } from "./wireguard-go.js";

describe("wireguard-go's command line", () => {
  it("runs it in the foreground, exec'd to the end so the child's PID is wireguard-go's", () => {
    expect(wireguardGoArgv(null, null)).toEqual(["env", "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error", "wireguard-go", "-f", WG_DEVICE]);
    expect(wireguardGoArgv(null, "/run/netns/n1").slice(0, 3)).toEqual(["nsenter", "--net=/run/netns/n1", "env"]);
  });

  it("binds the node's directory over /run/wireguard in a mount namespace of its own", () => {
    const argv = wireguardGoArgv("/tmp/tb/node-1/wg", null, "/usr/bin/wireguard-go");
    expect(argv.slice(3, 7)).toEqual(["unshare", "--mount", "--propagation", "private"]);
    expect(argv.slice(-3)).toEqual(["/tmp/tb/node-1/wg", "/usr/bin/wireguard-go", WG_DEVICE]);
    expect(argv.at(-4)).toBe('cd "$0" && mount -t tmpfs -o mode=0755 twill-run /run && mkdir /run/wireguard && mount --bind . /run/wireguard && exec "$1" -f "$2"');
  });

  it("keeps its socket where wireguard-go puts it, or in the node's directory", () => {
    expect(wireguardGoFiles(null).socket).toBe("/var/run/wireguard/twill-wg.sock");
    expect(wireguardGoFiles("/tmp/x")).toEqual({ socket: "/tmp/x/twill-wg.sock", pid: "/tmp/x/twill-wg.pid", log: "/tmp/x/wireguard-go.log" });
  });
});

/** A wireguard-go that runs until the test ends it. */
class FakeChild implements BirdChild {
  detached = false;
  end: (reason: string) => void = () => undefined;
  readonly exited = new Promise<string>((resolve) => (this.end = resolve));
  constructor(
    readonly argv: readonly string[],
    readonly pid: number,
  ) {}
  detach(): void {
    this.detached = true;
  }
}

describe("the TUN device check", () => {
  it("passes a device it can open, and names the cause and the fix when it cannot", () => {
    expect(() => checkTunDevice("/dev/null")).not.toThrow();
    expect(() => checkTunDevice("/nonexistent/tun")).toThrow(/needs a TUN device, and \/nonexistent\/tun does not exist: load the tun module on the node; in a container, .* privileged containers only/);
    expect(() => checkTunDevice("/")).toThrow(/\/ cannot be opened: EISDIR/);
  });
});

describe("WireguardGoSupervisor with a fake wireguard-go", () => {
  let dir: string;
  let device: Awaited<ReturnType<typeof fakeWireguardDevice>> | null = null;
  afterEach(async () => {
    await device?.close();
    device = null;
    rmSync(dir, { recursive: true, force: true });
  });

  const setup = () => {
    dir = mkdtempSync(join(tmpdir(), "twill-wg-supervisor-"));
    const clock = new FakeClock();
    const children: FakeChild[] = [];
    const starts: string[] = [];
    const supervisor = new WireguardGoSupervisor({
      dir,
      clock,
      onStart: (how) => starts.push(how),
      spawner: (argv) => children[children.push(new FakeChild(argv, 100 + children.length)) - 1]!,
    });
    return { supervisor, clock, children, starts };
  };

  it("starts wireguard-go when no device answers, records its PID, and leaves it running on stop", async () => {
    const { supervisor, children, starts } = setup();
    await supervisor.start();
    expect(children).toHaveLength(1);
    expect(children[0]!.argv).toContain("unshare");
    expect(readFileSync(join(dir, `${WG_DEVICE}.pid`), "utf8")).toBe("100\n");
    expect(supervisor.state()).toMatchObject({ state: "running", pid: 100 });
    expect(starts).toEqual(["started"]);
    supervisor.stop();
    expect(children[0]!.detached).toBe(true);
    expect(supervisor.state().state).toBe("stopped");
  });

  it("restarts it after an exit, waiting longer after each quick failure", async () => {
    const { supervisor, clock, children, starts } = setup();
    await supervisor.start();
    children[0]!.end("exited with code 1");
    await clock.advance(0);
    expect(supervisor.state()).toMatchObject({ state: "restarting", lastExit: "exited with code 1" });
    await clock.advance(999);
    expect(children).toHaveLength(1);
    await clock.advance(1);
    expect(children).toHaveLength(2);
    children[1]!.end("killed by SIGKILL");
    await clock.advance(1_999);
    expect(children).toHaveLength(2);
    await clock.advance(1);
    expect(children).toHaveLength(3);
    expect(supervisor.state()).toMatchObject({ state: "running", pid: 102, restarts: 2 });
    expect(starts).toEqual(["started", "started", "started"]);
    supervisor.stop();
  });

  it("adopts the device whose socket answers instead of starting another", async () => {
    const { supervisor, children, starts } = setup();
    device = await fakeWireguardDevice(join(dir, `${WG_DEVICE}.sock`));
    await supervisor.start();
    expect(children).toEqual([]);
    expect(supervisor.state().state).toBe("adopted");
    expect(starts).toEqual(["adopted"]);
    supervisor.stop();
    expect(existsSync(join(dir, `${WG_DEVICE}.pid`))).toBe(false);
  });
});
