import { masqTableName, MASQ_RULE_TAG, type MasqState } from "../nft.js";
import { NLM_F, attrsAfter, str, type Attr, type Attrs, type Message } from "./codec.js";
import { NetlinkError, type NetlinkSocket } from "./socket.js";

/**
 * The masquerade table read over nfnetlink instead of `nft list`: ADD reads it every time and
 * changes it rarely (the node's first pod of a subnet), so reading it must not start a
 * process. Changes still go through `nft -f`. Layouts: include/uapi/linux/netfilter/nf_tables.h.
 */

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG = { GETTABLE: 1, GETRULE: 7, GETSETELEM: 13, GETOBJ: 19 } as const;
const NFTA_TABLE_NAME = 1;
const NFTA_OBJ = { TABLE: 1, NAME: 2, TYPE: 3, DATA: 4 } as const;
const NFT_OBJECT_COUNTER = 1;
const NFTA_COUNTER_PACKETS = 2;
const NFPROTO_INET = 1;
const NFTA_RULE = { TABLE: 1, CHAIN: 2, EXPRESSIONS: 4, USERDATA: 7 } as const;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR = { NAME: 1, DATA: 2 } as const;
const NFTA_LOOKUP = { SET: 1, FLAGS: 5 } as const;
const NFT_LOOKUP_F_INV = 1;
const NFTA_PAYLOAD = { OFFSET: 3 } as const;
const NFTA_SET_ELEM_LIST = { TABLE: 1, SET: 2, ELEMENTS: 3 } as const;
const NFTA_SET_ELEM = { KEY: 1, FLAGS: 3 } as const;
const NFTA_DATA_VALUE = 1;
const NFT_SET_ELEM_INTERVAL_END = 1;
/** NFTNL_UDATA_RULE_COMMENT: the userdata TLV nft stores a rule's comment in. */
const UDATA_RULE_COMMENT = 0;

/** The two rules, as (payload offset, lookup) sequences: ip/ip6 saddr @podsN, daddr != @keepN, masquerade. */
const WANTED_RULES = ["p12 @pods4 p16 !@keep4 masq", "p8 @pods6 p24 !@keep6 masq"];
const SETS = ["pods4", "keep4", "pods6", "keep6"];

/** What the network's masquerade table holds, or null when it does not exist (ENOENT). */
export function readMasqueradeNetlink(sock: NetlinkSocket, network: string): MasqState | null {
  const table = masqTableName(network);
  let rules: Message[];
  try {
    rules = dump(sock, NFT_MSG.GETRULE, [str(NFTA_RULE.TABLE, table), str(NFTA_RULE.CHAIN, "postrouting")], `read the rules of nftables table inet ${table}`);
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === 2) return null;
    throw err;
  }
  const tagged = rules.map((m) => attrsAfter(m.payload, 4)).filter((a) => ruleComment(a.raw(NFTA_RULE.USERDATA)) === MASQ_RULE_TAG);
  const shapes = tagged.map(ruleShape).sort();
  const sets: MasqState["sets"] = {};
  for (const set of SETS) {
    try {
      const msgs = dump(sock, NFT_MSG.GETSETELEM, [str(NFTA_SET_ELEM_LIST.TABLE, table), str(NFTA_SET_ELEM_LIST.SET, set)], `read set ${set} of nftables table inet ${table}`);
      sets[set] = intervalsOf(msgs.flatMap((m) => setElements(attrsAfter(m.payload, 4))));
    } catch (err) {
      // A table from before a set existed: the set is missing, as `nft list` would show.
      if (!(err instanceof NetlinkError && err.errno === 2)) throw err;
    }
  }
  return { rules: shapes.length === 2 && shapes.join("|") === [...WANTED_RULES].sort().join("|"), sets };
}

/**
 * The named counters of table `inet TABLE`, name -> packets, over nfnetlink (no `nft` process);
 * null when the table does not exist.
 */
export function readCountersNetlink(sock: NetlinkSocket, table: string): Map<string, number> | null {
  const op = `read the counters of nftables table inet ${table}`;
  try {
    sock.request({ type: (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG.GETTABLE, flags: NLM_F.REQUEST | NLM_F.ACK, body: { nfgen: { family: NFPROTO_INET } }, attrs: [str(NFTA_TABLE_NAME, table)] }, op);
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === 2) return null;
    throw err;
  }
  return countersOf(dump(sock, NFT_MSG.GETOBJ, [str(NFTA_OBJ.TABLE, table)], op));
}

