// The figures of scripts/upgrade-test from what it collected in --dir: the clients' event logs,
// the twill pods' timeline, and the snapshots before and after the upgrade (pods, Nodes,
// Leases, each node's subnet file, IPAM store and twilld's own reports). Writes report.md and
// report.json there; exits 1 when a held connection was reset, an address leaked or was held
// twice, a pod's address changed, or a node's subnet file changed.
import fs from "node:fs";
import path from "node:path";
import { addressCheck, addressProblems, parseArgs, podNet, readTraffic, trafficTables } from "../cluster/workload-figures.mjs";

const args = parseArgs(process.argv.slice(2));
const dir = args.dir;
const nodes = args.nodes.split(" ");
const read = (...p) => fs.readFileSync(path.join(dir, ...p), "utf8");
const readOr = (fallback, ...p) => (fs.existsSync(path.join(dir, ...p)) ? read(...p) : fallback);
const json = (...p) => JSON.parse(read(...p));
const ms = (a, b) => new Date(b).getTime() - new Date(a).getTime();

const applyAt = read("logs", "apply.time").trim();
const rolledAt = read("logs", "rollout-done.time").trim();
const problems = [];

// Traffic: each client's summary and its failure events.
const traffic = readTraffic(path.join(dir, "logs"), nodes, problems);

// The rollout: when each twill pod went away and its successor became ready.
const podsBefore = json("before", "pods.json").items;
const podsAfter = json("after", "pods.json").items;
const twillPods = (items) => items.filter((p) => p.metadata.namespace === "kube-system" && p.metadata.labels?.["app.kubernetes.io/name"] === "twill");
const oldTwill = new Map(twillPods(podsBefore).map((p) => [p.metadata.name, p.spec.nodeName]));
const timeline = readOr("", "logs", "twill-pods.log")
  .split("\n")
  .filter(Boolean)
  .map((l) => {
    const [t, name, node, phase, ready, deleting] = l.split(/\s+/);
    return { t, name, node, phase, ready: ready === "true", deleting: deleting !== "<none>" };
  });
const rollout = nodes.map((n) => {
  const old = [...oldTwill].find(([, node]) => node === n)?.[0];
  const oldGone = timeline.find((e) => e.name === old && e.deleting)?.t ?? null;
  const fresh = timeline.find((e) => e.node === n && !oldTwill.has(e.name) && e.ready && e.phase === "Running");
  return { node: n, oldPod: old, oldTerminating: oldGone, newPod: fresh?.name ?? null, newReady: fresh?.t ?? null };
});

// Addresses: every pod's before and after, each node's store, duplicates and leaks.
const addresses = { before: addressCheck(path.join(dir, "before"), nodes), after: addressCheck(path.join(dir, "after"), nodes) };
for (const [when, a] of Object.entries(addresses)) problems.push(...addressProblems(when, a));
const afterByKey = new Map(podNet(podsAfter).map((p) => [p.key, p]));
const kept = podNet(podsBefore).filter((p) => afterByKey.get(p.key)?.uid === p.uid);
for (const p of kept) {
  const now = afterByKey.get(p.key).ips.join(",");
  if (now !== p.ips.join(",")) problems.push(`${p.key}: addresses ${p.ips.join(",")} became ${now}`);
}
const newPods = podNet(podsAfter).filter((p) => p.key.startsWith("upgrade/after-"));
if (newPods.length !== nodes.length) problems.push(`${newPods.length} of ${nodes.length} pods created after the upgrade got addresses`);

// What the old version wrote, read by the new one.
// The subnet file's content compared without its format marker, which a newer twilld may add
// (a v0.1.0 file has none: format 1); the markers are reported beside.
const subnetFile = (when, n) => {
  const text = readOr("", when, `subnet-${n}.json`).trim();
  try {
    const { format = null, ...info } = JSON.parse(text);
    return { format, info: JSON.stringify(info) };
  } catch {
    return { format: null, info: `unreadable: ${text}` };
  }
};
const subnetFiles = nodes.map((n) => {
  const [before, after] = [subnetFile("before", n), subnetFile("after", n)];
  const same = before.info === after.info;
  if (!same) problems.push(`${n}: subnet file changed: ${before.info} -> ${after.info}`);
  return { node: n, formatBefore: before.format, formatAfter: after.format, before: before.info, after: after.info, same };
});
const twillAnnotations = (file) =>
  Object.fromEntries(
    json(file, "nodes.json").items.map((nd) => [
      nd.metadata.name,
      Object.fromEntries(Object.entries(nd.metadata.annotations ?? {}).filter(([k]) => k.startsWith("twill.dev/"))),
    ]),
  );
