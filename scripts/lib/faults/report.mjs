// The figures of scripts/fault-test from what it collected in --dir, a directory per scenario
// (scripts/lib/faults/observe.sh says what each holds): the clients' summaries, the pods made,
// the snapshots before and after, the scenario's own checks and facts, and what an operator
// sees (twilld's log lines, its metrics, `twilld status`). Writes report.md and report.json;
// exits 1 when any check failed.
import fs from "node:fs";
import path from "node:path";
import { addressCheck, addressProblems, parseArgs, podNet, readOr, readTraffic, trafficTables } from "../cluster/workload-figures.mjs";

const args = parseArgs(process.argv.slice(2));
const dir = args.dir;
const trafficNodes = args.nodes.split(" ");
const scenarios = readOr("", dir, "scenarios").trim().split(/\s+/).filter(Boolean);
const tsv = (...p) =>
  readOr("", ...p)
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split("\t"));

/** twilld's log lines (CRI format: time, stream, tag, JSON): counted by level and message. */
function twilldLog(file) {
  const counts = new Map();
  const notable = [];
  for (const line of readOr("", file).split("\n").filter(Boolean)) {
    const json = line.replace(/^\S+ \S+ \S+ /, "");
    let entry;
    try {
      entry = JSON.parse(json);
    } catch {
      continue;
    }
    const key = `${entry.level ?? "?"}: ${entry.msg}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    if (entry.level === "warn" || entry.level === "error" || /^(Peer (left|joined|changed)|Acquired lease|Wrote subnet file|Released|Lease lost)/.test(entry.msg ?? "")) {
      notable.push(`${line.split(" ")[0]} ${json}`);
    }
  }
  return { counts: [...counts].sort((a, b) => b[1] - a[1]), notable };
}

/** twill_* metrics of a snapshot as name{labels} -> value. */
const metrics = (file) =>
  new Map(
    readOr("", file)
      .split("\n")
      .filter(Boolean)
      .map((l) => {
        const at = l.lastIndexOf(" ");
        return [l.slice(0, at), l.slice(at + 1)];
      }),
  );
const watched = /^twill_(ready|lease_held|peers|peer_errors|datastore_errors_total|watch_restarts_total|reconcile_errors_total|lease_renewals_total|ipam_reservations|ipam_leak_suspects|ipam_leaks_released_total|datastore_unreadable_records|subnet_file_repairs_total|stale_pods)\b/;

const results = [];
for (const name of scenarios) {
  const sdir = path.join(dir, name);
  const problems = [];
  const traffic = readTraffic(sdir, trafficNodes, problems);
  const strict = readOr("pod-ipv4 pod-ipv6 service", sdir, "strict-flows").trim().split(/\s+/).filter(Boolean);
  const perNode = {};
  for (const [n, s] of Object.entries(traffic)) {
    const holds = Object.values(s.hold);
    const dials = Object.entries(s.dial);
    const windows = dials.flatMap(([, d]) => d.windows);
    perNode[n] = {
      held: holds.reduce((a, h) => a + h.connections, 0),
      resets: holds.reduce((a, h) => a + h.resets, 0),
      stalls: holds.reduce((a, h) => a + h.stalls, 0),
      attempts: dials.reduce((a, [, d]) => a + d.attempts, 0),
      failures: dials.reduce((a, [, d]) => a + d.failures, 0),
      longestMs: Math.max(0, ...windows.map((w) => w.ms)),
      byFlow: Object.fromEntries(dials.map(([f, d]) => [f, d.failures])),
    };
    for (const [flow, d] of dials) {
      if (d.failures && strict.includes(flow)) problems.push(`client on ${n}, ${flow}: ${d.failures} new connection(s) failed (longest window ${Math.max(...d.windows.map((w) => w.ms))} ms)`);
    }
  }
  const maxWindow = Number(readOr("0", sdir, "max-window-ms").trim());
  for (const [n, s] of Object.entries(perNode)) {
    if (maxWindow && s.longestMs > maxWindow) problems.push(`client on ${n}: new connections failed for ${s.longestMs} ms in a row, longer than ${maxWindow} ms`);
  }
  const nodesOf = (when) => readOr("", sdir, when, "nodes.txt").trim().split(/\s+/).filter(Boolean);
  const addresses = {};
  for (const when of ["before", "after"]) {
    if (!fs.existsSync(path.join(sdir, when, "pods.json"))) continue;
    addresses[when] = addressCheck(path.join(sdir, when), nodesOf(when));
    problems.push(...addressProblems(when, addresses[when]));
  }
  // Pods that lived through the scenario: the same addresses, and how often they restarted.
  const podsOf = (when) => JSON.parse(readOr('{"items":[]}', sdir, when, "pods.json")).items;
  const before = podsOf("before");
  const after = new Map(podsOf("after").map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]));
  const restarts = (p) => (p.status.containerStatuses ?? []).reduce((a, c) => a + c.restartCount, 0);
  const lived = [];
  for (const p of before) {
    const key = `${p.metadata.namespace}/${p.metadata.name}`;
    const q = after.get(key);
    if (!q || q.metadata.uid !== p.metadata.uid) continue;
    const was = (p.status.podIPs ?? []).map((x) => x.ip).join(",");
    const now = (q.status.podIPs ?? []).map((x) => x.ip).join(",");
    if (!p.spec.hostNetwork && was !== now) problems.push(`${key}: addresses ${was} became ${now}`);
    const r = restarts(q) - restarts(p);
    lived.push({ key, node: p.spec.nodeName, restarts: r });
  }
  const podsMade = tsv(sdir, "pods.tsv").map(([pod, node, ready, secs, v4, v6, reach]) => ({ pod, node, ready, secs, v4, v6, reach }));
  const checks = tsv(sdir, "checks.tsv").map(([status, text]) => ({ status, text }));
  for (const c of checks) if (c.status !== "ok") problems.push(`check failed: ${c.text}`);
  const facts = tsv(sdir, "facts.tsv");
  const logs = Object.fromEntries(nodesOf("after").map((n) => [n, twilldLog(path.join(sdir, `twilld-${n}.log`))]));
  const metricChanges = {};
  for (const n of nodesOf("after")) {
    const [b, a] = [metrics(path.join(sdir, "before", `metrics-${n}.txt`)), metrics(path.join(sdir, "after", `metrics-${n}.txt`))];
    metricChanges[n] = [...new Set([...b.keys(), ...a.keys()])].filter((k) => watched.test(k) && b.get(k) !== a.get(k)).map((k) => `${k} ${b.get(k) ?? "-"} -> ${a.get(k) ?? "-"}`);
  }
  results.push({ name, strict, maxWindow, traffic, perNode, addresses, lived, podsMade, checks, facts, logs, metricChanges, problems, start: readOr("", sdir, "start.time").trim(), end: readOr("", sdir, "end.time").trim() });
}
fs.writeFileSync(path.join(dir, "report.json"), `${JSON.stringify({ image: args.image, results }, null, 2)}\n`);

const md = [];
const row = (...cells) => md.push(`| ${cells.join(" | ")} |`);
const secs = (a, b) => ((new Date(b).getTime() - new Date(a).getTime()) / 1000).toFixed(0);
md.push(`# Faults with traffic flowing (${args.image})`, "");
md.push(
  "A vxlan dual-stack cluster of scripts/cluster; traffic between node-1 and node-2 (a client on each: 4 held connections per flow echoing every 100 ms, one new connection per 100 ms per flow with a 1 s timeout, to the server on the other node over IPv4, IPv6 and a ClusterIP Service), a new client per scenario. The faults hit node-2 (node-removed: node-3).",
  "",
);
row("scenario", "time (s)", "held conns reset", ...trafficNodes.map((n) => `new conns failed, client on ${n} (longest window)`), "pods made (ok)", "held twice", "leaked after", "checks failed");
row("---", "---", "---", ...trafficNodes.map(() => "---"), "---", "---", "---", "---");
for (const r of results) {
  const leaked = Object.values(r.addresses.after?.perNode ?? {}).reduce((a, s) => a + s.leaked.length, 0);
  const dup = (r.addresses.before?.duplicated.length ?? 0) + (r.addresses.after?.duplicated.length ?? 0);
  const resets = Object.values(r.perNode).reduce((a, s) => a + s.resets, 0);
  const held = Object.values(r.perNode).reduce((a, s) => a + s.held, 0);
  row(
    r.name,
    r.start && r.end ? secs(r.start, r.end) : "-",
    `${resets} of ${held}`,
    ...trafficNodes.map((n) => (r.perNode[n] ? `${r.perNode[n].failures} of ${r.perNode[n].attempts} (${r.perNode[n].longestMs} ms)` : "-")),
    `${r.podsMade.length} (${r.podsMade.filter((p) => p.ready === "yes" && p.reach === "ok").length})`,
    dup,
    leaked,
    r.checks.filter((c) => c.status !== "ok").length,
  );
}
md.push("");
for (const r of results) {
  md.push(`## ${r.name}`, "", `From ${r.start} to ${r.end}. Flows that must not fail: ${r.strict.join(", ") || `none${r.maxWindow ? `; no outage longer than ${r.maxWindow} ms` : ""}`}.`, "");
  row("", "");
  row("---", "---");
  for (const [k, v] of r.facts) row(k, v.replace(/\|/g, "\\|"));
  for (const [n, s] of Object.entries(r.perNode)) {
    row(`client on ${n}: held connections reset, stalls > 1 s`, `${s.resets} of ${s.held}, ${s.stalls}`);
    row(`client on ${n}: new connections failed (by flow), longest window`, `${s.failures} of ${s.attempts} (${Object.entries(s.byFlow).map(([f, c]) => `${f} ${c}`).join(", ")}), ${s.longestMs} ms`);
  }
  const made = r.podsMade;
  row("pods made (Ready, both addresses, reach)", `${made.filter((p) => p.ready === "yes" && p.reach === "ok").length} of ${made.length}; seconds to Ready ${made.length ? `${Math.min(...made.map((p) => Number(p.secs) || 0))}-${Math.max(...made.map((p) => Number(p.secs) || 0))}` : "-"}`);
  for (const when of ["before", "after"]) {
    const a = r.addresses[when];
    if (!a) continue;
    row(`addresses ${when}`, `${a.pods} pods, ${a.duplicated.length} held twice; ${Object.entries(a.perNode).map(([n, s]) => `${n} ${s.reserved} reserved, ${s.leaked.length} leaked, ${s.unreserved.length} unreserved`).join("; ")}`);
  }
  const restarted = r.lived.filter((p) => p.restarts > 0);
  row("pods that lived through it", `${r.lived.length}, addresses unchanged unless under problems; restarted: ${restarted.map((p) => `${p.key} ${p.restarts}x`).join(", ") || "none"}`);
  md.push("", "Checks:", "", ...r.checks.map((c) => `- ${c.status === "ok" ? "ok" : "**FAIL**"}: ${c.text}`), "");
  md.push(...trafficTables(r.traffic), "");
  const failedPods = made.filter((p) => p.ready !== "yes" || p.reach !== "ok");
  if (failedPods.length) md.push("Pods that did not get addresses or reach:", "", ...failedPods.map((p) => `- ${p.pod} on ${p.node}: Ready ${p.ready}, ${p.v4} ${p.v6}, reach ${p.reach}`), "");
  md.push("What an operator sees:", "");
  for (const [n, l] of Object.entries(r.logs)) {
    md.push(`- ${n} twilld log lines by level and message: ${l.counts.map(([k, c]) => `${c}x ${k}`).join("; ") || "none"}`);
    md.push(`- ${n} metrics changed: ${r.metricChanges[n].join(", ") || "none"}`);
  }
  md.push("");
  for (const [n, l] of Object.entries(r.logs)) {
    if (!l.notable.length) continue;
    const shown = l.notable.length > 40 ? [...l.notable.slice(0, 20), `... ${l.notable.length - 40} more ...`, ...l.notable.slice(-20)] : l.notable;
    md.push(`<details><summary>${n}: twilld's warnings, errors and peer/lease lines (${l.notable.length})</summary>`, "", "```", ...shown, "```", "</details>", "");
  }
  for (const n of trafficNodes) {
    const status = readOr("", dir, r.name, "after", `twilld-status-${n}.txt`).trimEnd();
    if (status) md.push(`<details><summary>${n}: twilld status after</summary>`, "", "```", status, "```", "</details>", "");
  }
  md.push("Problems:", "", ...(r.problems.length ? r.problems.map((p) => `- ${p}`) : ["none"]), "");
}
fs.writeFileSync(path.join(dir, "report.md"), md.join("\n"));
const all = results.flatMap((r) => r.problems.map((p) => `${r.name}: ${p}`));
process.stdout.write(`${md.slice(0, md.indexOf(`## ${results[0]?.name}`)).join("\n")}\n`);
process.stdout.write(`problems: ${all.length ? `\n${all.join("\n")}` : "none"}\nreport: ${path.join(dir, "report.md")}\n`);
process.exit(all.length ? 1 : 0);
