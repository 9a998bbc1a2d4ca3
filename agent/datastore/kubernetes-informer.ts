import { ApiException, CONNECT, ERROR, ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";
import { request as httpRequest } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import type { Logger } from "../../shared/log.js";
import { errorMessage } from "../errors.js";

/**
 * A list+watch cache of one resource that never gives up. The list comes in pages of plain JSON
 * (listInPages, listPage); the watch asks for bookmarks and is ended by the apiserver now and then
 * (BookmarkWatch). client-node's ListWatch relists by itself after 410 Gone (a resource version the apiserver no longer has), but after any other
 * failure (apiserver down, connection reset, a failed list) it reports the error and stops for
 * good. This restarts it with exponential backoff, resuming from the last resource version
 * (a 410 on resume makes it relist), and tells when the cache holds a complete list.
 */

const BACKOFF_MS = { first: 250, max: 5_000 };
/** Objects per list page, as client-go's pager: a relist of 5000 Nodes is ten answers, none huge. */
export const LIST_PAGE = 500;
/** Lists begun again after the apiserver dropped a continue token (410 Gone between pages). */
const LIST_ATTEMPTS = 3;

/**
 * A whole collection, one page of `LIST_PAGE` at a time: the apiserver never builds one answer of
 * every object, and the agent never parses one. The pages are one snapshot (the first page's
 * resource version); should the token expire between pages (410 Gone), the list begins again.
 */
export async function listInPages<T extends KubernetesObject>(
  page: (limit: number, continueToken: string | undefined) => Promise<KubernetesListObject<T>>,
): Promise<KubernetesListObject<T>> {
  for (let attempt = 1; ; attempt++) {
    const items: T[] = [];
    let token: string | undefined;
    try {
      for (;;) {
        const answer = await page(LIST_PAGE, token);
        items.push(...answer.items);
        // `continue` in the API's JSON, `_continue` in client-node's typed lists.
        const meta = answer.metadata as { continue?: string; _continue?: string } | undefined;
        token = meta?.continue || meta?._continue || undefined;
        if (token === undefined) return { ...answer, items };
      }
    } catch (err) {
      const gone = err instanceof ApiException && (err as ApiException<unknown>).code === 410;
      if (!gone || token === undefined || attempt >= LIST_ATTEMPTS) throw err;
    }
  }
}

/**
 * One page of a collection as plain JSON. client-node's typed lists revive every field of every
 * object into its model classes (dates, nested types): for 5000 Nodes that is most of a second of
 * the agent's start-up, and real Nodes, with their images and addresses, are larger still. The
 * watch hands out plain JSON objects anyway, and twill reads the same fields from both.
 */
export async function listPage<T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  query: { labelSelector?: string; limit: number; continue?: string },
  timeoutMs: number,
): Promise<KubernetesListObject<T>> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const url = new URL(cluster.server.replace(/\/+$/, "") + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") url.searchParams.set(k, String(v));
  const opts: RequestOptions = { method: "GET", headers: { Accept: "application/json" } };
  await kc.applyToHTTPSOptions(opts);
  const send = url.protocol === "http:" ? httpRequest : httpsRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { ...opts, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const body = safeJson(text);
        if (res.statusCode === 200 && body && typeof body === "object") resolve(body as KubernetesListObject<T>);
        else reject(new ApiException(res.statusCode ?? 0, `HTTP ${res.statusCode}`, body ?? text, res.headers as Record<string, string>));
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/**
 * Watches that ask for bookmarks, and that the apiserver itself ends after 60-80 s
 * (timeoutSeconds, spread so agents do not reconnect in step); ListWatch then resumes from the
 * last resource version it saw, without a list. Apiservers that send bookmarks (about once a
 * minute, and just before they end a watch) move that version on even while none of the
 * watched objects change, so a quiet watch never resumes from a version too old to serve (410
 * Gone, a full list). The 1.20 apiserver the tests build sent none when probed. The client's
 * own inactivity deadline (30 s by default) is made longer than the server's end, so it fires
 * only on a connection that went silent.
 */
export const WATCH_SECONDS = { min: 60, max: 80 };
export const WATCH_IDLE_MS = 90_000;
class BookmarkWatch extends Watch {
  constructor(
    kc: KubeConfig,
    private readonly seconds = WATCH_SECONDS,
  ) {
    super(kc);
    // Private in client-node's typings; its watch() reads it on each request.
    (this as unknown as { requestTimeoutMs: number }).requestTimeoutMs = Math.max(WATCH_IDLE_MS, seconds.max * 1000 + 10_000);
  }

  override watch(...[path, query, ...rest]: Parameters<Watch["watch"]>): ReturnType<Watch["watch"]> {
    const { min, max } = this.seconds;
    const timeoutSeconds = min + Math.floor(Math.random() * (max - min + 1));
    return super.watch(path, { ...query, allowWatchBookmarks: true, timeoutSeconds }, ...rest);
  }
}

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
  /** How long the apiserver keeps one watch open (default WATCH_SECONDS; tests shorten it). */
  watchSeconds?: { min: number; max: number };
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
  /** How many watches were opened: the first, and each resume after one ended. */
  watches = 0;

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
    this.watch = new ListWatch<T>(o.path, new BookmarkWatch(o.kubeConfig, o.watchSeconds), list, false, o.labelSelector);
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
      this.watches++;
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

  /** The resource version the watch resumes from (moved on by events and bookmarks). */
  resourceVersion(): string {
    return this.watch.latestResourceVersion();
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
  // The request's deadline (AbortSignal.timeout), worded alike whichever runtime's fetch ran it.
  if (isTimeout(err) || (err instanceof Error && isTimeout(err.cause))) return "timeout: the apiserver did not answer before the request's deadline";
  const cause = err instanceof Error && err.cause ? ` (${errorMessage(err.cause)})` : "";
  return `${errorMessage(err)}${cause}`;
}

const isTimeout = (err: unknown): boolean => err instanceof Error && err.name === "TimeoutError";

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
