import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BirdControl, BirdControlError, quoteForBird } from "./bird-control.js";

/**
 * The client against a stand-in for BIRD's socket that answers as a script says, in pieces,
 * late or not at all. The real BIRD is in bird-control.priv.test.ts.
 */

type Reply = (socket: Socket, command: string) => void;

interface FakeBird {
  path: string;
  /** Commands received, per connection. */
  received: string[][];
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const undo of cleanups.splice(0).reverse()) undo();
});

async function fakeBird(reply: Reply, greeting = "0001 BIRD 2.0.12 ready.\n"): Promise<FakeBird> {
  const dir = mkdtempSync(join(tmpdir(), "twill-bird-control-"));
  const path = join(dir, "bird.ctl");
  const received: string[][] = [];
  const sockets: Socket[] = [];
  const server: Server = createServer((socket) => {
    sockets.push(socket);
    const mine: string[] = [];
    received.push(mine);
    socket.setEncoding("utf8");
    let buffer = "";
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const command = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        mine.push(command);
        reply(socket, command);
      }
    });
    socket.on("error", () => undefined);
    socket.write(greeting);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, received };
}

const client = (path: string, timeoutMs = 2_000): BirdControl => {
  const c = new BirdControl(path, { timeoutMs });
  cleanups.push(() => c.close());
  return c;
};

const PROTOCOLS = "2002-Name       Proto      Table      State  Since         Info\n1002-mesh_node_2 BGP        ---        up     2026-12-07 00:27:49.241  Established   \n0000 \n";

describe("BirdControl", () => {
  it("reads the greeting, then a whole answer however it is cut, up to the line whose code has a space", async () => {
    const bird = await fakeBird((socket, command) => {
      if (command !== "show protocols") return;
      // Cut inside a code and inside a line; the last line last.
      for (const piece of [PROTOCOLS.slice(0, 3), PROTOCOLS.slice(3, 70), PROTOCOLS.slice(70, -3), PROTOCOLS.slice(-3)]) socket.write(piece);
    });
    const c = client(bird.path);
    expect(await c.request("show protocols")).toBe(PROTOCOLS);
    expect(await c.request("show protocols")).toBe(PROTOCOLS);
    expect(bird.received).toEqual([["show protocols", "show protocols"]]);
  });

  it("sends one command at a time, each answer to its own command", async () => {
    const bird = await fakeBird((socket, command) => {
      // The first answer comes late: the second command must not be sent before it.
      setTimeout(() => socket.write(`1000-${command}\n0000 \n`), command === "first" ? 100 : 0);
    });
    const c = client(bird.path);
    const answers = await Promise.all([c.request("first"), c.request("second"), c.request("third")]);
    expect(answers).toEqual(["1000-first\n0000 \n", "1000-second\n0000 \n", "1000-third\n0000 \n"]);
    expect(bird.received).toEqual([["first", "second", "third"]]);
  });

  it("hands back a BIRD error as an answer and leaves out spontaneous printouts", async () => {
    const bird = await fakeBird((socket, command) => socket.write(command === "show nonsense" ? "9001 syntax error\n" : "+0023 a log line\n1000-BIRD 2.0.12\n0013 Daemon is up and running\n"));
    const c = client(bird.path);
    expect(await c.request("show nonsense")).toBe("9001 syntax error\n");
    expect(await c.request("show status")).toBe("1000-BIRD 2.0.12\n0013 Daemon is up and running\n");
  });

  it("drops the connection when an answer does not come in time, and opens a new one for the next command", async () => {
    const bird = await fakeBird((socket, command) => {
      if (command !== "hang") socket.write("0000 \n");
    });
    const c = client(bird.path, 300);
    await expect(c.request("hang")).rejects.toThrow(new BirdControlError(`BIRD control socket ${bird.path}: hang: no answer within 300 ms`));
    expect(await c.request("show status")).toBe("0000 \n");
    expect(bird.received).toEqual([["hang"], ["show status"]]);
  });

  it("fails a command whose answer the connection's end cuts short, and reconnects after", async () => {
    const bird = await fakeBird((socket, command) => {
      if (command === "die") socket.end("1002-mesh_node_2 BGP\n");
      else socket.write("0000 \n");
    });
    const c = client(bird.path);
    await expect(c.request("die")).rejects.toThrow(/die: closed by BIRD/);
    expect(await c.request("again")).toBe("0000 \n");
  });

  it("names the socket when there is none, or when what answers is not BIRD", async () => {
    const missing = join(tmpdir(), `twill-no-bird-${process.pid}.ctl`);
    await expect(client(missing).request("show status")).rejects.toThrow(new RegExp(`BIRD control socket ${missing}: connect: .*ENOENT`));
    const other = await fakeBird(() => undefined, "0016 Access restricted\n");
    await expect(client(other.path).request("show status")).rejects.toThrow(/connect: not BIRD's greeting: "0016 Access restricted"/);
  });

  it("refuses a command that is not one line, sending nothing", async () => {
    const bird = await fakeBird((socket) => socket.write("0000 \n"));
    const c = client(bird.path);
    await expect(c.request("show status\nconfigure")).rejects.toThrow(/refused command "show status\\nconfigure"/);
    await expect(c.request("")).rejects.toThrow(BirdControlError);
    expect(await c.request("show status")).toBe("0000 \n");
    expect(bird.received).toEqual([["show status"]]);
  });

  it("fails every request once closed", async () => {
    const bird = await fakeBird((socket) => socket.write("0000 \n"));
    const c = client(bird.path);
    await c.request("show status");
    c.close();
    await expect(c.request("show status")).rejects.toThrow(/client closed/);
  });
});

describe("quoteForBird", () => {
  it("quotes a path and refuses one BIRD's strings cannot hold", () => {
    expect(quoteForBird("/run/twill/bird/bird.conf.new")).toBe('"/run/twill/bird/bird.conf.new"');
    for (const bad of ['/tmp/a"b', "/tmp/a\\b", "/tmp/a\nb"]) expect(() => quoteForBird(bad)).toThrow(BirdControlError);
  });
});
