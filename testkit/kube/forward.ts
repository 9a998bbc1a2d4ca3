import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { httpGet, startDaemon, waitUntilReady, type Daemon } from "../daemon.js";

/**
 * The test's apiserver (on this namespace's loopback) inside a node namespace at 127.0.0.1:PORT,
 * for a twilld that runs there while the test keeps talking to the apiserver from here. A
 * listener in the namespace hands each connection over a unix socket (a file, which every
 * namespace reaches) to this process, which joins it to the apiserver. TLS passes through
 * untouched, and the serving certificate names 127.0.0.1.
 */
export interface ApiserverForward {
  /** https://127.0.0.1:PORT, as seen inside the namespace. */
  server: string;
  stop: () => Promise<void>;
}

const FORWARD_READY_MS = 10_000;

// Run by this Node binary inside the namespace: argv[1] the socket, argv[2] the port.
const LISTENER = `
const net = require("node:net");
const [sock, port] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect(sock);
  c.on("error", () => u.destroy());
  u.on("error", () => c.destroy());
  c.pipe(u).pipe(c);
}).listen(Number(port), "127.0.0.1");
`;

export async function forwardApiserver(apiserver: string, netns: string, port = 6443): Promise<ApiserverForward> {
  const target = new URL(apiserver);
  const dir = mkdtempSync(join(tmpdir(), "twill-kube-forward-"));
  const sock = join(dir, "apiserver.sock");
  const open = new Set<Socket>();
  const relay = createServer((inner) => {
    const outer = createConnection(Number(target.port), target.hostname);
    for (const s of [inner, outer]) {
      open.add(s);
      s.on("close", () => open.delete(s));
    }
    inner.on("error", () => outer.destroy());
    outer.on("error", () => inner.destroy());
    inner.pipe(outer).pipe(inner);
  });
  await new Promise<void>((resolve, reject) => relay.once("error", reject).listen(sock, resolve));
  let listener: Daemon | undefined;
  const stop = async () => {
    await listener?.stop();
    for (const s of open) s.destroy();
    await new Promise<void>((resolve) => relay.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    listener = startDaemon(`apiserver forward into ${netns}`, "ip", ["netns", "exec", netns, process.execPath, "-e", LISTENER, sock, String(port)], join(dir, "listener.log"));
    // Plain HTTP to the TLS port: any answer (400) means the path through is open.
    await waitUntilReady(listener, "forwarding", async () => (await httpGet(`http://127.0.0.1:${port}/`, netns)).status !== 0, FORWARD_READY_MS);
  } catch (err) {
    await stop();
    throw err;
  }
  return { server: `https://127.0.0.1:${port}`, stop };
}
