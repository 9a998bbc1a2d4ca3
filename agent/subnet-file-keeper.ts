import { readSubnetFile, writeSubnetFile, type SubnetInfo } from "../shared/subnet-file.js";
import { errorMessage } from "./errors.js";

/**
 * The subnet file as the agent keeps it: the only thing the plugin needs from the agent, so
 * once a lease is held the file must say what the lease says, also after it was deleted,
 * truncated or edited behind the agent's back.
 */
export class SubnetFileKeeper {
  /** What the file must say, once a lease is held. */
  private wanted: SubnetInfo | null = null;
  /** The last write succeeded and none failed since. */
  written = false;

  constructor(
    readonly path: string,
    private readonly nodeName: string,
  ) {}

  /** The subnets of the last subnet file this node wrote: tried first, claimed atomically. */
  previousSubnets(): string[] {
    try {
      const info = readSubnetFile(this.path);
      return info.nodeName === undefined || info.nodeName === this.nodeName ? info.nodeSubnets : [];
    } catch {
      return [];
    }
  }

  /** Writes `info`, what the file must say from now on; throws when it cannot. */
  write(info: SubnetInfo): void {
    this.wanted = info;
    this.writeWanted();
  }

  /** Why the file on disk is not what it must be (missing, unreadable, other content); null when it is. */
  problem(): string | null {
    if (!this.wanted) return null;
    try {
      const onDisk = readSubnetFile(this.path);
      return JSON.stringify(onDisk) === JSON.stringify(this.wanted) ? null : `subnet file ${this.path} differs from the lease`;
    } catch (err) {
      return errorMessage(err);
    }
  }

  /** Rewrites the file when it has a problem: the problem repaired, or null when there was none. Throws when it cannot. */
  repair(): string | null {
    const problem = this.problem();
    if (!problem) return null;
    this.writeWanted();
    return problem;
  }

  private writeWanted(): void {
    try {
      writeSubnetFile(this.path, this.wanted!);
    } catch (err) {
      this.written = false;
      throw err;
    }
    this.written = true;
  }
}
