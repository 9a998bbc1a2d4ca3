import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { keyToHex, PrivateKey } from "./keys.js";
import { encodeSet, formatEndpoint, isEmptySet, parseErrno, parseGet, UapiClient, UapiError } from "./uapi.js";

const PRIVATE = PrivateKey.fromBase64("uKMQmcPwwALLwk5dyTlViB9b/ShebG3tBaeLwfPqA3A=", "test");
const PEER_A = "72Pdv6UxeV8vhOh3TIybQ8Nw/TfFoPiU0iDGRr0oSlM=";
const PEER_B = "/q15P3CQqn9u4zP/NwXYaG62rQZcAd9KRkaNyERJ/2Y=";

/** The shape wireguard-go 0.0.20220316 answered `get=1` with, two peers, one without a handshake yet. */
const GET_ANSWER = [
  `private_key=${PRIVATE.hex()}`,
  "listen_port=51820",
  `public_key=${keyToHex(PEER_A)}`,
  "preshared_key=0000000000000000000000000000000000000000000000000000000000000000",
  "protocol_version=1",
  "endpoint=10.20.0.2:51820",
  "last_handshake_time_sec=1796612711",
  "last_handshake_time_nsec=555669805",
  "tx_bytes=660",
  "rx_bytes=476",
  "persistent_keepalive_interval=0",
  "allowed_ip=10.244.2.0/24",
  "allowed_ip=fd10:244:2::/64",
  `public_key=${keyToHex(PEER_B)}`,
  "preshared_key=0000000000000000000000000000000000000000000000000000000000000000",
  "protocol_version=1",
  "endpoint=[fd00:20::3]:51820",
  "last_handshake_time_sec=0",
  "last_handshake_time_nsec=0",
  "tx_bytes=148",
  "rx_bytes=0",
  "persistent_keepalive_interval=25",
  "errno=0",
  "",
  "",
].join("\n");

describe("encodeSet", () => {
  it("writes the device's fields, then each peer opened by its hex key: removal, new peer, partial update", () => {
    const text = encodeSet({
      privateKey: PRIVATE,
      listenPort: 51820,
      peers: [
        { op: "remove", publicKey: PEER_B },
        { op: "set", publicKey: PEER_A, endpoint: "10.20.0.2:51820", persistentKeepalive: 0, allowedIps: ["10.244.2.0/24", "fd10:244:2::/64"] },
        { op: "set", publicKey: PEER_B, updateOnly: true, endpoint: "[fd00:20::3]:51820" },
      ],
    });
    expect(text).toBe(
      [
        "set=1",
        `private_key=${PRIVATE.hex()}`,
        "listen_port=51820",
        `public_key=${keyToHex(PEER_B)}`,
        "remove=true",
        `public_key=${keyToHex(PEER_A)}`,
        "endpoint=10.20.0.2:51820",
        "persistent_keepalive_interval=0",
        "replace_allowed_ips=true",
        "allowed_ip=10.244.2.0/24",
        "allowed_ip=fd10:244:2::/64",
        `public_key=${keyToHex(PEER_B)}`,
        "update_only=true",
        "endpoint=[fd00:20::3]:51820",
        "",
        "",
      ].join("\n"),
    );
  });

  it("empties a peer's list with replace_allowed_ips and no allowed_ip", () => {
    expect(encodeSet({ peers: [{ op: "set", publicKey: PEER_A, updateOnly: true, allowedIps: [] }] })).toBe(
      `set=1\npublic_key=${keyToHex(PEER_A)}\nupdate_only=true\nreplace_allowed_ips=true\n\n`,
    );
  });

  it("refuses a value that would add a line, and numbers out of range", () => {
    expect(() => encodeSet({ peers: [{ op: "set", publicKey: PEER_A, allowedIps: ["10.0.0.0/8\nremove=true"] }] })).toThrow(UapiError);
    expect(() => encodeSet({ peers: [{ op: "set", publicKey: PEER_A, endpoint: "" }] })).toThrow(UapiError);
    expect(() => encodeSet({ listenPort: 65536 })).toThrow(UapiError);
    expect(() => encodeSet({ peers: [{ op: "set", publicKey: PEER_A, persistentKeepalive: -1 }] })).toThrow(UapiError);
  });

  it("knows an empty request", () => {
    expect(isEmptySet({})).toBe(true);
    expect(isEmptySet({ peers: [] })).toBe(true);
    expect(isEmptySet({ listenPort: 1 })).toBe(false);
  });

  it("writes IPv6 endpoints in brackets", () => {
    expect(formatEndpoint("fd00:20::3", 51820)).toBe("[fd00:20::3]:51820");
    expect(formatEndpoint("10.20.0.3", 51820)).toBe("10.20.0.3:51820");
  });
});

