import { createConnection } from "node:net";
import { hexToKey, keyToHex, PrivateKey } from "./keys.js";

/**
 * WireGuard's cross-platform userspace API (https://www.wireguard.com/xplatform/), spoken on
 * the unix socket wireguard-go listens on (`/var/run/wireguard/<ifname>.sock`): a request is
 * `get=1` or `set=1` followed by `key=value` lines and an empty line; the answer is the
 * device's lines (for get) then `errno=N` and an empty line. Keys are hex there, base64 in
 * twill. A `set` is applied line by line and stops at the first bad one, keeping what came
 * before: it is not a transaction, so the planner sends only checked values and, after an
 * errno, the device is read again rather than assumed. An unknown operation is answered by
 * closing the connection.
 *
 * Requests carry the private key: no error or log line here ever quotes a request.
 */

export class UapiError extends Error {
  readonly code = "WIREGUARD_UAPI";
  constructor(
    message: string,
    /** The device's errno (negative, as it answers: -22 for EINVAL), when it answered one. */
    readonly errno: number | null = null,
  ) {
    super(message);
    this.name = "UapiError";
  }
}

/** One peer as the device reports it. */
export interface UapiPeer {
  /** base64 */
  publicKey: string;
  /** `ip:port` or `[ip6]:port`, null before it is known. */
  endpoint: string | null;
  allowedIps: string[];
  persistentKeepalive: number;
  /** Unix seconds of the last handshake, 0 when there has been none. */
  lastHandshakeSec: number;
  rxBytes: number;
  txBytes: number;
}

export interface UapiDevice {
  /** Null when the device has none yet (a fresh wireguard-go). */
  privateKey: PrivateKey | null;
  listenPort: number;
  fwmark: number;
  peers: UapiPeer[];
}

/** A change to one peer. `set` creates the peer when it is missing unless `updateOnly`. */
export type PeerChange =
  | { op: "remove"; publicKey: string }
  | {
      op: "set";
      publicKey: string;
      /** Only change an existing peer (a peer removed meanwhile is not brought back half-made). */
      updateOnly?: boolean;
      endpoint?: string;
      /** The peer's whole list (`replace_allowed_ips`); absent leaves the list as it is. */
      allowedIps?: readonly string[];
      persistentKeepalive?: number;
    };

export interface SetRequest {
  privateKey?: PrivateKey;
  listenPort?: number;
  peers?: readonly PeerChange[];
}

/**
 * How the backend reads and configures its device, whichever it runs: wireguard-go through
 * its UAPI socket (UapiClient), or the kernel's device through generic netlink
 * (KernelWireguardClient, kernel-client.ts). Both read the same UapiDevice and apply the same
 * SetRequest, so plan.ts serves both.
 */
export interface WireguardControl {
  get(): Promise<UapiDevice>;
  /** Applies a set request; not a transaction: after an error, read the device again. */
  set(req: SetRequest): Promise<void>;
}

export const isEmptySet = (req: SetRequest): boolean =>
  req.privateKey === undefined && req.listenPort === undefined && (req.peers ?? []).length === 0;

/** An endpoint as the UAPI writes it (and as wireguard-go reports it back). */
export const formatEndpoint = (ip: string, port: number): string => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);

export const encodeGet = (): string => "get=1\n\n";

/** The text of a set request. Values are checked by the planner; a line break in one is refused here too. */
export function encodeSet(req: SetRequest): string {
  const lines = ["set=1"];
  if (req.privateKey !== undefined) lines.push(`private_key=${req.privateKey.hex()}`);
  if (req.listenPort !== undefined) lines.push(`listen_port=${checkPort(req.listenPort)}`);
  for (const change of req.peers ?? []) {
    lines.push(`public_key=${keyToHex(change.publicKey)}`);
    if (change.op === "remove") {
      lines.push("remove=true");
      continue;
    }
    if (change.updateOnly) lines.push("update_only=true");
    if (change.endpoint !== undefined) lines.push(`endpoint=${oneValue(change.endpoint)}`);
    if (change.persistentKeepalive !== undefined) lines.push(`persistent_keepalive_interval=${checkPort(change.persistentKeepalive)}`);
    if (change.allowedIps !== undefined) {
      lines.push("replace_allowed_ips=true");
      for (const cidr of change.allowedIps) lines.push(`allowed_ip=${oneValue(cidr)}`);
    }
  }
  return `${lines.join("\n")}\n\n`;
}

function oneValue(v: string): string {
  if (v === "" || /[\n=]/.test(v)) throw new UapiError(`refused UAPI value ${JSON.stringify(v)}: empty, or has a line break or '='`);
  return v;
}

function checkPort(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UapiError(`refused UAPI number ${n}: 0..65535 expected`);
  return n;
}

/** The errno that ends an answer; throws when there is none. */
export function parseErrno(answer: string): number {
  const m = /(?:^|\n)errno=(-?\d+)\n\n?$/.exec(answer);
  // Not quoted: a get answer starts with the private key.
  if (!m) throw new UapiError(`UAPI answer without a final errno line (${answer.length} bytes)`);
  return Number(m[1]);
}