/** Counter objects' packets by name, from a GETOBJ dump (other objects are skipped). */
export function countersOf(msgs: readonly Message[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of msgs) {
    const a = attrsAfter(m.payload, 4);
    const name = a.str(NFTA_OBJ.NAME);
    const packets = a.nested(NFTA_OBJ.DATA)?.raw(NFTA_COUNTER_PACKETS);
    if (a.u32be(NFTA_OBJ.TYPE) !== NFT_OBJECT_COUNTER || name === undefined || !packets || packets.length < 8) continue;
    out.set(name, Number(new DataView(packets.buffer, packets.byteOffset, 8).getBigUint64(0, false)));
  }
  return out;
}

function dump(sock: NetlinkSocket, msg: number, attrs: Attr[], op: string): Message[] {
  return sock.request({ type: (NFNL_SUBSYS_NFTABLES << 8) | msg, flags: NLM_F.REQUEST | NLM_F.DUMP, body: { nfgen: { family: NFPROTO_INET } }, attrs }, op);
}

/** A rule's comment from its userdata TLVs (type, length, value), or null. */
export function ruleComment(udata: Uint8Array | undefined): string | null {
  if (!udata) return null;
  for (let off = 0; off + 2 <= udata.length; ) {
    const type = udata[off]!;
    const len = udata[off + 1]!;
    const value = udata.subarray(off + 2, off + 2 + len);
    if (type === UDATA_RULE_COMMENT) {
      const end = value.indexOf(0);
      return new TextDecoder().decode(end < 0 ? value : value.subarray(0, end));
    }
    off += 2 + len;
  }
  return null;
}

/** A rule's expressions reduced to what tells twill's rules apart: payload offsets, lookups, masq. */
export function ruleShape(rule: Attrs): string {
  const exprs = rule.nested(NFTA_RULE.EXPRESSIONS)?.all(NFTA_LIST_ELEM) ?? [];
  const parts: string[] = [];
  for (const e of exprs) {
    const name = e.str(NFTA_EXPR.NAME);
    const data = e.nested(NFTA_EXPR.DATA);
    if (name === "payload") parts.push(`p${data?.u32be(NFTA_PAYLOAD.OFFSET)}`);
    else if (name === "lookup") parts.push(`${(data?.u32be(NFTA_LOOKUP.FLAGS) ?? 0) & NFT_LOOKUP_F_INV ? "!" : ""}@${data?.str(NFTA_LOOKUP.SET)}`);
    else if (name === "masq") parts.push("masq");
  }
  return parts.join(" ");
}

export interface SetElement {
  key: bigint;
  /** The first address after an interval (NFT_SET_ELEM_INTERVAL_END), not a start. */
  end: boolean;
  bytes: number;
}

function setElements(list: Attrs): SetElement[] {
  const elems = list.nested(NFTA_SET_ELEM_LIST.ELEMENTS)?.all(NFTA_LIST_ELEM) ?? [];
  return elems.flatMap((e) => {
    const key = e.nested(NFTA_SET_ELEM.KEY)?.raw(NFTA_DATA_VALUE);
    if (!key) return [];
    let v = 0n;
    for (const b of key) v = (v << 8n) | BigInt(b);
    return [{ key: v, end: ((e.u32be(NFTA_SET_ELEM.FLAGS) ?? 0) & NFT_SET_ELEM_INTERVAL_END) !== 0, bytes: key.length }];
  });
}

/**
 * An interval set's elements as inclusive intervals. The kernel keeps a start element per
 * interval and an end element holding the first address after it; an interval that reaches
 * the top of the address space has no end element.
 */
export function intervalsOf(elements: readonly SetElement[]): [bigint, bigint][] {
  const starts = elements.filter((e) => !e.end).map((e) => e.key).sort(cmp);
  const ends = elements.filter((e) => e.end).map((e) => e.key).sort(cmp);
  const top = (1n << BigInt(8 * (elements[0]?.bytes ?? 4))) - 1n;
  return starts.map((s) => {
    const end = ends.find((e) => e > s);
    return [s, end === undefined ? top : end - 1n];
  });
}

const cmp = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);
