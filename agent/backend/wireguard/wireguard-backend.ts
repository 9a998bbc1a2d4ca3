import { Gauge } from "prom-client";
import type { NodeKernel, RefusedChange, WireguardLinkResult } from "../../../shared/kernel/node-kernel.js";
import type { RouteSpec } from "../../../shared/kernel/routes.js";
import { KernelError } from "../../../shared/kernel/types.js";
import { planVtepSettings, vtepAddress, type VtepChange } from "../../../shared/kernel/vxlan.js";
import { familyOfText } from "../../../shared/net/cidr.js";
import { systemClock, type Clock } from "../../clock.js";
import { ConfigError, errorMessage } from "../../errors.js";
import type { Backend, BackendData, LocalNode, NetworkConfig, NodeLease, PeerError, ReconcileReport, WireguardConfig } from "../../types.js";
import { hostGw } from "../host-gw.js";
import { canonical, underlayAddresses, type DaemonBackendDeps } from "../kind.js";
import { planDatapath } from "../plan.js";
import { loadOrCreatePrivateKey, type PrivateKey } from "./keys.js";
import { desiredPeers, planDevice, type DesiredPeer, type WireguardLease } from "./plan.js";
import { isEmptySet, type WireguardControl } from "./uapi.js";
import { ensureUnderlayFilter, underlayFilterRuleset } from "./underlay-filter.js";
import { checkTunDevice, WG_DEVICE, WireguardGoSupervisor, type WireguardGoOptions } from "./wireguard-go.js";
import { kernelWireguardClient } from "./kernel-client.js";
import { peerReports, writeWireguardReport, type WireguardMode } from "./wireguard-report.js";

/**
 * The wireguard backend (issue 24, docs/wireguard-design.md §8): one WireGuard device per node,
 * `twill-wg`, with a peer per node (its public key, endpoint its public IP and WireGuard
 * port, allowed IPs its pod subnets) and a route per peer subnet through the device (proto
 * 150, no gateway). Pod traffic between nodes leaves encrypted, as UDP to the peers' port.
 *
 * The device is the kernel's (a `wireguard` link, configured over generic netlink:
 * kernel-client.ts) or wireguard-go's (a TUN device, supervised by twilld: wireguard-go.ts,
 * configured over its UAPI socket); both are driven through one WireguardControl, on one plan.
 * `auto` keeps a wireguard-go that still runs the device (switching would cut every session),
 * else makes the kernel's device, else starts wireguard-go when the kernel has no WireGuard.
 * Packets for pods arriving in clear on the underlay device are dropped (underlay-filter.ts).
 * The private key is made on the first start and stays in its 0600 file (keys.ts); only the
 * public key is published. Every reconcile reads the device (UAPI get), plans the difference
 * (plan.ts) and sends it in one set, so a peer joining touches that peer alone.
 */

/** Outer IPv4 20 (IPv6 40) + UDP 8 + WireGuard's header 16 and tag 16; measured exact (design §6). */
export const wireguardOverhead = (underlayFamily: 4 | 6): number => (underlayFamily === 4 ? 60 : 80);

/** Where a node keeps its private key when twilld is not told: it must survive reboots (design §8). */
export const DEFAULT_WIREGUARD_KEY = "/var/lib/twill/wireguard/private.key";

/** This node's WireGuard settings, from twilld's flags. */
export interface WireguardNodeOptions {
  /** The private key's file (--wireguard-key). */
  keyFile: string;
  /** wireguard-go's socket directory bound over /run/wireguard (--wireguard-dir); null: /var/run/wireguard. */
  dir: string | null;
  /** Passed to the supervisor (tests: another binary, a namespace, a fake spawner). */
  supervisor?: Partial<WireguardGoOptions>;
  /** How long prepare waits for a started wireguard-go to answer on its socket. */
  readyMs?: number;
  /** Where each reconcile writes what `twilld status` shows (wireguard-report.ts); none when absent. */
  reportFile?: string;
  /** Userspace mode: throws why wireguard-go could not open its TUN device (tests: another check). */
  checkTun?: () => void;
  /** Kernel mode: the device's generic-netlink client (tests: another). */
  kernelControl?: () => WireguardControl & { close(): void };
}

const READY_MS = 10_000;
const READY_POLL_MS = 50;

