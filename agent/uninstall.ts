import { existsSync, readdirSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { NodeKernel } from "../shared/kernel/node-kernel.js";
import type { Link } from "../shared/kernel/types.js";
import type { Logger } from "../shared/log.js";
import { shutdownBird } from "./backend/bgp/bird-supervisor.js";
import { WG_DEVICE } from "./backend/wireguard/wireguard-go.js";
import { errorMessage } from "./errors.js";

/**
 * `twilld uninstall`: what twill put on a node, taken off, once the DaemonSet is gone and no
 * pod uses twill's network any more. The plan is a pure function of what the node has (links,
 * twill's routes, nftables tables, files), so it is tested on plain data and shown by
 * `--dry-run`; it refuses while pods are still attached to the bridge, since every step would
 * cut them off. What stays on purpose (README): the forwarding sysctls, br_netfilter, the Node
 * annotations.
 */

export interface UninstallPaths {
  cniBinDir: string;
  cniConfDir: string;
  subnetFile: string;
  stateDir: string;
  ipamStore: string;
  bgpDir: string;
  logDir: string;
  /** The wireguard backend's private key: its directory goes, and that directory's parent when it is twill's own (/var/lib/twill). */
  wireguardKey: string;
}

export interface NodeState {
  links: readonly Link[];
  /** Destinations of twill's routes (protocol 150). */
  routes: readonly string[];
  /** nftables tables as `family name`. */
  tables: readonly string[];
  /** Which of the candidate paths exist. */
  exists: (path: string) => boolean;
  /** Names in a directory (none when it is missing). */
  list: (dir: string) => string[];
}

export type UninstallStep =
  | { kind: "link"; name: string; what: string }
  | { kind: "routes"; count: number }
  | { kind: "table"; family: string; name: string }
  | { kind: "path"; path: string };

export interface UninstallPlan {
  steps: UninstallStep[];
  /** Why it must not run now (pods attached); empty when it may. */
  refusals: string[];
}

/** Names twill gives its tables: the agent's, NetworkPolicy's, the wireguard backend's underlay filter, and the plugin's ipMasq ones. */
const TWILL_TABLE = /^(twill|twill-policy|twill-wg|twill-masq-[A-Za-z0-9_-]+)$/;
/** twill's VTEP: `twill.<VNI>`. */
const VTEP = /^twill\.\d+$/;
const CONFLIST = /^\.?10-twill\.conflist(\.tmp)?$/;

export function planUninstall(state: NodeState, paths: UninstallPaths, bridge: string): UninstallPlan {
  const steps: UninstallStep[] = [];
  const refusals: string[] = [];
  const ports = state.links.filter((l) => l.master === bridge);
  if (ports.length > 0) {
    refusals.push(
      `${ports.length} pod interface(s) still attached to ${bridge} (${ports.slice(0, 5).map((l) => l.name).join(", ")}${ports.length > 5 ? ", ..." : ""}): ` +
        "remove the pods (drain the node) first, or pass --force to cut them off",
    );
  }
  const bridgeLink = state.links.find((l) => l.name === bridge);
  if (bridgeLink) {
    if (bridgeLink.kind === "bridge") steps.push({ kind: "link", name: bridge, what: "the pod bridge" });
    else refusals.push(`"${bridge}" is a ${bridgeLink.kind ?? "device of unknown kind"}, not twill's bridge: left alone`);
  }
  for (const l of state.links) if (VTEP.test(l.name) && l.kind === "vxlan") steps.push({ kind: "link", name: l.name, what: "the VXLAN device (with its FDB and neighbour entries)" });
  // wireguard-go's TUN device, or the kernel's: wireguard-go exits when its device is deleted.
  for (const l of state.links) if (l.name === WG_DEVICE && (l.kind === "tun" || l.kind === "wireguard")) steps.push({ kind: "link", name: l.name, what: "the WireGuard device" });
  if (state.routes.length > 0) steps.push({ kind: "routes", count: state.routes.length });
  for (const t of state.tables) {
    const [family, name] = t.split(" ");
    if (family === "inet" && name && TWILL_TABLE.test(name)) steps.push({ kind: "table", family, name });
  }
  const files = [
    join(paths.cniBinDir, "twill"),
    join(paths.cniBinDir, "twill-ipam"),
    ...state.list(paths.cniConfDir).filter((n) => CONFLIST.test(n)).map((n) => join(paths.cniConfDir, n)),
    paths.subnetFile,
    paths.bgpDir,
    paths.ipamStore,
    paths.stateDir,
    paths.logDir,
  ];
  // The subnet file's and the key directory's parents when they are twill's own (/run/twill, /var/lib/twill).
  if (basename(dirname(paths.subnetFile)) === "twill") files.push(dirname(paths.subnetFile));
  const keyDir = dirname(paths.wireguardKey);
  if (basename(keyDir) === "wireguard") files.push(keyDir);
  if (basename(dirname(keyDir)) === "twill") files.push(dirname(keyDir));
  for (const path of [...new Set(files)]) {
    if (!state.exists(path)) continue;
    if (twillPath(path)) steps.push({ kind: "path", path });
    else refusals.push(`${path} does not look like twill's (no "twill" in its path): left alone`);
  }
  return { steps, refusals };
}

/**
 * A path uninstall may remove: absolute, below the root by two levels at least, and named for
 * twill somewhere (`/var/lib/twill`, `/run/twill/bird`, `/opt/cni/bin/twill-ipam`): a flag
 * pointing elsewhere (`--state-dir /`) must never become `rm -rf /`.
 */
export function twillPath(path: string): boolean {
  const parts = path.split("/");
  return path.startsWith("/") && !parts.includes("..") && parts.filter(Boolean).length >= 2 && parts.some((p) => p.includes("twill"));
}

export const describeStep = (s: UninstallStep): string =>
  s.kind === "link" ? `delete link ${s.name} (${s.what})`
    : s.kind === "routes" ? `delete twill's ${s.count} route(s) (protocol 150)`
      : s.kind === "table" ? `delete nftables table ${s.family} ${s.name}`
        : `remove ${s.path}`;

export interface UninstallResult {
  plan: UninstallPlan;
  done: string[];
  failed: string[];
  bird: string | null;
}

/** Reads the node, plans, and (unless `dryRun`, or refused without `force`) applies every step on its own. */
export async function uninstallNode(kernel: NodeKernel, paths: UninstallPaths, o: { bridge: string; dryRun: boolean; force: boolean; logger: Logger }): Promise<UninstallResult> {
  const [links, routes, tablesJson] = await Promise.all([kernel.links(), kernel.ownedRoutes(), kernel.nft(["-j", "list", "tables"], "list nftables tables")]);
  const tables = nftTables(tablesJson);
  const plan = planUninstall({ links, routes: routes.map((r) => r.dst), tables, exists: existsSync, list: listDir }, paths, o.bridge);
  const result: UninstallResult = { plan, done: [], failed: [], bird: null };
  if (o.dryRun || (plan.refusals.length > 0 && !o.force)) return result;
  // BIRD first: it tells its peers, which withdraw this node's subnets.
  const bird = await shutdownBird(paths.bgpDir);
  result.bird = bird.stopped ? "shut BIRD down" : bird.error;
  for (const step of plan.steps) {
    try {
      if (step.kind === "link") await kernel.deleteLink(step.name, step.what);
      else if (step.kind === "routes") {
        const refused = await kernel.applyDatapath(routes.map((entry) => ({ op: "del" as const, kind: "route" as const, entry })));
        if (refused.length) throw new Error(refused.map((r) => r.error.message).join("; "));
      } else if (step.kind === "table") await kernel.nft(["delete", "table", step.family, step.name], `delete nftables table ${step.family} ${step.name}`);
      else rmSync(step.path, { recursive: true, force: true });
      result.done.push(describeStep(step));
    } catch (err) {
      result.failed.push(`${describeStep(step)}: ${errorMessage(err)}`);
    }
  }
  o.logger.info("Uninstalled twill from this node", { done: result.done.length, failed: result.failed.length });
  return result;
}

/** `nft -j list tables` → `family name` per table. */
export function nftTables(json: string): string[] {
  const parsed = JSON.parse(json) as { nftables?: { table?: { family: string; name: string } }[] };
  return (parsed.nftables ?? []).flatMap((e) => (e.table ? [`${e.table.family} ${e.table.name}`] : []));
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export function renderUninstall(r: UninstallResult, o: { dryRun: boolean; force: boolean }): string {
  const out: string[] = [];
  for (const why of r.plan.refusals) out.push(`${o.force ? "Ignored (--force)" : "Refused"}: ${why}`);
  if (o.dryRun || (r.plan.refusals.length > 0 && !o.force)) {
    out.push(r.plan.steps.length ? "Would:" : "Nothing of twill's is on this node.");
    for (const s of r.plan.steps) out.push(`  ${describeStep(s)}`);
    return out.join("\n") + "\n";
  }
  if (r.bird) out.push(`BIRD: ${r.bird}`);
  for (const d of r.done) out.push(`done: ${d}`);
  for (const f of r.failed) out.push(`FAILED: ${f}`);
  if (r.plan.steps.length === 0) out.push("Nothing of twill's is on this node.");
  return out.join("\n") + "\n";
}
