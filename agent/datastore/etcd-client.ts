import { readFileSync } from "node:fs";
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { ConfigError, DatastoreError, errorMessage } from "../errors.js";

/**
 * A small etcd v3 client over etcd's gRPC JSON gateway (HTTP or HTTPS with node:http, so no
 * gRPC dependency in the agent's bundle). Keys and values travel base64-encoded; 64-bit numbers
 * (revisions, lease IDs) travel as decimal strings and fields equal to their zero value are
 * left out (a PUT event has no "type", a failed txn no "succeeded", a lapsed lease no "TTL").
 */

/** The PEM files of --etcd-cafile, --etcd-certfile and --etcd-keyfile. */
export interface EtcdTlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** TLS settings for https:// endpoints, as PEM text. */
export interface EtcdTls {
  /** Trusted instead of the system's CAs for etcd's server certificate. */
  ca?: string;
  /** The client certificate and its key, for an etcd with --client-cert-auth. */
  cert?: string;
  key?: string;
}

/** Reads the TLS files once, at start-up: a missing or unreadable file is a config error naming its flag. */
export function readEtcdTls(files: EtcdTlsFiles): EtcdTls {
  if (Boolean(files.certFile) !== Boolean(files.keyFile)) {
    throw new ConfigError("--etcd-certfile and --etcd-keyfile go together: a client certificate needs its key");
  }
  const read = (file: string | undefined, flag: string): string | undefined => {
    if (!file) return undefined;
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new ConfigError(`${flag} ${file}: ${errorMessage(err)}`);
    }
  };
  const tls = { ca: read(files.caFile, "--etcd-cafile"), cert: read(files.certFile, "--etcd-certfile"), key: read(files.keyFile, "--etcd-keyfile") };
  return Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined)) as EtcdTls;
}

/**
 * The endpoints as URLs: http:// or https://; TLS settings only with https:// ones (over plain
 * HTTP a client certificate would silently never be sent).
 */
export function checkEndpoints(endpoints: readonly string[], tls: EtcdTls): string[] {
  if (endpoints.length === 0) throw new DatastoreError("connect to etcd", "no endpoints given");
  return endpoints.map((e) => {
    let url: URL;
    try {
      url = new URL(e);
    } catch {
      throw new ConfigError(`etcd endpoint ${JSON.stringify(e)} is not a URL (http://HOST:2379 or https://HOST:2379)`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new ConfigError(`etcd endpoint ${e}: only http:// and https:// are supported`);
    }
    if (url.protocol === "http:" && Object.keys(tls).length > 0) {
      throw new ConfigError(`etcd endpoint ${e} is plain HTTP but TLS files are given (--etcd-cafile, --etcd-certfile, --etcd-keyfile): use https://`);
    }
    return e.replace(/\/+$/, "");
  });
}

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
  readonly endpoints: readonly string[];
  private current = 0;
  private readonly hasClientCert: boolean;
  /** Connections kept open between calls; the watch holds one of its own. */
  private readonly httpAgent = new HttpAgent({ keepAlive: true });
  private readonly httpsAgent: HttpsAgent;

  constructor(
    endpoints: readonly string[],
    private readonly timeoutMs = 5000,
    tls: EtcdTls = {},
  ) {
    this.endpoints = checkEndpoints(endpoints, tls);
    this.hasClientCert = tls.cert !== undefined;
    this.httpsAgent = new HttpsAgent({ keepAlive: true, ...tls });
  }

  /** Closes the connections kept open. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
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
    const res = await this.postAny("/v3/watch", body, signal, `watch ${prefix}`);
    res.setEncoding("utf8");
    let buffered = "";
    try {
      for await (const chunk of res as AsyncIterable<string>) {
        buffered += chunk;
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
      res.destroy();
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
    const signal = AbortSignal.timeout(this.timeoutMs);
    const res = await this.postAny(path, JSON.stringify(body), signal, what);
    const text = await readBody(res).catch((err: unknown) => {
      throw new DatastoreError(what, `etcd's answer broke off: ${errorMessage(err)}`);
    });
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new DatastoreError(what, `etcd answered with no JSON: ${text.slice(0, 200)}`);
    }
  }

  /** POSTs to the endpoint that answered last, moving on to the next while one is unreachable. */
  private async postAny(path: string, body: string, signal: AbortSignal, what: string): Promise<IncomingMessage> {
    let lastError = "";
    for (let tries = 0; tries < this.endpoints.length; tries++) {
      const endpoint = this.endpoints[this.current]!;
      let res: IncomingMessage;
      try {
        res = await this.post(endpoint + path, body, signal);
      } catch (err) {
        if (signal.aborted) throw new DatastoreError(what, `no answer from ${endpoint}: ${errorMessage(err)}`);
        lastError = `${endpoint}: ${connectFailure(err, this.hasClientCert)}`;
        this.current = (this.current + 1) % this.endpoints.length;
        continue;
      }
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        const text = await readBody(res).catch(() => "");
        let message = text;
        try {
          const e = JSON.parse(text) as { message?: string; error?: string };
          message = e.message ?? e.error ?? text;
        } catch {
          // not JSON: keep the text
        }
        throw new DatastoreError(what, `etcd ${endpoint} answered ${status}: ${message.trim()}`);
      }
      return res;
    }
    throw new DatastoreError(what, `no etcd endpoint answered (${lastError})`);
  }

  /**
   * One POST; resolves with the response once its headers are in, its body still to read. A
   * kept-alive connection etcd closed while idle fails at once with ECONNRESET, before etcd
   * read anything: that one is sent again on a new connection.
   */
  private post(url: string, body: string, signal: AbortSignal, retry = true): Promise<IncomingMessage> {
    const https = url.startsWith("https:");
    return new Promise((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(url, {
        method: "POST",
        agent: https ? this.httpsAgent : this.httpAgent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        signal,
      }, resolve);
      req.on("error", (err: NodeJS.ErrnoException) => {
        if (retry && req.reusedSocket && err.code === "ECONNRESET" && !signal.aborted) resolve(this.post(url, body, signal, false));
        else reject(err);
      });
      req.end(body);
    });
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

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    res.on("error", reject);
  });
}

/** Why a connection failed, with what to do about it when that is a TLS setting. */
export function connectFailure(err: unknown, hasClientCert: boolean): string {
  const code = (err as { code?: string }).code ?? "";
  const reason = code && !errorMessage(err).includes(code) ? `${errorMessage(err)} (${code})` : errorMessage(err);
  if (/CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|alert number (42|46|48|116)\b/.test(`${code} ${reason}`)) {
    return `etcd refused the TLS connection: ${hasClientCert
      ? "it does not accept this client certificate (--etcd-certfile, --etcd-keyfile)"
      : "it asks for a client certificate (give --etcd-certfile and --etcd-keyfile)"}: ${reason}`;
  }
  if (/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_UNTRUSTED|CERT_HAS_EXPIRED/.test(code)) {
    return `etcd's server certificate is not trusted (give its CA with --etcd-cafile): ${reason}`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return `etcd's server certificate does not name this endpoint's host: ${reason}`;
  return reason;
}
