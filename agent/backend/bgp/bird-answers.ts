/**
 * BIRD's control-socket answers (2.0) read into typed records. BIRD has no JSON: every line
 * starts with a 4-digit code and `-` (more follows) or a space (the last line); a line that
 * starts with a space continues the record above it, under its code. The codes are BIRD's
 * doc/reply_codes: 0xxx done, 1xxx table rows, 2xxx table headings, 8xxx run-time errors, 9xxx
 * parse errors. The grammar is small and stable within 2.0; the tests read answers recorded
 * from bird 2.0.12 (fixtures/), so a BIRD whose text differs fails them first.
 *
 * Times are BIRD's local time as written (`timeformat ... iso long ms` in bird.conf gives
 * `2026-12-07 00:27:49.309`): compared with the server time of `show status`, never with
 * this process's clock, they give an uptime without knowing BIRD's time zone.
 */

export interface BirdLine {
  /** The code of the record the line belongs to (a continuation line has its record's). */
  code: number;
  text: string;
}

export interface BirdReply {
  code: number;
  message: string;
}

/** An answer that is an error (8xxx run time, 9xxx command syntax), where a result was expected. */
export class BirdAnswerError extends Error {
  readonly code = "BIRD_ANSWER";
  constructor(
    readonly command: string,
    readonly reply: BirdReply,
  ) {
    super(`BIRD refused "${command}": ${reply.code} ${reply.message}`);
    this.name = "BirdAnswerError";
  }
}

/** The lines of one answer with their record's code; `+` lines (spontaneous printouts) are left out. */
export function answerLines(answer: string): BirdLine[] {
  const out: BirdLine[] = [];
  let code = 0;
  for (const line of answer.split("\n")) {
    const coded = /^(\d{4})[- ](.*)$/.exec(line);
    if (coded) {
      code = Number(coded[1]);
      out.push({ code, text: coded[2]! });
    } else if (line.startsWith(" ")) {
      out.push({ code, text: line.slice(1) });
    }
  }
  return out;
}

/** The answer's last line: the outcome of the command. */
export function finalReply(answer: string): BirdReply {
  const last = /(?:^|\n)(\d{4}) ([^\n]*)\n?$/.exec(answer);
  if (!last) throw new Error(`not a whole BIRD answer: ${JSON.stringify(answer.slice(-80))}`);
  return { code: Number(last[1]), message: last[2]!.trim() };
}

/** The reply when it is an error (8xxx, 9xxx), else null. */
export function replyError(answer: string): BirdReply | null {
  const reply = finalReply(answer);
  return reply.code >= 8000 ? reply : null;
}

// ---------------------------------------------------------------------------------------
// show protocols [all]

/** Import or export counters of one direction: `received rejected filtered ignored accepted`; null where BIRD has `---`. */
export interface RouteChangeStats {
  received: number | null;
  rejected: number | null;
  filtered: number | null;
  ignored: number | null;
  accepted: number | null;
}

export interface BirdChannel {
  /** `ipv4`, `ipv6`. */
  name: string;
  /** `UP`, `DOWN`, `START`, `FLUSHING`. */
  state: string;
  table: string;
  inputFilter: string | null;
  /** `Routes:` of an up channel: imported (accepted and kept), filtered (refused, kept by `import keep filtered`), exported. */
  imported: number;
  filtered: number;
  exported: number;
  preferred: number;
  importUpdates: RouteChangeStats | null;
  importWithdraws: RouteChangeStats | null;
  exportUpdates: RouteChangeStats | null;
  exportWithdraws: RouteChangeStats | null;
}

export interface BirdProtocol {
  name: string;
  /** `BGP`, `Static`, `Kernel`, `Device`, `Direct`. */
  proto: string;
  /** `up`, `start`, `down`, `stop`, `flush`. */
  state: string;
  /** When the state last changed, as BIRD wrote it. */
  since: string;
  /** The Info column: a BGP session's state and its last error (`Active        Socket: Connection refused`). */
  info: string;
  /** From `show protocols all` only: */
  bgpState: string | null;
  neighborAddress: string | null;
  neighborAS: number | null;
  localAS: number | null;
  lastError: string | null;
  channels: BirdChannel[];
}

const TIME = String.raw`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?|\d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\d`;
const PROTOCOL_ROW = new RegExp(String.raw`^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(${TIME})(?:\s+(.*?))?\s*$`);

