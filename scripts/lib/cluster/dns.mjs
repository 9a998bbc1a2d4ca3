#!/usr/bin/env node
// Cluster DNS for scripts/cluster, which has no CoreDNS (Debian does not package it): a small
// Kubernetes-aware responder that answers from the API what kube-dns answers for Services and
// pods (the DNS spec of Kubernetes: <svc>.<ns>.svc.<domain>, headless Services by endpoint,
// <a-b-c-d>.<ns>.pod.<domain>). It serves UDP and TCP on --listen, reads Services and Endpoints
// every --refresh ms, answers each --static NAME=IPV4 as given, and NXDOMAIN for every other
// name (the cluster has no upstream).
//
//   node dns.mjs --kubeconfig FILE --listen 192.168.90.2 [--domain cluster.local]
//                [--static google.com=192.168.90.3]...
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { createServer } from "node:net";
import { parseArgs } from "node:util";

const { values: opts } = parseArgs({
  options: {
    kubeconfig: { type: "string" },
    listen: { type: "string", default: "0.0.0.0" },
    port: { type: "string", default: "53" },
    domain: { type: "string", default: "cluster.local" },
    refresh: { type: "string", default: "1000" },
    static: { type: "string", multiple: true, default: [] },
  },
});

const kube = readKubeconfig(opts.kubeconfig);
const domain = opts.domain.toLowerCase();
const TYPE_A = 1;
const TYPE_AAAA = 28;
const TTL = 5;
const statics = new Map(opts.static.map((kv) => kv.toLowerCase().split("=")).map(([k, v]) => [k.replace(/\.$/, ""), [v]]));

/** name (lowercase, no trailing dot) → IPv4 addresses; refreshed from the API. */
let records = new Map();

async function refresh() {
  const [services, endpoints] = await Promise.all([get("/api/v1/services"), get("/api/v1/endpoints")]);
  const eps = new Map(endpoints.items.map((e) => [`${e.metadata.namespace}/${e.metadata.name}`, e]));
  const next = new Map();
  const add = (name, ip) => {
    if (!ip || ip.includes(":")) return;
    const list = next.get(name) ?? [];
    if (!list.includes(ip)) list.push(ip);
    next.set(name, list);
  };
  for (const s of services.items) {
    const { name, namespace } = s.metadata;
    const fqdn = `${name}.${namespace}.svc.${domain}`;
    if (s.spec.type === "ExternalName") continue;
    if (s.spec.clusterIP && s.spec.clusterIP !== "None") {
      add(fqdn, s.spec.clusterIP);
      continue;
    }
    // Headless: every ready endpoint address, and each by its hostname.
    for (const subset of eps.get(`${namespace}/${name}`)?.subsets ?? []) {
      for (const a of subset.addresses ?? []) {
        add(fqdn, a.ip);
        if (a.hostname) add(`${a.hostname}.${fqdn}`, a.ip);
      }
    }
  }
  records = next;
}

/** The answer for one question: addresses, or null for a name that does not exist. */
function lookup(name, type) {
  name = name.toLowerCase().replace(/\.$/, "");
  const pod = name.match(new RegExp(`^(\\d+)-(\\d+)-(\\d+)-(\\d+)\\.[^.]+\\.pod\\.${domain.replace(/\./g, "\\.")}$`));
  const v4 = statics.get(name) ?? (pod ? [pod.slice(1, 5).join(".")] : records.get(name));
  if (!v4) return null;
  return type === TYPE_A ? v4 : [];
}

function answer(query) {
  const id = query.readUInt16BE(0);
  const flags = query.readUInt16BE(2);
  const qdcount = query.readUInt16BE(4);
  const header = (rcode, ancount) => {
    const h = Buffer.alloc(12);
    h.writeUInt16BE(id, 0);
    // QR, the query's opcode and RD, AA, RA; then the rcode.
    h.writeUInt16BE(0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode, 2);
    h.writeUInt16BE(qdcount ? 1 : 0, 4);
    h.writeUInt16BE(ancount, 6);
    return h;
  };
  if (qdcount !== 1 || (flags & 0x7800) !== 0) return header(4, 0); // NOTIMP
  let off = 12;
  const labels = [];
  while (query[off] !== 0) {
    const len = query[off];
    if (len > 63 || off + 1 + len >= query.length) return header(1, 0); // FORMERR
    labels.push(query.toString("latin1", off + 1, off + 1 + len));
    off += 1 + len;
  }
  const qtype = query.readUInt16BE(off + 1);
  const question = query.subarray(12, off + 5);
  const ips = lookup(labels.join("."), qtype);
  if (ips === null) return Buffer.concat([header(3, 0), question]); // NXDOMAIN
  const rrs = ips.map((ip) => {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    rr.writeUInt16BE(TYPE_A, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(TTL, 6);
    rr.writeUInt16BE(4, 10);
    ip.split(".").forEach((o, i) => rr.writeUInt8(Number(o), 12 + i));
    return rr;
  });
  return Buffer.concat([header(0, rrs.length), question, ...rrs]);
}

function get(path) {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, kube.server),
      { ca: kube.ca, headers: { authorization: `Bearer ${kube.token}` }, timeout: 5000 },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (body += c));
        res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`GET ${path}: ${res.statusCode}`))));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

// The kubeconfigs scripts/cluster writes: one cluster with a CA file, one user with a token.
function readKubeconfig(file) {
  const text = readFileSync(file, "utf8");
  const field = (k) => text.match(new RegExp(`${k}:\\s*"?([^",}\\s]+)"?`))?.[1];
  return { server: field("server"), ca: readFileSync(field("certificate-authority")), token: field("token") };
}

const udp = createSocket("udp4");
udp.on("message", (msg, peer) => {
  if (msg.length < 12) return;
  udp.send(answer(msg), peer.port, peer.address);
});
udp.bind(Number(opts.port), opts.listen);

createServer((conn) => {
  let buf = Buffer.alloc(0);
  conn.on("data", (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
      buf = buf.subarray(2 + msg.length);
      const out = answer(msg);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(out.length);
      conn.write(Buffer.concat([len, out]));
    }
  });
  conn.on("error", () => conn.destroy());
}).listen(Number(opts.port), opts.listen);

const loop = async () => {
  try {
    await refresh();
  } catch (e) {
    console.error(JSON.stringify({ msg: "refresh failed", error: String(e) }));
  }
  setTimeout(loop, Number(opts.refresh));
};
loop();
console.error(JSON.stringify({ msg: "serving cluster DNS", listen: `${opts.listen}:${opts.port}`, domain }));
