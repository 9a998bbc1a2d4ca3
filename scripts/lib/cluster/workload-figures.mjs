// The figures of the workload that scripts/lib/cluster/workload.sh runs, shared by the reports
// of scripts/upgrade-test and scripts/fault-test: the traffic clients' summaries, and the
// addresses of a snapshot (every pod's against each node's IPAM store).
import fs from "node:fs";
import path from "node:path";

/** `--key value` pairs of argv as an object (a value may hold spaces, not " --"). */
export function parseArgs(argv) {
  return Object.fromEntries(
    argv
      .join(" ")
      .split(/\s*--/)
      .filter(Boolean)
      .map((kv) => kv.split(/ (.*)/s)),
  );
}

export const readOr = (fallback, ...p) => (fs.existsSync(path.join(...p)) ? fs.readFileSync(path.join(...p), "utf8") : fallback);

/** Each client's summary in LOGDIR (client-NODE.jsonl); a missing one or a reset is a problem. */
export function readTraffic(logDir, nodes, problems) {
  const traffic = {};
  for (const n of nodes) {
    const lines = readOr("", logDir, `client-${n}.jsonl`).split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const summary = lines.find((l) => l.event === "summary")?.summary;
    if (!summary) {
      problems.push(`client-${n} wrote no summary`);
      continue;
    }
    traffic[n] = summary;
    for (const [flow, s] of Object.entries(summary.hold)) {
      if (s.resets) problems.push(`client-${n} ${flow}: ${s.resets} held connection(s) reset`);
    }
  }
  return traffic;
}

/** Every pod with addresses: its namespace/name, node, addresses and uid. */
export const podNet = (items) =>
  items
    .filter((p) => !p.spec.hostNetwork && p.status.podIPs?.length)
    .map((p) => ({ key: `${p.metadata.namespace}/${p.metadata.name}`, node: p.spec.nodeName, ips: p.status.podIPs.map((x) => x.ip), uid: p.metadata.uid }));

/** A node's IPAM store as the snapshot listed it (ipam-store-NODE.tsv): address and owner. */
export const storeOf = (snapDir, n) =>
  readOr("", snapDir, `ipam-store-${n}.tsv`)
    .split("\n")
    .filter((l) => /^[0-9a-f.:]+\t/.test(l))
    .map((l) => {
      const [ip, owner] = l.split("\t");
      return { ip, owner: owner.trim() };
    });

/**
 * The addresses of a snapshot: any held by two pods, and per node what its store reserves that
 * no pod holds (leaked) and what a pod holds that its store does not reserve.
 */
export function addressCheck(snapDir, nodes) {
  const pods = podNet(JSON.parse(fs.readFileSync(path.join(snapDir, "pods.json"), "utf8")).items);
  const holders = new Map();
  for (const p of pods) for (const ip of p.ips) holders.set(ip, [...(holders.get(ip) ?? []), p.key]);
  const duplicated = [...holders].filter(([, keys]) => keys.length > 1).map(([ip, keys]) => `${ip}: ${keys.join(", ")}`);
  const perNode = {};
  for (const n of nodes) {
    const store = storeOf(snapDir, n);
    const podIPs = new Set(pods.filter((p) => p.node === n).flatMap((p) => p.ips));
    const stored = new Set(store.map((s) => s.ip));
    perNode[n] = {
      reserved: store.length,
      podAddresses: podIPs.size,
      leaked: store.filter((s) => !podIPs.has(s.ip)).map((s) => `${s.ip} (${s.owner})`),
      unreserved: [...podIPs].filter((ip) => !stored.has(ip)),
    };
  }
  return { pods: pods.length, duplicated, perNode };
}

/** The problems of an addressCheck, each prefixed with `when`. */
export function addressProblems(when, a) {
  const out = a.duplicated.map((d) => `${when}: address held twice: ${d}`);
  for (const [n, s] of Object.entries(a.perNode)) {
    if (s.leaked.length) out.push(`${when}: ${n} reserves addresses no pod holds: ${s.leaked.join("; ")}`);
    if (s.unreserved.length) out.push(`${when}: ${n} has pod addresses its store does not reserve: ${s.unreserved.join(", ")}`);
  }
  return out;
}

/** Markdown rows: the held connections' and the new connections' tables of `traffic`. */
export function trafficTables(traffic) {
  const md = [];
  const row = (...cells) => md.push(`| ${cells.join(" | ")} |`);
  md.push("Held connections (4 per flow, a line each way every 100 ms):", "");
  row("client on", "flow", "target", "opened", "resets", "stalls > 1 s", "longest echo gap (ms)");
  row("---", "---", "---", "---", "---", "---", "---");
  for (const [n, s] of Object.entries(traffic)) {
    for (const [flow, h] of Object.entries(s.hold)) row(n, flow, h.target, h.opened, h.resets, h.stalls, h.maxEchoGapMs);
  }
  md.push("", "New connections (one per 100 ms per flow, 1 s timeout):", "");
  row("client on", "flow", "target", "attempts", "failures", "outage windows");
  row("---", "---", "---", "---", "---", "---");
  for (const [n, s] of Object.entries(traffic)) {
    for (const [flow, d] of Object.entries(s.dial)) {
      const w = d.windows.map((x) => `${x.from} for ${x.ms} ms (${x.failures})`).join("; ") || "none";
      row(n, flow, d.target, d.attempts, d.failures, w);
    }
  }
  return md;
}
