import { DatastoreError, errorMessage } from "../errors.js";

/**
 * A small etcd v3 client over etcd's gRPC JSON gateway (plain HTTP + fetch, so no gRPC
 * dependency in the agent's bundle). Keys and values travel base64-encoded; 64-bit numbers
 * (revisions, lease IDs) travel as decimal strings and fields equal to their zero value are
 * left out (a PUT event has no "type", a failed txn no "succeeded", a lapsed lease no "TTL").
 */

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  /** The etcd lease ID the key is attached to ("0": none). */
  lease: string;
}

export interface WatchEvent {
  type: "put" | "delete";
  kv: KeyValue;
}

export type Compare =
  | { key: string; target: "CREATE"; createRevision: number }
  | { key: string; target: "MOD"; modRevision: number };

export type Op = { put: { key: string; value: string; lease?: string } } | { delete: { key: string } };

export interface WatchHandlers {
  onCreated?: () => void;
  onEvents: (events: WatchEvent[], revision: number) => void;
}

/** The watch could not resume: the revision it asked for is compacted away. Relist. */
export class WatchCompacted extends Error {
  constructor(readonly compactRevision: number) {
    super(`watch revision compacted (oldest kept: ${compactRevision})`);
    this.name = "WatchCompacted";
  }
}

const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");
const unb64 = (s: string | undefined): string => (s ? Buffer.from(s, "base64").toString("utf8") : "");

/** The end of the range of every key starting with `prefix`. */
export function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, "utf8");
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      bytes[i]! += 1;
      return bytes.subarray(0, i + 1).toString("latin1");
    }
  }
  return "\0";
}

interface RawKv {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  lease?: string;
}

const decodeKv = (kv: RawKv): KeyValue => ({
  key: unb64(kv.key),
  value: unb64(kv.value),
  createRevision: Number(kv.create_revision ?? 0),
  modRevision: Number(kv.mod_revision ?? 0),
  lease: kv.lease ?? "0",
});

export class EtcdClient {
  private current = 0;

  constructor(
    readonly endpoints: readonly string[],
    private readonly timeoutMs = 5000,
  ) {
    if (endpoints.length === 0) throw new DatastoreError("connect to etcd", "no endpoints given");
  }

  async range(key: string, rangeEnd?: string): Promise<{ kvs: KeyValue[]; revision: number }> {
    const body: Record<string, string> = { key: b64(key) };
    if (rangeEnd !== undefined) body.range_end = rawB64(rangeEnd);
    const r = await this.call<{ header?: { revision?: string }; kvs?: RawKv[] }>("/v3/kv/range", body, `read ${key}`);
    return { kvs: (r.kvs ?? []).map(decodeKv), revision: Number(r.header?.revision ?? 0) };
  }

  rangePrefix(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }> {
    return this.range(prefix, prefixEnd(prefix));
  }

