import { createServer, type Server } from "node:http";
import { isIP } from "node:net";
import type { Registry } from "prom-client";
import { ConfigError } from "./errors.js";

/**
 * /healthz (the process serves), /readyz (lease held and subnet file written; 503 with the
 * reason otherwise) and /metrics, on --metrics-addr. twilld runs in the host's network
 * namespace: an address left out (Go's `:9402`) would serve every interface of the node,
 * the public one too, so the address is always named, and every-address is spelled out.
 */

export interface Readiness {
  ready: boolean;
  reason: string;
}

export function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  const host = m?.[1] ?? m?.[2] ?? "";
  if (!m || port > 65535 || isIP(host) !== (m[1] === undefined ? 4 : 6)) {
    throw new ConfigError(
      `--metrics-addr ${JSON.stringify(text)} is not IP:PORT (127.0.0.1:9402 this node only, NODE_IP:9402 for Prometheus, ` +
        "0.0.0.0:9402 or [::]:9402 every address)",
    );
  }
  return { host, port };
}

/** `text` when it is empty (serving off) or a valid listen address; checked before twilld starts anything. */
export function checkListenAddress(text: string): string {
  if (text !== "") parseListenAddress(text);
  return text;
}

export function startHttpServer(address: string, registry: Registry, readiness: () => Readiness): Promise<Server> {
  const { host, port } = parseListenAddress(address);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, body: string, type = "text/plain; charset=utf-8") => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (path === "/healthz") return send(200, "ok\n");
    if (path === "/readyz") {
      const r = readiness();
      return send(r.ready ? 200 : 503, `${r.ready ? "ready" : "not ready"}: ${r.reason}\n`);
    }
    if (path === "/metrics") {
      registry.metrics().then(
        (text) => send(200, text, registry.contentType),
        (err: Error) => send(500, `${err.message}\n`),
      );
      return;
    }
    send(404, "not found\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(new Error(`failed to listen on ${address}: ${err.message}`)));
    server.listen(port, host, () => resolve(server));
  });
}
