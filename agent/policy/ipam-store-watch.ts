import { watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { Store } from "../../ipam/store.js";
import type { Logger } from "../../shared/log.js";
import { errorMessage } from "../errors.js";
import { readReservations, type ReservationView } from "../ipam/store-view.js";

/**
 * This node's reservations, re-read whenever twill-ipam changes its store (inotify on the
 * address files and on the index that names their pods), so a new pod's address reaches the
 * policy engine at ADD time. Changes are coalesced: a burst of ADDs is one read.
 */
export function watchReservations(
  dir: string,
  onChange: (reservations: ReservationView[]) => void,
  logger: Logger,
): () => void {
  let pending: NodeJS.Immediate | undefined;
  let stopped = false;
  const read = () => {
    pending = undefined;
    if (stopped) return;
    try {
      onChange(readReservations(dir));
    } catch (err) {
      logger.warn("Reading the IPAM store failed", { dir, error: errorMessage(err) });
    }
  };
  const schedule = () => {
    if (!stopped && pending === undefined) pending = setImmediate(read);
  };
  const watchers: FSWatcher[] = [];
  try {
    // As twill-ipam makes it on its first ADD, so both directories can be watched from the start.
    new Store(dir, logger).ensure();
    for (const d of [dir, join(dir, ".twill", "by-id")]) {
      watchers.push(watch(d, { persistent: false }, schedule).on("error", (err) => logger.warn("Watching the IPAM store failed", { dir: d, error: err.message })));
    }
  } catch (err) {
    logger.warn("Cannot watch the IPAM store; new pods' addresses come from the API only", { dir, error: errorMessage(err) });
  }
  schedule();
  return () => {
    stopped = true;
    clearImmediate(pending);
    for (const w of watchers) w.close();
  };
}
