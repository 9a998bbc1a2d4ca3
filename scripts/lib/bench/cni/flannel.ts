// Flannel's CNI chain for the benchmarks: the `flannel` meta plugin, built from the source in
// ../shared/peers (see its README), delegating to the reference `bridge` and `host-local`.
//
// The source is never part of this repository: it is unpacked into a temp dir beside the cache,
// built with Debian's Go (modules from its own vendor/, no network), and only the binary is
// kept, under dist/peers/flannel-<hash of the tarball>/ (with Go's build cache beside it), so it
// is rebuilt only when the tarball changes, and goes away with dist/.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";

export interface FlannelBuild {
  binary: string;
  /** First 12 hex digits of the tarball's SHA-256: names the build in the report. */
  hash: string;
}

/** Returns the plugin built from `tarball`, building it into `cacheDir` first unless it is there. */
export function ensureFlannelPlugin(tarball: string, cacheDir: string): FlannelBuild {
  if (!existsSync(tarball)) throw new Error(`Flannel's CNI plugin source is missing: ${tarball} (--flannel-src PATH)`);
  const hash = createHash("sha256").update(readFileSync(tarball)).digest("hex").slice(0, 12);
  const dir = join(cacheDir, `flannel-${hash}`);
  const binary = join(dir, "flannel");
  if (existsSync(binary)) return { binary, hash };

  if (spawnSync("go", ["version"]).status !== 0) throw new Error("building Flannel's CNI plugin needs Debian's golang-go");
  mkdirSync(cacheDir, { recursive: true });
  // Builds of an older tarball are of no further use.
  for (const old of readdirSync(cacheDir)) if (old.startsWith("flannel-")) rmSync(join(cacheDir, old), { recursive: true, force: true });
  const work = mkdtempSync(join(cacheDir, "src-"));
  try {
    process.stderr.write(`bench: building Flannel's CNI plugin (${hash}) into ${dir}\n`);
    run(["tar", "-xJf", tarball, "-C", work], "unpack Flannel's CNI plugin source");
    mkdirSync(dir, { recursive: true });
    // Module mode on the tarball's vendor/ only; GOFLAGS and GOPATH from the caller's
    // environment must not leak in (scripts/build-libcni builds in GOPATH mode).
    run(["go", "build", "-trimpath", "-o", `${binary}.tmp`, "./plugins/meta/flannel"], "build Flannel's CNI plugin", {
      cwd: join(work, "flannel-cni-plugin"),
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: work,
        GO111MODULE: "on",
        GOFLAGS: "-mod=vendor",
        GOPROXY: "off",
        CGO_ENABLED: "0",
        GOCACHE: join(cacheDir, "go-build"),
      },
    });
    // Renamed into place: an interrupted build leaves no binary to be taken for a good one.
    renameSync(`${binary}.tmp`, binary);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { binary, hash };
}

function run(argv: string[], what: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { ...opts, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`failed to ${what}: ${argv.join(" ")}: ${r.error?.message ?? r.stderr.trim()}`);
}

export interface FlannelNode {
  /** The cluster network (FLANNEL_NETWORK): Flannel routes it through the pod's gateway. */
  network: string;
  /** This node's pod subnet, which host-local allocates from. */
  subnet: string;
  /** The bridge's address in `subnet`, written as flanneld writes FLANNEL_SUBNET. */
  gateway: string;
  mtu: number;
  /** Whether the pod's traffic leaving the cluster network is masqueraded by the plugin chain. */
  ipMasq: boolean;
}

/**
 * The subnet file flanneld writes (/run/flannel/subnet.env). FLANNEL_IPMASQ says whether
 * flanneld itself masquerades; the plugin then sets the bridge's `ipMasq` to its opposite, so
 * the chain masquerades exactly when `ipMasq` asks it to.
 */
export function flannelSubnetEnv(node: FlannelNode): string {
  const prefix = node.subnet.split("/")[1];
  return [
    `FLANNEL_NETWORK=${node.network}`,
    `FLANNEL_SUBNET=${node.gateway}/${prefix}`,
    `FLANNEL_MTU=${node.mtu}`,
    `FLANNEL_IPMASQ=${!node.ipMasq}`,
    "",
  ].join("\n");
}

/**
 * The network config as Flannel's manifest installs it (hairpin on, default gateway), with the
 * subnet file, the saved delegate configs and host-local's store in `dataDir`. From it the
 * plugin builds bridge's config: `isGateway`, `mtu` and `ipMasq` from the subnet file,
 * host-local ranges from FLANNEL_SUBNET and a route to FLANNEL_NETWORK.
 */
export function flannelConf(name: string, bridge: string, dataDir: string): object {
  return {
    cniVersion: "1.0.0",
    name,
    type: "flannel",
    subnetFile: join(dataDir, "subnet.env"),
    dataDir: join(dataDir, "flannel"),
    delegate: { bridge, hairpinMode: true, isDefaultGateway: true },
    ipam: { dataDir },
  };
}