/**
 * The device from a `get=1` answer. Keys the device adds in later versions are skipped; the
 * structure (device keys, then a `public_key=` line opening each peer) and the values twill
 * reads are checked.
 */
export function parseGet(answer: string): UapiDevice {
  const errno = parseErrno(answer);
  if (errno !== 0) throw new UapiError(`UAPI get answered errno ${errno}`, errno);
  const device: UapiDevice = { privateKey: null, listenPort: 0, fwmark: 0, peers: [] };
  let peer: UapiPeer | null = null;
  for (const line of answer.split("\n")) {
    if (line === "" || line.startsWith("errno=")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new UapiError(`UAPI get: malformed line (no key=value)`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === "public_key") {
      const publicKey = hexToKey(value);
      if (publicKey === null) throw new UapiError(`UAPI get: malformed peer public key`);
      peer = { publicKey, endpoint: null, allowedIps: [], persistentKeepalive: 0, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 };
      device.peers.push(peer);
      continue;
    }
    if (peer === null) {
      if (key === "private_key") {
        device.privateKey = PrivateKey.fromHex(value);
        if (device.privateKey === null) throw new UapiError(`UAPI get: malformed private key`);
      } else if (key === "listen_port") device.listenPort = number(key, value);
      else if (key === "fwmark") device.fwmark = number(key, value);
      continue;
    }
    if (key === "endpoint") peer.endpoint = value;
    else if (key === "allowed_ip") peer.allowedIps.push(value);
    else if (Object.hasOwn(PEER_NUMBERS, key)) peer[PEER_NUMBERS[key as keyof typeof PEER_NUMBERS]] = number(key, value);
  }
  return device;
}

/** The peer's numeric fields, by their UAPI key. */
const PEER_NUMBERS = {
  persistent_keepalive_interval: "persistentKeepalive",
  last_handshake_time_sec: "lastHandshakeSec",
  rx_bytes: "rxBytes",
  tx_bytes: "txBytes",
} as const satisfies Record<string, keyof UapiPeer>;

function number(key: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UapiError(`UAPI get: ${key} is not a number: ${JSON.stringify(value.slice(0, 40))}`);
  return Number(value);
}

export interface UapiClientOptions {
  /** How long one request (connect, send, whole answer) may take. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 5_000;
/** Bigger than any answer twill expects (a few hundred bytes per peer); a runaway answer fails. */
const MAX_ANSWER = 4 << 20;

/**
 * A client of one device's UAPI socket. Each request has its own connection (wireguard-go
 * serves one per connection at a time and closes it on a malformed request), and requests go
 * one at a time, in the order they were made, so a set is never overtaken by a later get.
 */
export class UapiClient implements WireguardControl {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly timeoutMs: number;

  constructor(
    readonly socketPath: string,
    options: UapiClientOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  async get(): Promise<UapiDevice> {
    const answer = await this.request("get", encodeGet());
    try {
      return parseGet(answer);
    } catch (err) {
      throw new UapiError(`WireGuard UAPI ${this.socketPath}: ${(err as Error).message}`, (err as UapiError).errno ?? null);
    }
  }

  /** Applies a set request; a non-zero errno throws (what came before the bad line stays applied). */
  async set(req: SetRequest): Promise<void> {
    if (isEmptySet(req)) return;
    const answer = await this.request("set", encodeSet(req));
    const errno = parseErrno(answer);
    if (errno !== 0) throw new UapiError(`WireGuard UAPI ${this.socketPath}: set: errno ${errno}${errnoName(errno)}`, errno);
  }

  private request(what: string, text: string): Promise<string> {
    const run = this.queue.then(() => this.exchange(what, text));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private exchange(what: string, text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path: this.socketPath });
      let answer = "";
      let settled = false;
      const timer = setTimeout(() => finish(`no answer within ${this.timeoutMs} ms`), this.timeoutMs);
      const finish = (why: string | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (why === null) resolve(answer);
        else reject(new UapiError(`WireGuard UAPI ${this.socketPath}: ${what}: ${why}`));
      };
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => {
        answer += chunk;
        if (answer.length > MAX_ANSWER) finish(`answer longer than ${MAX_ANSWER} bytes`);
        else if (/(?:^|\n)errno=-?\d+\n\n$/.test(answer)) finish(null);
      });
      socket.on("error", (err) => finish(err.message));
      socket.on("close", () => finish(answer === "" ? "connection closed without an answer" : "connection closed in the middle of an answer"));
      socket.write(text);
    });
  }
}

const ERRNO_NAMES: Record<number, string> = { [-22]: "EINVAL", [-5]: "EIO", [-71]: "EPROTO", [-98]: "EADDRINUSE" };
const errnoName = (errno: number): string => (ERRNO_NAMES[errno] ? ` (${ERRNO_NAMES[errno]})` : "");
