import { describe, expect, it } from "vitest";
import { control, fakeLibc, seqOf } from "../../../testkit/fake-libc.js";
import { NLMSG, decode, encode, str, u16, u32, type Message } from "./codec.js";
import { familyIdOf, getFamilyRequest, resolveFamily } from "./genl.js";
import { NETLINK, NetlinkError, NetlinkSocket } from "./socket.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/**
 * nlctrl's answer to CTRL_CMD_GETFAMILY, its numbers written from genetlink.h: GENL_ID_CTRL
 * 0x10, CTRL_CMD_NEWFAMILY 1, CTRL_ATTR_FAMILY_ID 1 (u16), CTRL_ATTR_FAMILY_NAME 2,
 * CTRL_ATTR_VERSION 3, CTRL_ATTR_HDRSIZE 4, CTRL_ATTR_MAXATTR 5.
 */
const newFamily = (seq: number, name: string, id: number): Uint8Array =>
  encode({ type: 0x10, flags: 0, seq, body: { genl: { cmd: 1, version: 2 } }, attrs: [u16(1, id), str(2, name), u32(3, 1), u32(4, 0), u32(5, 8)] });

const messages = (b: Uint8Array): Message[] => decode(b);

describe("generic netlink family lookup", () => {
  it("asks nlctrl (GENL_ID_CTRL 0x10) with CTRL_CMD_GETFAMILY (3) and CTRL_ATTR_FAMILY_NAME (2), not as a dump", () => {
    expect(hex(encode({ ...getFamilyRequest("wireguard"), seq: 5 }))).toBe(
      "24000000" + "1000" + "0100" + "05000000" + "00000000" + "03010000" + "0e000200" + hex(Buffer.from("wireguard\0")) + "0000",
    );
  });

  it("reads the family's number from CTRL_ATTR_FAMILY_ID (1) of the answer about that name", () => {
    expect(familyIdOf(messages(newFamily(5, "wireguard", 0x1b)), "wireguard")).toBe(0x1b);
    expect(() => familyIdOf(messages(newFamily(5, "ethtool", 0x14)), "wireguard")).toThrow(/without a family id/);
    expect(() => familyIdOf([], "wireguard")).toThrow(/without a family id/);
  });

  it("resolves on a socket: the number, null when nlctrl answers ENOENT, the errno otherwise", () => {
    let answer: (seq: number) => Uint8Array = (seq) => newFamily(seq, "wireguard", 0x1b);
    const c = fakeLibc((req) => [answer(seqOf(req))]);
    const sock = NetlinkSocket.open(c, null, NETLINK.GENERIC);
    expect(resolveFamily(sock, "wireguard", "look up wireguard")).toBe(0x1b);
    answer = (seq) => control(NLMSG.ERROR, seq, 2);
    expect(resolveFamily(sock, "wireguard", "look up wireguard")).toBeNull();
    answer = (seq) => control(NLMSG.ERROR, seq, 1);
    expect(() => resolveFamily(sock, "wireguard", "look up wireguard")).toThrow(NetlinkError);
    expect(() => resolveFamily(sock, "wireguard", "look up wireguard")).toThrow("look up wireguard: Operation not permitted (EPERM)");
  });
});
