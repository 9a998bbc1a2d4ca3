import { createServer } from "node:net";

/**
 * A device as wireguard-go keeps it, behind a real unix socket speaking the UAPI: enough of
 * get and set for the backend's requests. Keys are hex, as on the wire.
 */
export async function fakeWireguardDevice(path: string) {
  const device = { privateKey: "", listenPort: 35486, peers: new Map<string, { endpoint: string; allowed: string[] }>() };
  const sets: string[][] = [];
  const get = (): string => {
    const lines = [...(device.privateKey ? [`private_key=${device.privateKey}`] : []), `listen_port=${device.listenPort}`];
    for (const [key, p] of device.peers) lines.push(`public_key=${key}`, `endpoint=${p.endpoint}`, "persistent_keepalive_interval=0", ...p.allowed.map((a) => `allowed_ip=${a}`));
    return `${lines.join("\n")}\nerrno=0\n\n`;
  };
  const set = (lines: string[]): string => {
    sets.push(lines);
    let peer: { endpoint: string; allowed: string[] } | null = null;
    let key = "";
    for (const line of lines) {
      const [k, v = ""] = line.split("=");
      if (k === "private_key") device.privateKey = v;
      else if (k === "listen_port") device.listenPort = Number(v);
      else if (k === "public_key") {
        key = v;
        peer = device.peers.get(v) ?? { endpoint: "", allowed: [] };
        device.peers.set(v, peer);
      } else if (k === "remove") device.peers.delete(key);
      else if (k === "endpoint") peer!.endpoint = v;
      else if (k === "replace_allowed_ips") peer!.allowed = [];
      else if (k === "allowed_ip") peer!.allowed.push(v);
    }
    return "errno=0\n\n";
  };
  const server = createServer((c) => {
    let text = "";
    c.on("data", (d) => {
      text += d.toString();
      if (!text.endsWith("\n\n")) return;
      const lines = text.trim().split("\n");
      c.end(lines[0] === "get=1" ? get() : set(lines.slice(1)));
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { device, sets, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
