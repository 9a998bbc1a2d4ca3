// How the bench's peer writer adds a peer (`./scripts/bench agent --write ... --order ...`).

export type WriteMode = "rename" | "in-place";
export type WriteOrder = "claim-first" | "record-first";
export interface WriteWay {
  write: WriteMode;
  order: WriteOrder;
}

/** How an agent writes its own lease: the claim first, each file renamed into place. */
export const DEFAULT_WAY: WriteWay = { write: "rename", order: "claim-first" };

const MODES: readonly WriteMode[] = ["rename", "in-place"];
const ORDERS: readonly WriteOrder[] = ["claim-first", "record-first"];

export const wayName = (w: WriteWay): string => `${w.write}, ${w.order}`;

/**
 * The ways named by `--write` and `--order` (each a comma-separated list, or "all"), every
 * write mode with every order; the first is the one the peers are populated with.
 */
export function parseWays(write: string, order: string): WriteWay[] {
  const pick = <T extends string>(flag: string, text: string, known: readonly T[]): T[] => {
    const names = text === "all" ? [...known] : text.split(",");
    for (const n of names) if (!known.includes(n as T)) throw new Error(`--${flag} ${text}: want ${known.join(", ")} or all (a comma-separated list)`);
    return [...new Set(names)] as T[];
  };
  const orders = pick("order", order, ORDERS);
  return pick("write", write, MODES).flatMap((w) => orders.map((o) => ({ write: w, order: o })));
}
