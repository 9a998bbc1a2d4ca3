// ./scripts/bench ipam: twill-ipam against the reference host-local, side by side in one run.
//
// N pods, each ADDed then DELed by both plugins and by the start floor (dist/bin/noop, compiled
// like twill-ipam) taking turns, so a change in machine load hits all three alike. Each plugin
// has its own store in a temp dir and the same /22 range. Plugins start with a clean
// environment, as a runtime starts them. IPAM touches no network state, so no namespace is
// needed. Options: --pods N (200).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const argv = process.argv.slice(2);
const pods = Number(argv[argv.indexOf("--pods") + 1] || 200) || 200;

const targets = [
  { label: "twill-ipam", binary: join(ROOT, "dist/bin/twill-ipam") },
  { label: "host-local (reference)", binary: "/usr/lib/cni/host-local" },
  { label: "no-op start floor", binary: join(ROOT, "dist/bin/noop") },
];

const dir = mkdtempSync(join(tmpdir(), "twill-bench-ipam-"));
const samples = new Map<string, { add: number[]; del: number[] }>(targets.map((t) => [t.label, { add: [], del: [] }]));

function invoke(binary: string, command: string, id: string, dataDir: string): number {
  const conf = JSON.stringify({
    cniVersion: "1.0.0", name: "bench", type: "ipam",
    ipam: { type: "ipam", dataDir, ranges: [[{ subnet: "10.100.0.0/22" }]] },
  });
  const env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: "/var/run/netns/bench", CNI_IFNAME: "eth0", CNI_PATH: "/usr/lib/cni", TWILL_LOG_FILE: join(dir, "log") };
  const t0 = process.hrtime.bigint();
  const r = spawnSync(binary, [], { input: conf, env });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0 && !binary.endsWith("noop")) throw new Error(`${binary} ${command} ${id}: ${r.stdout}${r.stderr}`);
  return ms;
}

try {
  for (const command of ["ADD", "DEL"] as const) {
    for (let i = 0; i < pods; i++) {
      // Rotate who goes first, so none always runs on a warmer cache.
      for (let k = 0; k < targets.length; k++) {
        const t = targets[(i + k) % targets.length]!;
        const ms = invoke(t.binary, command, `c${i}`, join(dir, t.label.split(" ")[0]!));
        samples.get(t.label)![command === "ADD" ? "add" : "del"].push(ms);
      }
    }
  }
  const quantile = (xs: number[], q: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  };
  const row = (label: string) => {
    const s = samples.get(label)!;
    return { addMed: quantile(s.add, 0.5), addP95: quantile(s.add, 0.95), delMed: quantile(s.del, 0.5), delP95: quantile(s.del, 0.95) };
  };
  const ours = row(targets[0]!.label);
  const ref = row(targets[1]!.label);
  const floor = row(targets[2]!.label);
  const f = (x: number) => x.toFixed(2).padStart(8);
  console.log(`twill-ipam vs host-local, ${pods} ADD + ${pods} DEL each, interleaved (ms)\n`);
  console.log(`${"".padEnd(24)} ${"ADD med".padStart(8)} ${"ADD p95".padStart(8)} ${"DEL med".padStart(8)} ${"DEL p95".padStart(8)}`);
  for (const t of targets) {
    const r = row(t.label);
    console.log(`${t.label.padEnd(24)} ${f(r.addMed)} ${f(r.addP95)} ${f(r.delMed)} ${f(r.delP95)}`);
  }
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`.padStart(8);
  console.log(`${"ratio twill/reference".padEnd(24)} ${ratio(ours.addMed, ref.addMed)} ${ratio(ours.addP95, ref.addP95)} ${ratio(ours.delMed, ref.delMed)} ${ratio(ours.delP95, ref.delP95)}`);
  console.log(`${"own work (med - floor)".padEnd(24)} ${f(ours.addMed - floor.addMed)} ${"".padStart(8)} ${f(ours.delMed - floor.delMed)}`);
  console.log(`${"reference - floor".padEnd(24)} ${f(ref.addMed - floor.addMed)} ${"".padStart(8)} ${f(ref.delMed - floor.delMed)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
