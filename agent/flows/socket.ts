import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import type { Logger } from "../../shared/log.js";
import { errorMessage } from "../errors.js";
import type { FlowRecord } from "./record.js";

/**
 * How `twilld flows` reaches the running agent: a Unix socket in its state directory (0600:
 * flows say which pod talks to which, so only root on the node reads them). One request line,
 * then JSON lines back:
 *
 *   → {"follow": true, "pod": "ns/name", "verdict": "dropped"}
 *   ← {"hello": {"collecting": "on-demand", "kept": 0}}
 *   ← {"flow": {...}}            the kept flows that match, then, with follow, each new one
 *   ← {"error": "..."}           a request the agent refuses; the connection ends
 *
 * Without follow the connection ends after the kept flows.
 */

export const flowSocketPath = (stateDir: string): string => `${stateDir}/flows.sock`;

export interface FlowRequest {
  follow: boolean;
  pod?: string;
  verdict?: FlowRecord["verdict"];
}

export interface FlowHello {
  /** "always": flows are kept for the sink or metrics; "on-demand": only while someone follows. */
  collecting: "always" | "on-demand";
  /** How many flows the agent keeps now. */
  kept: number;
}

/** What the server needs of the collector. */
export interface FlowFeed {
  hello(): FlowHello;
  recent(): readonly FlowRecord[];
  /** Starts collecting for this follower if no one else made it; the returned function ends that. */
  follow(on: (r: FlowRecord) => void): () => void;
}

export type FlowLine = { hello: FlowHello } | { flow: FlowRecord } | { error: string };

/** The largest request line: a pod name is at most 317 characters. */
const MAX_REQUEST = 4096;

/**
 * Serves flows on `path`. `matcher` turns a request into a test on records, throwing on a bad
 * one (the client gets its message). A follower that cannot keep up (the socket's buffer
 * full) loses flows rather than holding the agent's memory: they are counted in what it is told
 * at the end.
 */
export async function serveFlows(
  path: string,
  feed: FlowFeed,
  matcher: (r: FlowRequest) => (rec: FlowRecord) => boolean,
  logger: Logger,
): Promise<{ close(): Promise<void> }> {
  removeStaleSocket(path);
  const clients = new Set<Socket>();
  const server: Server = createServer((sock) => {
    clients.add(sock);
    sock.on("close", () => clients.delete(sock));
    sock.on("error", () => sock.destroy());
    let buf = "";
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) {
        if (buf.length > MAX_REQUEST) finish(sock, { error: "request too long" });
        return;
      }
      sock.off("data", onData);
      answer(sock, buf.slice(0, nl));
    };
    sock.on("data", onData);
  });
  const answer = (sock: Socket, line: string): void => {
    let test: (rec: FlowRecord) => boolean;
    let req: FlowRequest;
    try {
      req = parseRequest(line);
      test = matcher(req);
    } catch (err) {
      finish(sock, { error: errorMessage(err) });
      return;
    }
    send(sock, { hello: feed.hello() });
    for (const r of feed.recent()) if (test(r)) send(sock, { flow: r });
    if (!req.follow) {
      sock.end();
      return;
    }
    const stop = feed.follow((r) => {
      if (test(r) && sock.writable && sock.writableLength < 1 << 20) send(sock, { flow: r });
    });
    sock.on("close", stop);
  };
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  logger.debug("Serving flows", { socket: path });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of clients) c.destroy();
        server.close(() => resolve());
      }),
  };
}

function send(sock: Socket, line: FlowLine): void {
  sock.write(JSON.stringify(line) + "\n");
}

function finish(sock: Socket, line: FlowLine): void {
  sock.end(JSON.stringify(line) + "\n");
}

/** A request line as the agent accepts it. Exported for tests. */
export function parseRequest(line: string): FlowRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new Error("request is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("request is not a JSON object");
  const o = v as Record<string, unknown>;
  if (typeof o.follow !== "boolean") throw new Error('request needs "follow": true or false');
  const req: FlowRequest = { follow: o.follow };
  if (o.pod !== undefined) {
    if (typeof o.pod !== "string") throw new Error('"pod" must be a string');
    req.pod = o.pod;
  }
  if (o.verdict !== undefined) {
    if (o.verdict !== "allowed" && o.verdict !== "dropped") throw new Error('"verdict" must be "allowed" or "dropped"');
    req.verdict = o.verdict;
  }
  return req;
}

/** A socket left by an agent that did not stop cleanly; anything else at the path is refused. */
function removeStaleSocket(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  unlinkSync(path);
}

/**
 * The client side: sends `req`, hands every line to `on` until the agent ends the connection
 * (or `signal` aborts a follow). Throws with what to do when no agent answers.
 */
export function readFlows(path: string, req: FlowRequest, on: (line: FlowLine) => void, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = "";
    let failed = false;
    sock.on("connect", () => sock.write(JSON.stringify(req) + "\n"));
    sock.on("data", (chunk) => {
      buf += chunk.toString("utf8");
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (text.trim() === "") continue;
        try {
          on(JSON.parse(text) as FlowLine);
        } catch (err) {
          failed = true;
          sock.destroy();
          reject(err);
          return;
        }
      }
    });
    sock.on("error", (err: NodeJS.ErrnoException) => {
      failed = true;
      reject(err.code === "ENOENT" || err.code === "ECONNREFUSED" ? new Error(`no twilld answers on ${path}: is \`twilld run\` running on this node (with the same --state-dir)?`) : err);
    });
    sock.on("close", () => {
      if (!failed) resolve();
    });
    signal?.addEventListener("abort", () => sock.end(), { once: true });
  });
}
