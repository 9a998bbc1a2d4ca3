import { ApiException, CONNECT, ERROR, ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "../../shared/log.js";
import { errorMessage } from "../errors.js";

/**
 * A list+watch cache of one resource that never gives up. client-node's ListWatch relists by
 * itself after 410 Gone (a resource version the apiserver no longer has), but after any other
 * failure (apiserver down, connection reset, a failed list) it reports the error and stops for
 * good. This restarts it with exponential backoff, resuming from the last resource version
 * (a 410 on resume makes it relist), and tells when the cache holds a complete list.
 */

const BACKOFF_MS = { first: 250, max: 5_000 };

export interface ResilientInformerOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** API path of the collection, e.g. /api/v1/nodes. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  /** After every change of the cache (including a relist); the cache is complete by then. */
  onChange: () => void;
  /**
   * What of an object matters to the consumer. An update that leaves it unchanged (a kubelet
   * status heartbeat on a Node) does not call onChange: at thousands of Nodes those updates
   * would otherwise recompute the peer set many times a second.
   */
  fingerprint?: (obj: T) => string;
  onError: (err: Error) => void;
  logger: Logger;
}

export class ResilientInformer<T extends KubernetesObject> {
  private readonly watch: ListWatch<T>;
  private backoff = BACKOFF_MS.first;
  private stopped = false;
  private restartTimer: NodeJS.Timeout | undefined;
  /** True once a list has completed: before that the cache is not the whole collection. */
  synced = false;
  /** How many times the cache was rebuilt from a list after the first (410 Gone). */
  relists = 0;

  constructor(private readonly o: ResilientInformerOptions<T>) {
    const list = async () => {
      const result = await o.list();
      // The ListWatch applies the items right after this resolves, in the same tick;
      // onChange consumers run later (coalesced), so they see the applied list.
      this.synced = true;
      this.backoff = BACKOFF_MS.first;
      o.onChange();
      return result;
    };
    this.watch = new ListWatch<T>(o.path, new Watch(o.kubeConfig), list, false, o.labelSelector);
    const seen = new Map<string, string>();
    const keyOf = (obj: T) => `${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;
    const changed = (obj: T) => {
      this.backoff = BACKOFF_MS.first;
      if (o.fingerprint) {
        const print = o.fingerprint(obj);
        if (seen.get(keyOf(obj)) === print) return;
        seen.set(keyOf(obj), print);
      }
      o.onChange();
    };
    this.watch.on("add", changed);
    this.watch.on("update", changed);
    this.watch.on("delete", (obj: T) => {
      this.backoff = BACKOFF_MS.first;
      seen.delete(keyOf(obj));
      o.onChange();
    });
    this.watch.on(CONNECT, () => {
      // An emptied resource version on (re)connect means the apiserver answered 410 Gone.
      if (this.synced && this.watch.latestResourceVersion() === "") {
        this.relists++;
        o.logger.info("Relisting after 410 Gone", { path: o.path });
      }
    });
    this.watch.on(ERROR, (err: unknown) => this.failed(err));
  }

  start(): void {
    if (this.stopped) return;
    this.watch.start().catch((err: unknown) => this.failed(err));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    void this.watch.stop();
  }

  list(): ReadonlyArray<T> {
    return this.watch.list();
  }

  private failed(err: unknown): void {
    if (this.stopped) return;
    const error = err instanceof Error ? err : new Error(errorMessage(err));
    this.o.onError(new Error(`watch ${this.o.path}: ${describeApiError(error)}`));
    // The ListWatch has stopped itself; exactly one restart is pending at a time.
    clearTimeout(this.restartTimer);
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MS.max);
    this.restartTimer = setTimeout(() => this.start(), delay);
  }
}

/** A short reason for an API failure: "HTTP 403: nodes is forbidden ..." or the network error. */
export function describeApiError(err: unknown): string {
  if (err instanceof ApiException) {
    const { code, body } = err as ApiException<unknown>;
    let message: string | undefined;
    const parsed = typeof body === "string" ? safeJson(body) : body;
    if (parsed && typeof parsed === "object" && typeof (parsed as { message?: unknown }).message === "string") {
      message = (parsed as { message: string }).message;
    }
    return `HTTP ${code}${message ? `: ${message}` : ""}`;
  }
  if (err && typeof err === "object" && "statusCode" in err) {
    return `HTTP ${(err as { statusCode: unknown }).statusCode}: ${errorMessage(err)}`;
  }
  const cause = err instanceof Error && err.cause ? ` (${errorMessage(err.cause)})` : "";
  return `${errorMessage(err)}${cause}`;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