describe("parseGet", () => {
  it("reads the device and its peers, keys back in base64", () => {
    const device = parseGet(GET_ANSWER);
    expect(device.privateKey?.equals(PRIVATE)).toBe(true);
    expect(device.listenPort).toBe(51820);
    expect(device.peers).toEqual([
      { publicKey: PEER_A, endpoint: "10.20.0.2:51820", allowedIps: ["10.244.2.0/24", "fd10:244:2::/64"], persistentKeepalive: 0, lastHandshakeSec: 1796612711, rxBytes: 476, txBytes: 660 },
      { publicKey: PEER_B, endpoint: "[fd00:20::3]:51820", allowedIps: [], persistentKeepalive: 25, lastHandshakeSec: 0, rxBytes: 0, txBytes: 148 },
    ]);
  });

  it("reads a fresh device: no private key, no peers", () => {
    expect(parseGet("listen_port=0\nerrno=0\n\n")).toEqual({ privateKey: null, listenPort: 0, fwmark: 0, peers: [] });
  });

  it("skips keys it does not know, on the device and on a peer", () => {
    const device = parseGet(GET_ANSWER.replace("listen_port=51820\n", "listen_port=51820\nsome_future_key=1\n").replace("tx_bytes=148\n", "tx_bytes=148\nanother=x\nconstructor=1\n"));
    expect(device).toEqual(parseGet(GET_ANSWER));
  });

  it("refuses an answer without errno, a failed get, a malformed key or number", () => {
    expect(() => parseGet("listen_port=1\n")).toThrow(/without a final errno line/);
    expect(() => parseGet("errno=-5\n\n")).toThrow(expect.objectContaining({ errno: -5 }));
    expect(() => parseGet("public_key=xyz\nerrno=0\n\n")).toThrow(/malformed peer public key/);
    expect(() => parseGet("listen_port=abc\nerrno=0\n\n")).toThrow(/listen_port is not a number/);
    expect(() => parseGet("private_key=00\nerrno=0\n\n")).toThrow(/malformed private key/);
    expect(() => parseGet("garbage\nerrno=0\n\n")).toThrow(/malformed line/);
  });

  it("never quotes the private key in an error", () => {
    let message = "";
    try {
      parseGet(`private_key=${PRIVATE.hex()}\n`);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/errno/);
    expect(message).not.toContain(PRIVATE.hex());
  });
});

describe("parseErrno", () => {
  it("reads the last line's errno", () => {
    expect(parseErrno("errno=0\n\n")).toBe(0);
    expect(parseErrno("errno=-22\n\n")).toBe(-22);
    expect(() => parseErrno("")).toThrow(UapiError);
  });
});

type Reply = (socket: Socket, request: string) => void;

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const undo of cleanups.splice(0).reverse()) undo();
});

/** A stand-in for wireguard-go's socket: hands each whole request (up to the empty line) to `reply`. */
async function fakeDevice(reply: Reply): Promise<{ path: string; received: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), "twill-wg-uapi-"));
  const path = join(dir, "twill-wg.sock");
  const received: string[] = [];
  const sockets: Socket[] = [];
  const server: Server = createServer((socket) => {
    sockets.push(socket);
    socket.setEncoding("utf8");
    let buffer = "";
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf("\n\n");
      if (end >= 0) {
        const request = buffer.slice(0, end + 2);
        buffer = buffer.slice(end + 2);
        received.push(request);
        reply(socket, request);
      }
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, received };
}

const client = (path: string, timeoutMs = 2_000): UapiClient => new UapiClient(path, { timeoutMs });

describe("UapiClient", () => {
  it("gets the device, however the answer is cut", async () => {
    const dev = await fakeDevice((socket) => {
      for (const piece of [GET_ANSWER.slice(0, 5), GET_ANSWER.slice(5, 300), GET_ANSWER.slice(300, -1), GET_ANSWER.slice(-1)]) socket.write(piece);
    });
    const device = await client(dev.path).get();
    expect(device.peers.map((p) => p.publicKey)).toEqual([PEER_A, PEER_B]);
    expect(dev.received).toEqual(["get=1\n\n"]);
  });

  it("sets, and throws the device's errno with its name, never the request", async () => {
    const dev = await fakeDevice((socket, request) => socket.write(request.includes("listen_port=1\n") ? "errno=-22\n\n" : "errno=0\n\n"));
    const c = client(dev.path);
    await c.set({ privateKey: PRIVATE, listenPort: 51820 });
    const err = await c.set({ privateKey: PRIVATE, listenPort: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UapiError);
    expect(err).toMatchObject({ errno: -22, message: `WireGuard UAPI ${dev.path}: set: errno -22 (EINVAL)` });
    expect((err as Error).message).not.toContain(PRIVATE.hex());
  });

  it("sends nothing for an empty request", async () => {
    const dev = await fakeDevice((socket) => socket.write("errno=0\n\n"));
    await client(dev.path).set({ peers: [] });
    expect(dev.received).toEqual([]);
  });

  it("runs requests one at a time in the order they were made", async () => {
    const order: string[] = [];
    const dev = await fakeDevice((socket, request) => {
      order.push(request.split("\n")[0]!);
      // The first answer comes late: the second request must not have been sent yet.
      setTimeout(() => socket.write(request.startsWith("set") ? "errno=0\n\n" : GET_ANSWER), order.length === 1 ? 100 : 0);
    });
    const c = client(dev.path);
    await Promise.all([c.set({ listenPort: 51820 }), c.get()]);
    expect(order).toEqual(["set=1", "get=1"]);
  });

  it("fails a request the device closes without answering (an unknown operation)", async () => {
    const dev = await fakeDevice((socket) => socket.end());
    await expect(client(dev.path).get()).rejects.toThrow(/get: connection closed without an answer/);
  });

  it("fails on a timeout, and the next request still works", async () => {
    let calls = 0;
    const dev = await fakeDevice((socket) => {
      if (++calls > 1) socket.write("errno=0\n\n");
    });
    const c = client(dev.path, 200);
    await expect(c.set({ listenPort: 51820 })).rejects.toThrow(/no answer within 200 ms/);
    await c.set({ listenPort: 51820 });
  });

  it("fails when nothing listens", async () => {
    await expect(client("/nonexistent/twill-wg.sock").get()).rejects.toThrow(/WireGuard UAPI \/nonexistent\/twill-wg.sock: get: .*ENOENT/);
  });
});