  async txn(compare: Compare[], success: Op[], failure: Op[] = [], what = "run a transaction"): Promise<boolean> {
    const body = {
      compare: compare.map((c) =>
        c.target === "CREATE"
          ? { key: b64(c.key), target: "CREATE", create_revision: String(c.createRevision) }
          : { key: b64(c.key), target: "MOD", mod_revision: String(c.modRevision) },
      ),
      success: success.map(rawOp),
      failure: failure.map(rawOp),
    };
    const r = await this.call<{ succeeded?: boolean }>("/v3/kv/txn", body, what);
    return r.succeeded === true;
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.call("/v3/kv/put", { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) }, `write ${key}`);
  }

  async leaseGrant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const r = await this.call<{ ID?: string; TTL?: string; error?: string }>(
      "/v3/lease/grant",
      { TTL: String(ttlSeconds) },
      "grant a lease",
    );
    if (!r.ID || r.error) throw new DatastoreError("grant a lease", r.error ?? "no lease ID in the answer");
    return { id: r.ID, ttl: Number(r.TTL ?? 0) };
  }

  /** One keepalive; the remaining TTL in seconds, 0 when the lease no longer exists. */
  async leaseKeepAlive(id: string): Promise<number> {
    const r = await this.call<{ result?: { TTL?: string } }>("/v3/lease/keepalive", { ID: id }, `keep lease ${id} alive`);
    return Number(r.result?.TTL ?? 0);
  }

  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.call("/v3/lease/revoke", { ID: id }, `revoke lease ${id}`);
    } catch (err) {
      if (!/lease not found/.test(errorMessage(err))) throw err;
    }
  }

  /**
   * Streams changes of every key under `prefix` from `startRevision` until `signal` aborts
   * (resolves) or the stream fails (rejects; WatchCompacted when the revision is gone).
   */
  async watch(prefix: string, startRevision: number, handlers: WatchHandlers, signal: AbortSignal): Promise<void> {
    const body = JSON.stringify({
      create_request: { key: b64(prefix), range_end: rawB64(prefixEnd(prefix)), start_revision: String(startRevision) },
    });
    const res = await this.fetchAny("/v3/watch", body, signal, `watch ${prefix}`);
    if (!res.body) throw new DatastoreError(`watch ${prefix}`, "no response body");
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) this.handleWatchLine(line, prefix, handlers);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      throw err instanceof DatastoreError || err instanceof WatchCompacted ? err : new DatastoreError(`watch ${prefix}`, errorMessage(err));
    } finally {
      reader.releaseLock();
    }
    if (!signal.aborted) throw new DatastoreError(`watch ${prefix}`, "the stream ended");
  }

  private handleWatchLine(line: string, prefix: string, handlers: WatchHandlers): void {
    const msg = JSON.parse(line) as {
      result?: {
        header?: { revision?: string };
        created?: boolean;
        canceled?: boolean;
        compact_revision?: string;
        cancel_reason?: string;
        events?: { type?: string; kv?: RawKv }[];
      };
      error?: { message?: string };
    };
    if (msg.error) throw new DatastoreError(`watch ${prefix}`, msg.error.message ?? JSON.stringify(msg.error));
    const r = msg.result ?? {};
    if (r.compact_revision && r.compact_revision !== "0") throw new WatchCompacted(Number(r.compact_revision));
    if (r.canceled) throw new DatastoreError(`watch ${prefix}`, `canceled by etcd: ${r.cancel_reason ?? "no reason given"}`);
    if (r.created) handlers.onCreated?.();
    if (r.events && r.events.length > 0) {
      handlers.onEvents(
        r.events.map((e) => ({ type: e.type === "DELETE" ? "delete" : "put", kv: decodeKv(e.kv ?? {}) })),
        Number(r.header?.revision ?? 0),
      );
    }
  }

  private async call<T>(path: string, body: unknown, what: string): Promise<T> {
    const res = await this.fetchAny(path, JSON.stringify(body), AbortSignal.timeout(this.timeoutMs), what);
    const text = await res.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new DatastoreError(what, `etcd answered with no JSON: ${text.slice(0, 200)}`);
    }
  }

  /** POSTs to the endpoint that answered last, moving on to the next while one is unreachable. */
  private async fetchAny(path: string, body: string, signal: AbortSignal, what: string): Promise<Response> {
    let lastError = "";
    for (let tries = 0; tries < this.endpoints.length; tries++) {
      const endpoint = this.endpoints[this.current]!.replace(/\/+$/, "");
      let res: Response;
      try {
        res = await fetch(endpoint + path, { method: "POST", body, signal, headers: { "content-type": "application/json" } });
      } catch (err) {
        if (signal.aborted) throw new DatastoreError(what, `no answer from ${endpoint}: ${errorMessage(err)}`);
        lastError = `${endpoint}: ${causeOf(err)}`;
        this.current = (this.current + 1) % this.endpoints.length;
        continue;
      }
      if (!res.ok) {
        const text = await res.text().catch(() => "");
        let message = text;
        try {
          const e = JSON.parse(text) as { message?: string; error?: string };
          message = e.message ?? e.error ?? text;
        } catch {
          // not JSON: keep the text
        }
        throw new DatastoreError(what, `etcd ${endpoint} answered ${res.status}: ${message.trim()}`);
      }
      return res;
    }
    throw new DatastoreError(what, `no etcd endpoint reachable (${lastError})`);
  }
}

function rawOp(op: Op): unknown {
  if ("put" in op) {
    return { request_put: { key: b64(op.put.key), value: b64(op.put.value), ...(op.put.lease ? { lease: op.put.lease } : {}) } };
  }
  return { request_delete_range: { key: b64(op.delete.key) } };
}

/** base64 of a key bound that may hold bytes that are not UTF-8 (prefixEnd's latin1 string). */
const rawB64 = (s: string): string => Buffer.from(s, "latin1").toString("base64");

/** fetch hides the reason (ECONNREFUSED, ...) in `cause`. */
function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? errorMessage(err);
}
