import { setTimeout as sleep } from "node:timers/promises";

/** Bounded waits for what a test must see; generous for a 2-core machine. */
export const SEE_WITHIN_MS = 20_000;
const POLL_MS = 100;

/**
 * Polls `probe` until it returns a value other than undefined or false, and returns it. A
 * probe that throws counts as not yet; after `deadlineMs` it fails naming `what`, the last
 * error and `detail()` (a log tail, say).
 */
export async function until<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  deadlineMs = SEE_WITHIN_MS,
  detail: () => string = () => "",
): Promise<T> {
  const end = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) {
      const extra = detail();
      throw new Error(`not ${what} within ${deadlineMs} ms${last ? `: ${String(last)}` : ""}${extra ? `\n${extra}` : ""}`);
    }
    await sleep(POLL_MS);
  }
}
