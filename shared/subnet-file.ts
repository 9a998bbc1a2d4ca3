import { readFileSync } from "./fs-sync.js";
import { CniError, Code, tryAgainLater } from "./cni/errors.js";
import { writeFileAtomic } from "./fs.js";
import { covers, formatCidr, parseCidr } from "./net/cidr.js";

/**
 * The node subnet file: what the node agent leased for this node, read by `twill` and
 * `twill-ipam` on every ADD. The agent writes it atomically. When it is missing the node is
 * not ready yet: ADD answers "try again later" (11) and STATUS "not available" (50), instead
 * of failing hard as flannel does on a missing subnet.env (flannel#2232).
 */

export const DEFAULT_SUBNET_FILE = "/run/twill/subnet.json";

/**
 * The file's format (docs/state-formats.md): 1 since v0.1.0, which wrote no marker (absent
 * reads as 1). Fields are only ever added, and readers ignore fields they do not know; a
 * change no older reader could take raises the format, and a reader refuses a newer one
 * rather than misread it (the plugin answers "try again later", the agent rewrites the file).
 */
export const SUBNET_FILE_FORMAT = 1;

export interface SubnetInfo {
  /** Every pod address in the cluster, one CIDR per family. */
  clusterCIDRs: string[];
  /** This node's share, one CIDR per family, each inside a cluster CIDR. */
  nodeSubnets: string[];
  /** MTU for pod interfaces: the underlay MTU less the backend's overhead. */
  mtu: number;
  backend: string;
  /**
   * Whether the agent masquerades pod traffic leaving the cluster (its `inet twill` table):
   * shown by `twilld status`. The plugin does not read it: its own `ipMasq` is a separate table
   * for networks without the agent (see the README's Architecture, "Masquerade").
   */
  ipMasq: boolean;
  nodeName?: string;
}

export class SubnetFileMissing extends Error {
  constructor(readonly path: string) {
    super(`node subnet file ${path} does not exist (is twilld running on this node?)`);
    this.name = "SubnetFileMissing";
  }
}

export class SubnetFileInvalid extends Error {
  constructor(path: string, why: string) {
    super(`node subnet file ${path} is invalid: ${why}`);
    this.name = "SubnetFileInvalid";
  }
}

export function readSubnetFile(path = DEFAULT_SUBNET_FILE): SubnetInfo {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new SubnetFileMissing(path);
    throw err;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new SubnetFileInvalid(path, "not JSON");
  }
  return validateSubnetInfo(raw, path);
}

/**
 * The subnet file as a CNI operation reads it, its absence or damage turned into the error that
 * operation reports. ADD: missing or invalid is 11 (the agent is not ready yet, or rewrites a
 * damaged file on its next resync; the runtime retries the pod). STATUS: either is 50 (not
 * available).
 */
export function readSubnetFileFor(command: "ADD" | "STATUS", path: string): SubnetInfo {
  try {
    return readSubnetFile(path);
  } catch (err) {
    if (command === "STATUS") throw new CniError(Code.NotAvailable, (err as Error).message);
    if (err instanceof SubnetFileMissing) throw tryAgainLater(err.message);
    if (err instanceof SubnetFileInvalid) throw tryAgainLater(err.message);
    throw err;
  }
}

export function validateSubnetInfo(raw: unknown, path = "(subnet info)"): SubnetInfo {
  const fail = (why: string): never => {
    throw new SubnetFileInvalid(path, why);
  };
  if (typeof raw !== "object" || raw === null) fail("not an object");
  const r = raw as Record<string, unknown>;
  const format = r.format ?? 1;
  if (typeof format !== "number" || !Number.isInteger(format) || format < 1) fail(`"format" ${JSON.stringify(format)} is not a format number`);
  if ((format as number) > SUBNET_FILE_FORMAT) {
    fail(`it was written by a newer twill (format ${format as number}; this one reads format ${SUBNET_FILE_FORMAT}): run the agent and the plugin of one version`);
  }
  const cidrList = (key: string) => {
    const v = r[key];
    if (!Array.isArray(v) || v.length === 0) fail(`"${key}" must be a non-empty list`);
    return (v as unknown[]).map((c) => {
      try {
        return parseCidr(String(c));
      } catch (err) {
        return fail(`"${key}": ${(err as Error).message}`);
      }
    });
  };
  const cluster = cidrList("clusterCIDRs");
  const node = cidrList("nodeSubnets");
  for (const n of node) {
    if (!cluster.some((c) => covers(c, n))) fail(`node subnet ${formatCidr(n)} is outside every cluster CIDR`);
  }
  const mtu = r.mtu;
  if (typeof mtu !== "number" || !Number.isInteger(mtu) || mtu < 576 || mtu > 65535) fail(`"mtu" ${String(mtu)} is not a valid MTU`);
  if (typeof r.backend !== "string") fail('"backend" must be a string');
  return {
    clusterCIDRs: cluster.map(formatCidr),
    nodeSubnets: node.map(formatCidr),
    mtu: mtu as number,
    backend: r.backend as string,
    ipMasq: r.ipMasq === true,
    ...(typeof r.nodeName === "string" ? { nodeName: r.nodeName } : {}),
  };
}

export function writeSubnetFile(path: string, info: SubnetInfo): void {
  validateSubnetInfo(info, path);
  writeFileAtomic(path, JSON.stringify({ format: SUBNET_FILE_FORMAT, ...info }, null, 2) + "\n", 0o644);
}