const annotations = { before: twillAnnotations("before"), after: twillAnnotations("after") };
const podCIDRs = Object.fromEntries(json("after", "nodes.json").items.map((nd) => [nd.metadata.name, nd.spec.podCIDRs ?? []]));
const leases = (when) =>
  json(when, "leases.json")
    .items.filter((l) => l.metadata.labels?.["app.kubernetes.io/managed-by"] === "twilld" || l.metadata.namespace === "twill-system")
    .map((l) => `${l.metadata.namespace}/${l.metadata.name} holder=${l.spec.holderIdentity}`);

// Dial outages as windows, with the time since the manifest was applied.
const windows = [];
for (const [n, s] of Object.entries(traffic)) {
  for (const [flow, d] of Object.entries(s.dial)) {
    for (const w of d.windows) windows.push({ client: n, flow, from: w.from, sinceApplyMs: ms(applyAt, w.from), ms: w.ms, failures: w.failures });
  }
}

const report = { from: args.from, oldImage: args["old-image"], newImage: args["new-image"], applyAt, rolledAt, rolloutMs: ms(applyAt, rolledAt), rollout, traffic, windows, addresses, newPods, subnetFiles, annotations, podCIDRs, leases: { before: leases("before"), after: leases("after") }, problems };
fs.writeFileSync(path.join(dir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);

const md = [];
const row = (...cells) => md.push(`| ${cells.join(" | ")} |`);
md.push(`# Rolling upgrade ${args.from} (${args["old-image"]}) -> ${args["new-image"]}`, "");
md.push(`kubectl apply at ${applyAt}; rollout status done at ${rolledAt} (${(report.rolloutMs / 1000).toFixed(1)} s).`, "");
md.push("## Rollout", "");
row("node", "old pod", "old pod terminating", "new pod", "new pod ready");
row("---", "---", "---", "---", "---");
for (const r of rollout) row(r.node, r.oldPod, r.oldTerminating ?? "-", r.newPod ?? "-", r.newReady ?? "-");
md.push("", "## Traffic", "");
md.push(...trafficTables(traffic));
md.push("", "## Addresses", "");
row("", "pods with addresses", "held twice", ...nodes.flatMap((n) => [`${n} reserved`, `${n} leaked`, `${n} unreserved`]));
row("---", "---", "---", ...nodes.flatMap(() => ["---", "---", "---"]));
for (const [when, a] of Object.entries(addresses)) {
  row(when, a.pods, a.duplicated.length, ...nodes.flatMap((n) => [a.perNode[n].reserved, a.perNode[n].leaked.length, a.perNode[n].unreserved.length]));
}
md.push("", `Pods that lived through the upgrade: ${kept.length}, addresses unchanged unless listed under problems.`);
md.push(`Pods created after it: ${newPods.map((p) => `${p.key} on ${p.node}: ${p.ips.join(", ")}`).join("; ") || "none"}.`, "");
md.push("## State the old version wrote", "");
for (const s of subnetFiles) {
  md.push(`- ${s.node} /run/twill/subnet.json ${s.same ? "unchanged" : "CHANGED"} (format marker ${s.formatBefore ?? "absent"} -> ${s.formatAfter ?? "absent"}): \`${s.after}\``);
}
md.push(`- Node spec.podCIDRs: ${JSON.stringify(podCIDRs)}`);
const annotationChanges = nodes.map((n) => {
  const b = annotations.before[n] ?? {};
  const a = annotations.after[n] ?? {};
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])].filter((k) => b[k] !== a[k]);
  return `${n}: ${keys.length ? keys.map((k) => `${k} ${JSON.stringify(b[k] ?? null)} -> ${JSON.stringify(a[k] ?? null)}`).join("; ") : "unchanged"}`;
});
md.push(`- twill.dev/ annotations: ${annotationChanges.join(" | ")}`);
md.push(`- twill's Leases before: ${report.leases.before.join(", ") || "none"}; after: ${report.leases.after.join(", ") || "none"}`, "");
for (const when of ["before", "after"]) {
  for (const n of nodes) {
    for (const cmd of ["status", "ipam-list", "ipam-check"]) {
      md.push(`<details><summary>${when}: ${n} twilld ${cmd.replace("-", " ")}</summary>`, "", "```", readOr("(missing)", when, `twilld-${cmd}-${n}.txt`).trimEnd(), "```", "</details>", "");
    }
  }
}
md.push("## Problems", "", ...(problems.length ? problems.map((p) => `- ${p}`) : ["none"]), "");
fs.writeFileSync(path.join(dir, "report.md"), md.join("\n"));
process.stdout.write(`${md.slice(0, md.indexOf("## State the old version wrote")).join("\n")}\n`);
process.stdout.write(`problems: ${problems.length ? `\n${problems.join("\n")}` : "none"}\nreport: ${path.join(dir, "report.md")}\n`);
process.exit(problems.length ? 1 : 0);
