import type { Interactive, InteractiveHandlers } from "./exec.js";
import type { IpRoute } from "./iproute.js";

/**
 * Kernel monitors that tell the agent's resync whether there is anything to read: at thousands
 * of peers, reading every route, neighbor and FDB entry (or listing nftables) each round costs
 * more than all else the agent does at rest. Conservative: before a monitor runs, and after it
 * stops, everything counts as changed.
 */

/** A monitor process kept running, its output handed over line by line. */
class Follower {
  private handle: Interactive | null = null;
  private starting: Promise<void> | null = null;
  private partial = "";

  constructor(
    private readonly start: (on: InteractiveHandlers) => Promise<Interactive>,
    private readonly onLine: (line: string) => void,
    /** Called when the monitor starts or stops: what happened meanwhile is unknown. */
    private readonly onGap: () => void,
  ) {}

  /** Starts the monitor when it is not running; true when it runs. */
  async ensure(): Promise<boolean> {
    if (this.handle) return true;
    this.starting ??= this.start({
      output: (text) => {
        const lines = (this.partial + text).split("\n");
        this.partial = lines.pop()!;
        for (const line of lines) this.onLine(line);
      },
      exit: () => {
        this.handle = null;
        this.partial = ""; // a torn last line of this process must not prefix the next one's first
        this.onGap();
      },
    })
      .then(
        (h) => {
          this.handle = h;
          this.onGap();
        },
        () => this.onGap(),
      )
      .finally(() => {
        this.starting = null;
      });
    await this.starting;
    return this.handle !== null;
  }

  close(): void {
    this.handle?.close();
    this.handle = null;
  }
}

export interface KernelMoves {
  /** twill's entries may have changed. */
  entries: boolean;
  /** One of the devices asked about was deleted (and perhaps made again). */
  devicesDeleted: boolean;
}

/**
 * Whether twill's peer entries may have changed since the last look, from one `ip monitor label
 * link addr route neigh` (FDB entries come as neighbors of the VTEP). Any link, address or route
 * event counts (a link or address going away takes routes with it without a route event);
 * neighbors count on the VTEP only (ARP on the pod bridge is constant). It also tells when a
 * device the agent names was deleted: iproute2's persistent processes remember names by index
 * and must start afresh.
 */
export class DatapathChanges {
  private readonly follower: Follower;
  private changed = true;
  private deleted = new Set<string>();
  private vtepDev: string | null = null;

  constructor(ip: IpRoute) {
    this.follower = new Follower(
      (on) => ip.monitor(["link", "addr", "route", "neigh"], on),
      (line) => {
        if (touchesDatapath(line, this.vtepDev)) this.changed = true;
        const gone = deletedLink(line);
        if (gone) this.deleted.add(gone);
      },
      () => {
        this.changed = true;
      },
    );
  }

  /** What may have changed since the last call (the first call starts following). */
  async sinceLast(vtepDev: string | null, devices: readonly (string | null | undefined)[] = []): Promise<KernelMoves> {
    this.vtepDev = vtepDev;
    const running = await this.follower.ensure();
    const moves = {
      entries: this.changed || !running,
      devicesDeleted: !running || [vtepDev, ...devices].some((d) => d && this.deleted.has(d)),
    };
    this.changed = false;
    this.deleted.clear();
    return moves;
  }

  close(): void {
    this.follower.close();
  }
}

/** Whether an nftables table may have changed since the last look, from `nft monitor`. */
export class NftTableChanges {
  private readonly follower: Follower;
  private changed = true;

  constructor(ip: IpRoute, family: string, table: string) {
    this.follower = new Follower(
      (on) => ip.nftMonitor(on),
      (line) => {
        if (touchesTable(line, family, table)) this.changed = true;
      },
      () => {
        this.changed = true;
      },
    );
  }

  /** True when the table may have changed since the last call (the first call starts following). */
  async sinceLast(): Promise<boolean> {
    const running = await this.follower.ensure();
    const changed = this.changed || !running;
    this.changed = false;
    return changed;
  }

  close(): void {
    this.follower.close();
  }
}

/** One line of `ip monitor label`: could it be a change to what twill programs for its peers? */
export function touchesDatapath(line: string, vtepDev: string | null): boolean {
  const m = /^\[(\w+)\]/.exec(line);
  if (!m) return false; // a continuation of the line before, counted there
  if (m[1] !== "NEIGH") return true;
  return vtepDev !== null && line.includes(` dev ${vtepDev} `);
}

/** The device a `[LINK]Deleted` line of `ip monitor label` names, else null. */
export function deletedLink(line: string): string | null {
  return /^\[LINK\]Deleted \d+: ([^:@\s]+)/.exec(line)?.[1] ?? null;
}

/** One line of `nft monitor` ("VERB OBJECT FAMILY TABLE ..."): a change in `family table`? */
export function touchesTable(line: string, family: string, table: string): boolean {
  const words = line.trim().split(/\s+/);
  return words[2] === family && words[3] === table;
}