/** `show protocols` and `show protocols all`; no protocol matching is an empty list. */
export function parseProtocols(answer: string, command = "show protocols all"): BirdProtocol[] {
  const error = replyError(answer);
  if (error?.code === 8003) return [];
  if (error) throw new BirdAnswerError(command, error);
  const out: BirdProtocol[] = [];
  let channel: BirdChannel | null = null;
  for (const { code, text } of answerLines(answer)) {
    if (code === 1002) {
      const row = PROTOCOL_ROW.exec(text);
      if (!row) throw new Error(`unreadable protocol row ${JSON.stringify(text)}`);
      out.push({
        name: row[1]!,
        proto: row[2]!,
        state: row[4]!,
        since: row[5]!,
        info: row[6] ?? "",
        bgpState: null,
        neighborAddress: null,
        neighborAS: null,
        localAS: null,
        lastError: null,
        channels: [],
      });
      channel = null;
      continue;
    }
    const protocol = out.at(-1);
    if (code !== 1006 || !protocol) continue;
    const opens = /^\s*Channel (\S+)$/.exec(text);
    if (opens) {
      channel = emptyChannel(opens[1]!);
      protocol.channels.push(channel);
      continue;
    }
    const field = /^\s*([^:]+):\s*(.*?)\s*$/.exec(text);
    if (!field) continue;
    const [, key, value] = field as unknown as [string, string, string];
    if (channel) readChannelField(channel, key, value);
    else readProtocolField(protocol, key, value);
  }
  return out;
}

function readProtocolField(p: BirdProtocol, key: string, value: string): void {
  if (key === "BGP state") p.bgpState = value;
  else if (key === "Neighbor address") p.neighborAddress = value;
  else if (key === "Neighbor AS") p.neighborAS = Number(value);
  else if (key === "Local AS") p.localAS = Number(value);
  else if (key === "Last error") p.lastError = value;
}

function readChannelField(c: BirdChannel, key: string, value: string): void {
  if (key === "State") c.state = value;
  else if (key === "Table") c.table = value;
  else if (key === "Input filter") c.inputFilter = value;
  else if (key === "Routes") {
    for (const [, n, what] of value.matchAll(/(\d+) (\w+)/g)) {
      if (what === "imported" || what === "filtered" || what === "exported" || what === "preferred") c[what] = Number(n);
    }
  } else if (key === "Import updates") c.importUpdates = changeStats(value);
  else if (key === "Import withdraws") c.importWithdraws = changeStats(value);
  else if (key === "Export updates") c.exportUpdates = changeStats(value);
  else if (key === "Export withdraws") c.exportWithdraws = changeStats(value);
}

function changeStats(value: string): RouteChangeStats {
  const n = value.split(/\s+/).map((v) => (v === "---" ? null : Number(v)));
  return { received: n[0] ?? null, rejected: n[1] ?? null, filtered: n[2] ?? null, ignored: n[3] ?? null, accepted: n[4] ?? null };
}

const emptyChannel = (name: string): BirdChannel => ({
  name,
  state: "",
  table: "",
  inputFilter: null,
  imported: 0,
  filtered: 0,
  exported: 0,
  preferred: 0,
  importUpdates: null,
  importWithdraws: null,
  exportUpdates: null,
  exportWithdraws: null,
});

// ---------------------------------------------------------------------------------------
// show route [filtered] all

/** One AS path element: an AS, or an AS_SET (`{65001 65002}`). */
export type AsPathElement = number | number[];

export interface BirdRoute {
  table: string;
  prefix: string;
  /** `unicast`, `unreachable`, `blackhole`, `prohibit`. */
  kind: string;
  protocol: string;
  since: string;
  /** The BGP peer it came from, where BIRD shows it (when it differs from the next hop). */
  from: string | null;
  /** BIRD's best route for the prefix (`*`). */
  primary: boolean;
  preference: number;
  /** The first hop BIRD resolved (what the kernel route needs: Linux takes no recursive `via`). */
  via: string | null;
  dev: string | null;
  /** From `show route all` only: */
  bgpNextHop: string | null;
  asPath: AsPathElement[] | null;
  /** Every extended attribute as written (`BGP.local_pref` → `100`). */
  attributes: Record<string, string>;
}

const ROUTE_LINE = /^(\S*)\s+(\w+) \[(\S+) ([^\]]*?)(?: from (\S+))?\](?: (\*))? \((\d+)(?:\/[^)]*)?\)(?: \[[^\]]*\])?\s*$/;