/** The route to each admitted peer's subnets: through the device, no gateway (WireGuard picks the peer by allowed IPs). */
export function wireguardRoutes(peers: readonly DesiredPeer[]): RouteSpec[] {
  return peers.flatMap((p) => p.allowedIps.map((dst) => ({ dst: canonical(dst), via: "", dev: WG_DEVICE, onlink: false })));
}

/** The peers' leases as the planner reads them: their WireGuard data unchecked (the planner refuses what is wrong). */
export const wireguardLeases = (peers: readonly NodeLease[]): WireguardLease[] =>
  peers.map((p) => ({ nodeName: p.nodeName, publicIP: p.publicIP, subnets: p.subnets, publicKey: p.backend.wgPublicKey, port: p.backend.wgPort }));

/**
 * The device's MTU and addresses: the underlay's less WireGuard's overhead, and the node
 * subnets' first addresses, so the node's own packets to remote pods leave with a source its
 * peers allow (from the underlay address they would be dropped; design §4).
 */
export const deviceSpec = (local: LocalNode, subnets: readonly string[]) => ({
  name: WG_DEVICE,
  mtu: local.underlayMTU - wireguardOverhead(familyOfText(local.publicIP)),
  addresses: subnets.map(vtepAddress),
});

/**
 * Which device this node runs. `kernel` makes the kernel's or fails; `userspace` never tries
 * it; `auto` keeps a wireguard-go still running the device (a twilld restarted on a node that
 * took userspace: switching would cut every session), else makes the kernel's device, else
 * takes wireguard-go when the kernel answers that it has no WireGuard device type (EOPNOTSUPP).
 */
export async function chooseWireguardMode(
  want: WireguardConfig["mode"],
  wireguardGoAnswering: () => Promise<boolean>,
  makeKernelDevice: () => Promise<WireguardLinkResult>,
): Promise<{ mode: WireguardMode; reason: string }> {
  if (want === "userspace") return { mode: "userspace", reason: "configured" };
  if (want === "auto" && (await wireguardGoAnswering())) return { mode: "userspace", reason: "auto: wireguard-go already runs this node's device" };
  if ((await makeKernelDevice()) !== "unsupported") return { mode: "kernel", reason: want === "auto" ? "auto: the kernel has WireGuard" : "configured" };
  if (want === "kernel") {
    throw new ConfigError('"Backend.Mode" "kernel": this kernel has no WireGuard device type (creating it answered EOPNOTSUPP); use "auto" or "userspace" (wireguard-go)');
  }
  return { mode: "userspace", reason: "auto: the kernel has no WireGuard device type" };
}

