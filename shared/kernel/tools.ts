import { run, type Runner } from "./exec.js";
import { KernelError } from "./types.js";

/**
 * The two kernel tools twill still starts as processes: `nft`, for whole-table nftables
 * transactions (`nft -f`, one process per change), and `ethtool`, once per VTEP. Bound to a
 * network namespace (null: the caller's), entered with nsenter.
 */
export interface NetTools {
  /** Runs `nft ARGS`, `input` on its stdin (for `nft -f -`). */
  nft(args: readonly string[], op: string, input?: string): Promise<string>;
  /** Runs `ethtool ARGS`. */
  ethtool(args: readonly string[], op: string): Promise<string>;
}

export function netTools(netns: string | null = null, runner: Runner = run): NetTools {
  const tool = async (name: string, args: readonly string[], op: string, input?: string): Promise<string> => {
    const argv = netns === null ? [name, ...args] : ["nsenter", `--net=${netns}`, name, ...args];
    const r = await runner(argv, input === undefined ? {} : { input });
    if (r.code !== 0) throw new KernelError(op, r.stderr || r.stdout);
    return r.stdout;
  };
  return {
    nft: (args, op, input) => tool("nft", args, op, input),
    ethtool: (args, op) => tool("ethtool", args, op),
  };
}
