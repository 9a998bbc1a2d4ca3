import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";

/** What the fake apiserver serves; tests change it between requests. */
export interface FakeApiState {
  /** Node name → its InternalIP addresses; an absent name is a 404. */
  nodes: Record<string, string[]>;
  /** Node name → the raw Pod objects listed with fieldSelector spec.nodeName=<name>. */
  pods: Record<string, unknown[]>;
}

/**
 * An apiserver that answers the two reads of leak recovery (GET a Node, list pods by node) from
 * plain data, over plain HTTP on 127.0.0.1, so unit tests run the real Kubernetes client and
 * agent/ipam/pods.ts without a control plane.
 */
export async function fakeApiserver(state: FakeApiState): Promise<{ kc: KubeConfig; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const node = /^\/api\/v1\/nodes\/([^/]+)$/.exec(url.pathname);
    if (node) {
      const addresses = state.nodes[decodeURIComponent(node[1]!)];
      if (!addresses) return send(404, { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404, message: `nodes "${node[1]}" not found` });
      return send(200, { kind: "Node", apiVersion: "v1", metadata: { name: node[1] }, status: { addresses: addresses.map((address) => ({ type: "InternalIP", address })) } });
    }
    if (url.pathname === "/api/v1/pods") {
      const name = /^spec\.nodeName=(.*)$/.exec(url.searchParams.get("fieldSelector") ?? "")?.[1] ?? "";
      return send(200, { kind: "PodList", apiVersion: "v1", metadata: {}, items: state.pods[name] ?? [] });
    }
    send(404, { kind: "Status", apiVersion: "v1", code: 404 });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const kc = new KubeConfig();
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  kc.loadFromOptions({
    clusters: [{ name: "c", server: base, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return { kc, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