export class WireguardBackend implements Backend {
  readonly type = "wireguard" as const;
  private readonly config: WireguardConfig;
  private readonly supervisor: WireguardGoSupervisor;
  private readonly clock: Clock;
  private readonly modeGauge: Gauge<"mode"> | null;
  private local: LocalNode | null = null;
  private key: PrivateKey | null = null;
  private mode: { mode: WireguardMode; reason: string } = { mode: "userspace", reason: "configured" };
  /** The device's configuration interface: wireguard-go's UAPI socket or the kernel's generic netlink. */
  private control: (WireguardControl & { close?(): void }) | null = null;
  private last: { lease: NodeLease; peers: NodeLease[] } | null = null;
  private lastRefused = "";
  /** The underlay filter's listing as last installed or found right. */
  private filter: string | null = null;
  /** One reconcile at a time (the agent's and the one after wireguard-go restarted). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly network: NetworkConfig,
    private readonly node: WireguardNodeOptions,
    private readonly deps: DaemonBackendDeps,
  ) {
    this.config = network.backend.wireguard ?? { listenPort: 51820, persistentKeepalive: 0, mode: "auto", allowUnencryptedFrom: [] };
    this.clock = deps.clock ?? systemClock;
    this.modeGauge = deps.registry
      ? new Gauge({ name: "twill_wireguard_mode", help: "1 for the WireGuard device this node runs: kernel, or userspace (wireguard-go)", labelNames: ["mode"], registers: [deps.registry] })
      : null;
    this.supervisor = new WireguardGoSupervisor({
      dir: node.dir,
      logger: deps.logger,
      clock: this.clock,
      onStart: (how) => this.deviceStarted(how),
      ...node.supervisor,
    });
  }

  overhead(underlayFamily: 4 | 6): number {
    return wireguardOverhead(underlayFamily);
  }

  async prepare(local: LocalNode): Promise<BackendData> {
    const { kernel, logger } = this.deps;
    // A node switched from vxlan: its VTEP would keep answering for the routes the device now owns.
    await hostGw.prepare({ kernel, logger, network: this.network, local });
    const { key, created } = loadOrCreatePrivateKey(this.node.keyFile);
    this.key = key;
    this.local = local;
    if (created) logger.info("Created this node's WireGuard key", { file: this.node.keyFile, publicKey: key.publicKey() });
    this.mode = await chooseWireguardMode(this.config.mode, () => this.supervisor.answering(), () => kernel.ensureWireguardLink(WG_DEVICE, deviceSpec(local, []).mtu));
    if (this.mode.mode === "kernel") {
      this.control = (this.node.kernelControl ?? (() => kernelWireguardClient(WG_DEVICE)))();
    } else {
      (this.node.checkTun ?? checkTunDevice)();
      await this.supervisor.start();
      await this.waitAnswering();
      this.control = this.supervisor.uapi;
    }
    const [link] = await kernel.addrs(local.underlayDev);
    logger.info("WireGuard backend", {
      ...this.mode, device: WG_DEVICE, ...(this.mode.mode === "userspace" ? { socket: this.supervisor.files.socket } : {}),
      listenPort: this.config.listenPort, publicKey: key.publicKey(),
    });
    this.modeGauge?.set({ mode: this.mode.mode }, 1);
    return {
      type: this.type, underlayMTU: local.underlayMTU, underlayIPs: underlayAddresses(local.publicIP, link?.addresses ?? []),
      wgPublicKey: key.publicKey(), wgPort: this.config.listenPort,
    };
  }

  underlayChanged(mtu: number): void {
    if (this.local) this.local = { ...this.local, underlayMTU: mtu };
  }

  reconcile(lease: NodeLease, peers: NodeLease[]): Promise<ReconcileReport> {
    this.last = { lease, peers };
    const run = this.queue.then(() => this.reconcileOnce(lease, peers));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** A peer joining touches one peer on the device already: the whole reconcile is incremental. */
  reconcilePeers(lease: NodeLease, peers: NodeLease[], _changed?: readonly string[]): Promise<ReconcileReport> {
    return this.reconcile(lease, peers);
  }

  close(): void {
    // wireguard-go runs on, as the kernel's device stays: stopping it would take the device and every route with it.
    this.supervisor.stop();
    this.control?.close?.();
  }

