// ./scripts/bench ipam: twill-ipam against the reference host-local, side by side in one run.
//
// N pods, each ADDed then DELed by both plugins and by the start floor (dist/bin/noop, compiled
// like twill-ipam, doing nothing) taking turns, so a change in machine load hits all three
// alike. Each plugin has its own store in a temp dir and the same /22 range, so the store grows
// to N reservations during the ADDs and empties during the DELs (host-local's DEL reads every
// file; twill-ipam's reads its index). Plugins start with a clean environment, as a runtime
// starts them. IPAM touches no network state, so no namespace is needed.
// Options: --pods N (200).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const argv = process.argv.slice(2);
const pods = Number(argv[argv.indexOf("--pods") + 1] || 200) || 200;

interface Target {
  label: string;
  binary: string;
  /** Where its store lives; none for the floor. */
  dataDir?: string;
}

const dir = mkdtempSync(join(tmpdir(), "twill-bench-ipam-"));
const targets: Target[] = [
  { label: "twill-ipam", binary: join(ROOT, "dist/bin/twill-ipam"), dataDir: join(dir, "twill-ipam") },
  { label: "host-local (reference)", binary: "/usr/lib/cni/host-local", dataDir: join(dir, "host-local") },
  { label: "no-op start floor", binary: join(ROOT, "dist/bin/noop") },
];
const samples = new Map(targets.map((t) => [t.label, { ADD: [] as number[], DEL: [] as number[] }]));

function invoke(t: Target, command: "ADD" | "DEL", id: string): number {
  const conf = JSON.stringify({
    cniVersion: "1.0.0", name: "bench", type: "ipam",
    ipam: { type: "ipam", dataDir: t.dataDir ?? dir, ranges: [[{ subnet: "10.100.0.0/22" }]] },
  });
  const env = {
    PATH: "/usr/sbin:/usr/bin:/sbin:/bin", CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: "/var/run/netns/bench",
    CNI_IFNAME: "eth0", CNI_PATH: "/usr/lib/cni", TWILL_LOG_FILE: join(dir, "twill.log"),
  };
  const t0 = process.hrtime.bigint();
  const r = spawnSync(t.binary, [], { input: conf, env });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0 && t.dataDir) throw new Error(`${t.label} ${command} ${id}: ${r.stdout}${r.stderr}`);
  return ms;
}

/** Reservation files in a plugin's store: checks that each ADD and DEL really did its work. */
const reserved = (t: Target) => readdirSync(join(t.dataDir!, "bench")).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)).length;

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

try {
  for (const command of ["ADD", "DEL"] as const) {
    for (let i = 0; i < pods; i++) {
      // Rotate who goes first, so none always runs on a warmer cache.
      for (let k = 0; k < targets.length; k++) {
        const t = targets[(i + k) % targets.length]!;
        samples.get(t.label)![command].push(invoke(t, command, `pod${i}`));
      }
    }
    for (const t of targets.filter((x) => x.dataDir)) {
      const want = command === "ADD" ? pods : 0;
      if (reserved(t) !== want) throw new Error(`${t.label}: ${reserved(t)} reservations after the ${command}s, expected ${want}`);
    }
  }

  const row = (label: string) => {
    const s = samples.get(label)!;
    return [quantile(s.ADD, 0.5), quantile(s.ADD, 0.95), quantile(s.DEL, 0.5), quantile(s.DEL, 0.95)];
  };
  const [ours, ref, floor] = targets.map((t) => row(t.label)) as [number[], number[], number[]];
  const cell = (x: string) => x.padStart(9);
  const ms = (x: number) => cell(x.toFixed(2));
  const line = (label: string, cells: string[]) => console.log(`${label.padEnd(26)}${cells.join("")}`);

  console.log(`twill-ipam vs host-local: ${pods} ADDs then ${pods} DELs each, interleaved with the start floor; ms, clean environment\n`);
  line("", ["ADD med", "ADD p95", "DEL med", "DEL p95"].map(cell));
  for (const t of targets) line(t.label, row(t.label).map(ms));
  line("ratio twill / reference", ours.map((x, i) => cell(`${(x / ref[i]!).toFixed(2)}x`)));
  line("twill - floor", [ms(ours[0]! - floor[0]!), cell(""), ms(ours[2]! - floor[2]!), cell("")]);
  line("reference - floor", [ms(ref[0]! - floor[0]!), cell(""), ms(ref[2]! - floor[2]!), cell("")]);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
