import type { TableWatch } from "../shared/kernel/node-kernel.js";
import type { NetTools } from "../shared/kernel/tools.js";
import { deleteMasqueradeTable, MASQ_TABLE, readMasqueradeTable, replaceMasqueradeTable } from "../shared/kernel/masq.js";
import type { Logger } from "../shared/log.js";
import type { NetworkConfig } from "./types.js";

/**
 * The node's pod -> outside masquerade (`ipMasq` of the cluster network), kept by the agent on
 * every full reconcile: the table `inet twill` (shared/kernel/masq.ts) installed when ipMasq is
 * on, put back when it is missing or was edited, and removed when ipMasq is off. Not a peer
 * concern, so not part of any backend.
 */
export class Masquerade {
  /** The table as the kernel listed it after the last install. */
  private installed: string | null = null;

  constructor(
    private readonly network: NetworkConfig,
    private readonly ip: Pick<NetTools, "nft">,
    private readonly logger: Logger,
    /** Tells when the table may have changed; without it, every round lists it. */
    private readonly changes?: TableWatch,
  ) {}

  /** Brings the table in line; returns the number of changes (0 or 1). */
  async reconcile(): Promise<number> {
    const moved = this.changes ? await this.changes.sinceLast() : true;
    if (!moved && this.network.ipMasq && this.installed !== null) return 0;
    const current = await readMasqueradeTable(this.ip);
    if (!this.network.ipMasq) {
      if (current === null) return 0;
      await deleteMasqueradeTable(this.ip);
      return 1;
    }
    if (current !== null && current === this.installed) return 0;
    this.installed = await replaceMasqueradeTable(this.ip, this.network.clusterCIDRs);
    this.logger.info("Installed masquerade rules", { table: `inet ${MASQ_TABLE}`, clusterCIDRs: this.network.clusterCIDRs });
    return 1;
  }

  close(): void {
    this.changes?.close();
  }
}
