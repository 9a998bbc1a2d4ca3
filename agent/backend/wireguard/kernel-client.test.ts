import { describe, expect, it } from "vitest";
import { control, fakeLibc, seqOf } from "../../../testkit/fake-libc.js";
import { AF, IFLA, NLM_F, NLMSG, RTM, bytes, decode, encode, nested, str, u16, u32 } from "../../../shared/kernel/netlink/codec.js";
import { KernelError } from "../../../shared/kernel/types.js";
import { WGDEVICE_A, WGPEER_A, WG_CMD } from "./genl.js";
import { KernelWireguardClient, NoKernelWireguardError } from "./kernel-client.js";
import type { PeerChange } from "./uapi.js";

const FAMILY = 0x1b;
const INDEX = 7;
const PEER = "72Pdv6UxeV8vhOh3TIybQ8Nw/TfFoPiU0iDGRr0oSlM=";

interface Kernel {
  /** nlctrl knows the family. */
  wireguard: boolean;
  /** The device exists (RTM_GETLINK answers it). */
  link: boolean;
  /** The errno the n-th WG_CMD_SET_DEVICE (from 1) gets, and every WG_CMD_GET_DEVICE under `getErrno`. */
  setErrno: (n: number) => number;
  getErrno: number;
  sent: { type: number; cmd?: number }[];
}

/** A fake kernel behind one libc: nlctrl, RTM_GETLINK and the WireGuard family, as the client's two sockets reach them. */
function kernel(over: Partial<Kernel> = {}) {
  const k: Kernel = { wireguard: true, link: true, setErrno: () => 0, getErrno: 0, sent: [], ...over };
  let sets = 0;
  const c = fakeLibc((req) => {
    const [m] = decode(req);
    const seq = seqOf(req);
    k.sent.push({ type: m!.type, ...(m!.type === FAMILY ? { cmd: m!.payload[0] } : {}) });
    if (m!.type === 0x10) {
      if (!k.wireguard) return [control(NLMSG.ERROR, seq, 2)];
      return [encode({ type: 0x10, flags: 0, seq, body: { genl: { cmd: 1, version: 2 } }, attrs: [u16(1, FAMILY), str(2, "wireguard")] })];
    }
    if (m!.type === RTM.GETLINK) {
      if (!k.link) return [control(NLMSG.ERROR, seq, 19)];
      return [encode({ type: RTM.NEWLINK, flags: 0, seq, body: { ifinfo: { family: AF.UNSPEC, index: INDEX, flags: 0, change: 0 } }, attrs: [str(IFLA.IFNAME, "twill-wg")] })];
    }
    if (m!.payload[0] === WG_CMD.SET_DEVICE) return [control(NLMSG.ERROR, seq, k.setErrno(++sets))];
    if (k.getErrno) return [control(NLMSG.DONE, seq, k.getErrno)];
    const part = encode({
      type: FAMILY, flags: NLM_F.MULTI, seq, body: { genl: { cmd: WG_CMD.GET_DEVICE, version: 1 } },
      attrs: [u16(WGDEVICE_A.LISTEN_PORT, 51820), u32(WGDEVICE_A.IFINDEX, INDEX), nested(WGDEVICE_A.PEERS, [nested(0, [bytes(WGPEER_A.PUBLIC_KEY, Buffer.from(PEER, "base64"))])])],
    });
    return [part, control(NLMSG.DONE, seq, 0)];
  });
  return { k, client: new KernelWireguardClient("twill-wg", c), c };
}

const failure = async (p: Promise<unknown>): Promise<KernelError> => {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(KernelError);
    return err as KernelError;
  }
  throw new Error("did not fail");
};

describe("KernelWireguardClient", () => {
  it("says the kernel has no WireGuard when nlctrl knows no family \"wireguard\"", async () => {
    const { client } = kernel({ wireguard: false });
    const err = await failure(client.get());
    expect(err).toBeInstanceOf(NoKernelWireguardError);
    expect(err.message).toBe('failed to read WireGuard device "twill-wg": the kernel has no WireGuard (generic netlink family "wireguard" not found)');
    expect(err.errno).toBe(2);
    expect((await failure(client.set({ listenPort: 51820 }))).message).toMatch(/^failed to configure WireGuard device "twill-wg": the kernel has no WireGuard/);
  });

  it("reads the device by its index, asking for the family once", async () => {
    const { client, k, c } = kernel();
    expect(await client.get()).toEqual({ privateKey: null, listenPort: 51820, fwmark: 0, peers: [expect.objectContaining({ publicKey: PEER, allowedIps: [] })] });
    await client.get();
    expect(k.sent.map((s) => s.type)).toEqual([0x10, RTM.GETLINK, FAMILY, RTM.GETLINK, FAMILY]);
    const dump = decode(c.sent[2]!)[0]!;
    expect(dump.flags).toBe(NLM_F.REQUEST | NLM_F.DUMP);
  });

  it("sends a large set in several messages, each acknowledged, and stops at the first refused, naming it", async () => {
    const peers: PeerChange[] = Array.from({ length: 200 }, (_, i) => ({ op: "set", publicKey: Buffer.alloc(32, i + 1).toString("base64"), endpoint: `10.20.0.${i + 1}:51820`, allowedIps: [`10.${i}.0.0/16`] }));
    const ok = kernel();
    await ok.client.set({ peers });
    const sets = ok.k.sent.filter((s) => s.cmd === WG_CMD.SET_DEVICE).length;
    expect(sets).toBeGreaterThan(2);

    const { client, k } = kernel({ setErrno: (n) => (n === 2 ? 22 : 0) });
    const err = await failure(client.set({ peers }));
    expect(err.message).toBe(`failed to configure WireGuard device "twill-wg" (message 2 of ${sets}): Invalid argument (EINVAL)`);
    expect(err.errno).toBe(22);
    expect(err.failedStep).toBe(2);
    expect(k.sent.filter((s) => s.cmd === WG_CMD.SET_DEVICE)).toHaveLength(2);
  });

  it("sends nothing for an empty set, and refuses a bad value before sending", async () => {
    const { client, k } = kernel();
    await client.set({ peers: [] });
    expect(k.sent).toEqual([]);
    expect((await failure(client.set({ peers: [{ op: "set", publicKey: PEER, endpoint: "nothere" }] }))).message).toMatch(/^failed to configure WireGuard device "twill-wg": refused WireGuard endpoint/);
    expect(k.sent.some((s) => s.cmd === WG_CMD.SET_DEVICE)).toBe(false);
  });

  it("names a missing device, and one that is not the kernel's WireGuard (EOPNOTSUPP)", async () => {
    const gone = await failure(kernel({ link: false }).client.get());
    expect(gone.message).toBe('failed to read WireGuard device "twill-wg": no link "twill-wg": No such device (ENODEV)');
    expect(gone.notFound).toBe(true);
    const tun = await failure(kernel({ getErrno: 95 }).client.get());
    expect(tun.message).toBe('failed to read WireGuard device "twill-wg": "twill-wg" is not a kernel WireGuard device: Operation not supported (EOPNOTSUPP)');
    expect(tun.errno).toBe(95);
  });
});
