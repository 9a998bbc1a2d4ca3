import type { Interactive } from "./exec.js";
import type { IpRoute } from "./iproute.js";

/**
 * Whether twill's peer entries may have changed in the kernel since the agent last read them,
 * from one `ip monitor label link addr route neigh` (FDB entries come as neighbors of the VTEP):
 * a resync with nothing changed then skips the read of thousands of routes, neighbors and FDB
 * entries. Conservative: any link, address or route event counts (a link or address going away
 * takes routes with it without a route event), neighbors count on the VTEP only (ARP on the
 * pod bridge is constant). Before the monitor runs, and after it stops, everything counts.
 * It also tells when a device the agent names was deleted: iproute2's persistent processes
 * remember names by index and must start afresh.
 */

export interface KernelMoves {
  /** twill's entries may have changed. */
  entries: boolean;
  /** One of the devices asked about was deleted (and perhaps made again). */
  devicesDeleted: boolean;
}

export class DatapathChanges {
  private follower: Interactive | null = null;
  private starting: Promise<void> | null = null;
  private changed = true;
  private deleted = new Set<string>();
  private vtepDev: string | null = null;
  private partial = "";

  constructor(private readonly ip: IpRoute) {}

  /** What may have changed since the last call (the first call starts following). */
  async sinceLast(vtepDev: string | null, devices: readonly (string | null | undefined)[] = []): Promise<KernelMoves> {
    this.vtepDev = vtepDev;
    if (!this.follower) await this.start();
    const moves = {
      entries: this.changed || !this.follower,
      devicesDeleted: !this.follower || [vtepDev, ...devices].some((d) => d && this.deleted.has(d)),
    };
    this.changed = false;
    this.deleted.clear();
    return moves;
  }

  close(): void {
    this.follower?.close();
    this.follower = null;
  }

  private start(): Promise<void> {
    this.starting ??= this.ip
      .monitor(["link", "addr", "route", "neigh"], {
        output: (text) => this.onOutput(text),
        exit: () => {
          this.follower = null;
          this.changed = true;
        },
      })
      .then(
        (f) => {
          this.follower = f;
          this.changed = true;
        },
        () => {
          this.follower = null;
        },
      )
      .finally(() => {
        this.starting = null;
      });
    return this.starting;
  }

  private onOutput(text: string): void {
    const lines = (this.partial + text).split("\n");
    this.partial = lines.pop()!;
    for (const line of lines) {
      if (touchesDatapath(line, this.vtepDev)) this.changed = true;
      const gone = deletedLink(line);
      if (gone) this.deleted.add(gone);
    }
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
