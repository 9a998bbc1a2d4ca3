import { GENL_HDRLEN, NLM_F, attrsAfter, readGenl, str, type Attrs, type GenlHeader, type Message, type Request } from "./codec.js";
import { Errno } from "./libc.js";
import { NetlinkError, type NetlinkSocket } from "./socket.js";

/**
 * Generic netlink (include/uapi/linux/genetlink.h): families such as WireGuard's have no fixed
 * message type; the controller family, nlctrl, tells a family's number by its name, and every
 * message of the family then carries a genlmsghdr (command, version) before its attributes.
 */

/** GENL_ID_CTRL (= NLMSG_MIN_TYPE): nlctrl's own message type. */
export const GENL_ID_CTRL = 0x10;
/** CTRL_CMD_*: NEWFAMILY is the answer to GETFAMILY. */
export const CTRL_CMD = { NEWFAMILY: 1, GETFAMILY: 3 } as const;
/** CTRL_ATTR_*: FAMILY_ID is a u16, FAMILY_NAME a NUL-terminated string. */
export const CTRL_ATTR = { FAMILY_ID: 1, FAMILY_NAME: 2 } as const;
/** nlctrl's first version; the kernel answers any. */
const CTRL_VERSION = 1;

/** A message of a generic netlink family: its header and the attributes after it. */
export function genlMessage(m: Message): { header: GenlHeader; attrs: Attrs } {
  return { header: readGenl(m.payload), attrs: attrsAfter(m.payload, GENL_HDRLEN) };
}

/** CTRL_CMD_GETFAMILY for the family `name` (not a dump: the answer is one CTRL_CMD_NEWFAMILY). */
export const getFamilyRequest = (name: string): Omit<Request, "seq"> => ({
  type: GENL_ID_CTRL,
  flags: NLM_F.REQUEST,
  body: { genl: { cmd: CTRL_CMD.GETFAMILY, version: CTRL_VERSION } },
  attrs: [str(CTRL_ATTR.FAMILY_NAME, name)],
});

/** The family number nlctrl's answer gives for `name`; throws when the answer is not about it. */
export function familyIdOf(messages: readonly Message[], name: string): number {
  for (const m of messages) {
    if (m.type !== GENL_ID_CTRL) continue;
    const { header, attrs } = genlMessage(m);
    if (header.cmd !== CTRL_CMD.NEWFAMILY || attrs.str(CTRL_ATTR.FAMILY_NAME) !== name) continue;
    const id = attrs.u16(CTRL_ATTR.FAMILY_ID);
    if (id !== undefined && id >= GENL_ID_CTRL) return id;
  }
  throw new Error(`nlctrl answered without a family id for generic netlink family "${name}"`);
}

/**
 * The family number of `name` on a generic netlink socket, or null when the kernel has no such
 * family (nlctrl answers ENOENT; on a modular kernel the lookup itself loads the family's
 * module when it can).
 */
export function resolveFamily(sock: NetlinkSocket, name: string, op: string): number | null {
  try {
    return familyIdOf(sock.request(getFamilyRequest(name), op), name);
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === Errno.ENOENT) return null;
    throw err;
  }
}
