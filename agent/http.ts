import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

/**
 * /healthz (the process serves), /readyz (lease held and subnet file written; 503 with the
 * reason otherwise) and /metrics, on --metrics-addr.
 */

export interface Readiness {
  ready: boolean;
  reason: string;
}

export function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`--metrics-addr ${JSON.stringify(text)} is not HOST:PORT (e.g. 127.0.0.1:9402, [::1]:9402)`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
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