/** `show route [filtered] [all]`; no route is an empty list. */
export function parseRoutes(answer: string, command = "show route all"): BirdRoute[] {
  const error = replyError(answer);
  if (error?.code === 8001) return [];
  if (error) throw new BirdAnswerError(command, error);
  const out: BirdRoute[] = [];
  let table = "";
  for (const { code, text } of answerLines(answer)) {
    const route = out.at(-1);
    if (code === 1007) {
      const heading = /^Table (\S+):$/.exec(text);
      const hop = /^\s+via (\S+) on (\S+)/.exec(text);
      const device = /^\s+dev (\S+)/.exec(text);
      const line = ROUTE_LINE.exec(text);
      if (heading) table = heading[1]!;
      else if (hop && route) [route.via, route.dev] = [route.via ?? hop[1]!, route.dev ?? hop[2]!];
      else if (device && route) route.dev ??= device[1]!;
      else if (line) {
        out.push({
          table,
          // A second route for the same prefix leaves the prefix column blank.
          prefix: line[1] || (route?.prefix ?? ""),
          kind: line[2]!,
          protocol: line[3]!,
          since: line[4]!,
          from: line[5] ?? null,
          primary: line[6] === "*",
          preference: Number(line[7]),
          via: null,
          dev: null,
          bgpNextHop: null,
          asPath: null,
          attributes: {},
        });
      } else if (text.trim()) {
        throw new Error(`unreadable route line ${JSON.stringify(text)}`);
      }
    } else if (code === 1012 && route) {
      const attr = /^\s*([\w.]+): ?(.*)$/.exec(text);
      if (!attr) continue;
      const [, key, value] = attr as unknown as [string, string, string];
      route.attributes[key] = value;
      // An IPv6 next hop may carry a link-local address after the global one.
      if (key === "BGP.next_hop") route.bgpNextHop = value.split(/\s+/)[0] || null;
      if (key === "BGP.as_path") route.asPath = asPath(value);
    }
  }
  return out;
}

function asPath(text: string): AsPathElement[] {
  return [...text.matchAll(/\{([^}]*)\}|(\d+)/g)].map(([, set, as]) => (set !== undefined ? set.trim().split(/\s+/).filter(Boolean).map(Number) : Number(as)));
}

// ---------------------------------------------------------------------------------------
// show status

export interface BirdStatus {
  version: string;
  routerId: string;
  serverTime: string;
  lastReboot: string;
  lastReconfiguration: string;
  /** `Daemon is up and running`, `Reconfiguration in progress`, `Shutdown in progress`. */
  state: string;
  /**
   * Graceful restart recovery (BIRD started with `-R`) still running (0024): BIRD announces
   * nothing yet and its table is incomplete, so what it lacks must not be pruned.
   */
  gracefulRestart: boolean;
  /** During recovery: `Waiting for 2 channels to recover`, `Wait timer is 9.665/10`. */
  gracefulRestartDetail: string[];
}

export function parseStatus(answer: string, command = "show status"): BirdStatus {
  const error = replyError(answer);
  if (error) throw new BirdAnswerError(command, error);
  const status: BirdStatus = {
    version: "",
    routerId: "",
    serverTime: "",
    lastReboot: "",
    lastReconfiguration: "",
    state: finalReply(answer).message,
    gracefulRestart: false,
    gracefulRestartDetail: [],
  };
  for (const { code, text } of answerLines(answer)) {
    const rest = (prefix: string): string | null => (text.startsWith(prefix) ? text.slice(prefix.length).trim() : null);
    if (code === 1000) status.version = text.replace(/^BIRD /, "").trim();
    else if (code === 24) {
      if (/recovery in progress/.test(text)) status.gracefulRestart = true;
      else status.gracefulRestartDetail.push(text.trim());
    } else if (code === 1011) {
      status.routerId = rest("Router ID is ") ?? status.routerId;
      status.serverTime = rest("Current server time is ") ?? status.serverTime;
      status.lastReboot = rest("Last reboot on ") ?? status.lastReboot;
      status.lastReconfiguration = rest("Last reconfiguration on ") ?? status.lastReconfiguration;
    }
  }
  return status;
}

/**
 * Milliseconds from `from` to `to`, two full BIRD times (`2026-12-07 00:27:49.309`) of one
 * BIRD: a session's uptime is elapsedMs(since, status.serverTime). Null for a time without a date.
 */
export function elapsedMs(from: string, to: string): number | null {
  const ms = (t: string): number | null => {
    const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)$/.exec(t);
    return m ? Date.parse(`${m[1]}T${m[2]}Z`) : null;
  };
  const a = ms(from);
  const b = ms(to);
  return a === null || b === null ? null : b - a;
}

// ---------------------------------------------------------------------------------------
// configure [check]

export type ConfigureOutcome =
  /** 0003: the new file is in force. */
  | "reconfigured"
  /** 0004: in force, protocols still shutting down or restarting; 0005 and 0017: queued behind one in progress. */
  | "in progress"
  /** 0020: `configure check` found the file good. */
  | "checked"
  /** 0006: BIRD is shutting down. */
  | "ignored"
  /** 8xxx, 9xxx: refused; the old file stays in force. */
  | "refused";

export interface ConfigureReply extends BirdReply {
  outcome: ConfigureOutcome;
}

/** The reply to `configure "FILE"` or `configure check "FILE"` (after its 0002 `Reading configuration`). */
export function parseConfigureReply(answer: string): ConfigureReply {
  const reply = finalReply(answer);
  const outcome: ConfigureOutcome =
    reply.code === 3
      ? "reconfigured"
      : reply.code === 4 || reply.code === 5 || reply.code === 17
        ? "in progress"
        : reply.code === 20
          ? "checked"
          : reply.code === 6
            ? "ignored"
            : "refused";
  return { ...reply, outcome };
}