  private async reconcileOnce(lease: NodeLease, peers: NodeLease[]): Promise<ReconcileReport> {
    const local = this.local;
    const key = this.key;
    if (!local || !key) throw new Error("wireguard backend: reconcile before prepare");
    const { kernel, logger } = this.deps;
    let changes = await this.ensureDevice(local, lease.subnets);
    const filter = await ensureUnderlayFilter(kernel, underlayFilterRuleset(local.underlayDev, this.network.clusterCIDRs, this.config.allowUnencryptedFrom), this.filter);
    this.filter = filter.listing;
    if (filter.changed) {
      changes += 1;
      logger.info("Installed the underlay filter: pod CIDRs arriving on the underlay device are dropped", { dev: local.underlayDev, clusterCIDRs: this.network.clusterCIDRs });
    }

    const self = { nodeName: local.nodeName, privateKey: key, listenPort: this.config.listenPort, subnets: lease.subnets };
    const { peers: desired, refused } = desiredPeers(self, wireguardLeases(peers), {
      clusterCIDRs: this.network.clusterCIDRs, persistentKeepalive: this.config.persistentKeepalive,
    });
    const control = this.control;
    if (!control) throw new Error("wireguard backend: reconcile before prepare");
    const current = await control.get();
    const req = planDevice(self, desired, current);
    if (!isEmptySet(req)) {
      // Not a transaction: after an errno the next round starts again from a get.
      await control.set(req);
      changes += 1;
      logger.info("Configured WireGuard peers", {
        device: WG_DEVICE,
        added: (req.peers ?? []).filter((p) => p.op === "set" && !p.updateOnly).length,
        changed: (req.peers ?? []).filter((p) => p.op === "set" && p.updateOnly).length,
        removed: (req.peers ?? []).filter((p) => p.op === "remove").length,
        ...(req.privateKey ? { privateKey: "set" } : {}),
        ...(req.listenPort !== undefined ? { listenPort: req.listenPort } : {}),
      });
    }

    const installed = await kernel.ownedRoutes();
    const plan = planDatapath({ routes: wireguardRoutes(desired), neighbors: [], fdb: [] }, { routes: installed, neighbors: [], fdb: [] });
    if (plan.length > 0) {
      const failed: RefusedChange[] = await kernel.applyDatapath(plan);
      changes += plan.length;
      logger.info("Reconciled WireGuard routes", { added: plan.filter((c) => c.op === "replace").length, removed: plan.filter((c) => c.op === "del").length, peers: desired.length });
      if (failed.length) throw new KernelError("program WireGuard routes", failed.map((f) => f.error.message).join("; "));
    }

    if (this.node.reportFile) {
      writeWireguardReport(this.node.reportFile, {
        at: this.clock.now(), mode: this.mode.mode, modeReason: this.mode.reason, device: WG_DEVICE, listenPort: this.config.listenPort, publicKey: key.publicKey(),
        wireguardGo: this.mode.mode === "userspace" ? this.supervisor.state() : null,
        peers: peerReports(desired, current), refused,
      });
    }

    const errors: PeerError[] = refused.map((r) => ({ peer: r.subject, message: r.reason }));
    const text = JSON.stringify(errors);
    if (text !== this.lastRefused) {
      for (const e of errors) logger.error("Peer unreachable", { peer: e.peer, reason: e.message });
      this.lastRefused = text;
    }
    return { changes, errors };
  }

  /**
   * The device up, at its MTU, with the node subnets' first addresses. wireguard-go's exists
   * only while it runs; the kernel's is made again when someone deleted it.
   */
  private async ensureDevice(local: LocalNode, subnets: readonly string[]): Promise<number> {
    const kernel = this.deps.kernel;
    const made = this.mode.mode === "kernel" && (await kernel.ensureWireguardLink(WG_DEVICE, deviceSpec(local, subnets).mtu)) === "created";
    if (made) this.deps.logger.warn("Made the WireGuard device again: it was gone", { device: WG_DEVICE });
    const link = await kernel.link(WG_DEVICE);
    if (!link) throw new KernelError(`find WireGuard device "${WG_DEVICE}"`, `no such device (${this.mode.mode === "kernel" ? "kernel mode" : `wireguard-go: ${this.supervisor.state().state}`})`);
    const [addrs] = await kernel.addrs(WG_DEVICE);
    const changes = planVtepSettings(link, addrs?.addresses ?? [], deviceSpec(local, subnets));
    for (const c of changes) await applyDeviceChange(kernel, c);
    return changes.length + (made ? 1 : 0);
  }

  /** wireguard-go (re)started: configure the fresh device at once rather than at the next resync. */
  private deviceStarted(how: "started" | "adopted"): void {
    const last = this.last;
    if (how !== "started" || !last) return;
    void this.waitAnswering()
      .then(() => this.reconcile(last.lease, last.peers))
      .catch((err: unknown) => this.deps.logger.warn("Configuring the restarted WireGuard device failed; the next reconcile tries again", { error: errorMessage(err) }));
  }

  private async waitAnswering(): Promise<void> {
    const deadline = this.clock.now() + (this.node.readyMs ?? READY_MS);
    while (!(await this.supervisor.answering())) {
      if (this.clock.now() >= deadline) {
        throw new Error(`wireguard-go did not answer on ${this.supervisor.files.socket} within ${this.node.readyMs ?? READY_MS} ms (its log: ${this.supervisor.files.log})`);
      }
      await this.clock.sleep(READY_POLL_MS, new AbortController().signal);
    }
  }
}

function applyDeviceChange(kernel: NodeKernel, c: VtepChange): Promise<void> {
  const op = `configure WireGuard device "${WG_DEVICE}"`;
  if (c.op === "set-link") return kernel.setLink(c.settings, op);
  if (c.op === "del-address") return kernel.deleteAddress(WG_DEVICE, c.cidr, op);
  return kernel.replaceAddress(WG_DEVICE, c.cidr, op);
}
