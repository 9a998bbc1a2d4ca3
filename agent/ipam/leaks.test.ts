import { describe, expect, it } from "vitest";
import { TORN_ADD_GRACE_MS, isApiUid, judgeReservations, leaked, livePod, type LivePod, type PodsView } from "./leaks.js";
import type { ReservationView } from "./store-view.js";

const MIN = 60_000;
const NOW = 1_000 * MIN;
const GRACE = 15 * MIN;

/** An apiserver-made UID (RFC 4122), numbered. */
const apiUid = (n: number) => `0000000${n}-aaaa-4bbb-8ccc-000000000000`.slice(-36);
const reservation = (ip: string, more: Partial<ReservationView> = {}): ReservationView => ({
  ip,
  containerID: `c-${ip}`,
  ifname: "eth0",
  pod: { namespace: "default", name: `web-${ip.split(".").at(-1)}`, uid: apiUid(Number(ip.split(".").at(-1))) },
  createdAt: NOW - 60 * MIN,
  predatesBoot: false,
  sandbox: "unknown",
  ...more,
});
const pod = (r: ReservationView, more: Partial<LivePod> = {}): LivePod => ({ ...r.pod!, ips: [r.ip], ...more });
const listed = (...pods: LivePod[]): PodsView => ({ kind: "listed", pods });
/** Suspected since `ago` ms before NOW (the agent's memory), or from now when undefined. */
const judge = (rs: ReservationView[], pods: PodsView, ago?: number) =>
  judgeReservations(rs, pods, { now: NOW, graceMs: GRACE, suspectSince: () => (ago === undefined ? undefined : NOW - ago) });
const states = (rs: ReservationView[], pods: PodsView, ago?: number) => judge(rs, pods, ago).map((j) => j.verdict.state);

describe("leak decision", () => {
  const a = reservation("10.244.1.2");
  const b = reservation("10.244.1.3");

  it("keeps every address whose pod runs on this node", () => {
    expect(states([a, b], listed(pod(a), pod(b)), GRACE * 10)).toEqual(["held", "held"]);
  });

  it("releases the address of a pod gone from the node once it looked leaked for the grace period", () => {
    expect(states([a, b], listed(pod(a)), GRACE)).toEqual(["held", "leaked"]);
    const [, j] = judge([a, b], listed(pod(a)), GRACE);
    expect(j!.verdict).toMatchObject({ reason: "pod-not-on-node", why: expect.stringContaining(`default/web-3 (${apiUid(3)}) is not running on this node`) });
  });

  it("waits inside the grace period, and says when it will release", () => {
    const [j] = judge([b], listed(), GRACE - 1);
    expect(j!.verdict).toEqual(expect.objectContaining({ state: "pending", releaseAt: NOW + 1 }));
    expect(states([b], listed())).toEqual(["pending"]); // first seen now
  });

  it("starts the grace period at the reservation's creation when that is later than the suspicion", () => {
    const young = reservation("10.244.1.9", { createdAt: NOW - MIN });
    expect(states([young], listed(), GRACE * 10)).toEqual(["pending"]);
  });

  it("releases a pod's address when the pod moved to another node (it is no longer among this node's pods)", () => {
    // The API lists pods by spec.nodeName: a pod that moved is not in this node's list.
    expect(leaked(judge([a], listed(), GRACE)).map((j) => j.reservation.ip)).toEqual(["10.244.1.2"]);
  });

  it("releases the old sandbox's address when the pod restarted under a new UID, and keeps the new one", () => {
    const renewed = reservation("10.244.1.7", { pod: { ...a.pod!, uid: apiUid(9) } });
    const judged = judge([a, renewed], listed(pod(renewed)), GRACE);
    expect(judged.map((j) => j.verdict.state)).toEqual(["leaked", "held"]);
    expect(judged[0]!.verdict).toMatchObject({ why: expect.stringContaining(`under a new UID ${apiUid(9)} (was ${apiUid(2)})`) });
  });

  it("releases a reservation from before the last boot, also when its pod's UID still runs here", () => {
    const old = reservation("10.244.1.4", { predatesBoot: true });
    expect(states([old], listed(pod(old, { ips: [] })), GRACE)).toEqual(["leaked"]);
    expect(judge([old], listed(), GRACE)[0]!.verdict).toMatchObject({ reason: "earlier-boot" });
  });

  it("never releases an address a live pod lists in status.podIPs, whatever the record says", () => {
    const old = reservation("10.244.1.4", { predatesBoot: true });
    const stranger: LivePod = { namespace: "kube-system", name: "other", uid: "uid-other", ips: ["10.244.1.4", "10.244.1.3"] };
    expect(states([old, b], listed(stranger), GRACE * 10)).toEqual(["held", "held"]);
  });

  it("releases nothing when the API is unreachable, not even what predates the boot", () => {
    const old = reservation("10.244.1.4", { predatesBoot: true });
    const judged = judge([a, old], { kind: "unavailable", reason: "timeout" }, GRACE * 10);
    expect(judged.map((j) => j.verdict.state)).toEqual(["kept", "kept"]);
    expect(leaked(judged)).toEqual([]);
  });

  it("without pods in the datastore, releases only what predates the boot", () => {
    const old = reservation("10.244.1.4", { predatesBoot: true });
    const none: PodsView = { kind: "none", reason: "the etcd datastore has no pods" };
    expect(states([a, old], none, GRACE)).toEqual(["kept", "leaked"]);
  });

  it("keeps a reservation with no pod recorded (host-local's) unless it predates the boot", () => {
    const { pod: _pod, ...bare } = a;
    expect(states([bare], listed(), GRACE * 10)).toEqual(["kept"]);
    expect(states([{ ...bare, predatesBoot: true }], listed(), GRACE)).toEqual(["leaked"]);
  });

  it("matches a static pod's reservation to its mirror pod", () => {
    const manifestHash = "6d1b5c0a7e6f4a3e9b0c1d2e3f4a5b6c";
    const staticPod = reservation("10.244.1.2", { pod: { ...a.pod!, uid: manifestHash } });
    const mirror: LivePod = { namespace: "default", name: "web-2", uid: apiUid(8), staticUid: manifestHash, ips: [] };
    expect(states([staticPod], listed(mirror), GRACE)).toEqual(["held"]);
  });

  it("matches a pod recorded without a UID by namespace and name", () => {
    const noUid = reservation("10.244.1.5", { pod: { namespace: "default", name: "web-5", uid: "" } });
    expect(states([noUid], listed(pod(noUid, { uid: "any", ips: [] })), GRACE)).toEqual(["held"]);
    expect(states([noUid], listed(), GRACE)).toEqual(["leaked"]);
  });
});

describe("leak decision: the node's identity, the sandbox, static pods and torn ADDs", () => {
  const a = reservation("10.244.1.2");
  const manifestHash = "6d1b5c0a7e6f4a3e9b0c1d2e3f4a5b6c";
  const staticPod = reservation("10.244.1.6", { pod: { namespace: "kube-system", name: "etcd-node-0", uid: manifestHash } });

  it("releases nothing at all while the node name is not shown to be this node's, whatever the rule", () => {
    const old = reservation("10.244.1.4", { predatesBoot: true });
    const empty = reservation("10.244.1.5", { containerID: "", ifname: "", torn: "empty" });
    const { pod: _pod, ...bare } = empty;
    const unverified: PodsView = { kind: "unverified", reason: 'no Node named "wrong" in the API' };
    const judged = judge([a, old, bare], unverified, GRACE * 100);
    expect(judged.map((j) => j.verdict)).toEqual([
      expect.objectContaining({ state: "kept", cause: "node-unverified", why: expect.stringContaining('no Node named "wrong"') }),
      expect.objectContaining({ state: "kept", cause: "node-unverified" }),
      expect.objectContaining({ state: "kept", cause: "node-unverified" }),
    ]);
  });

  it("releases an API pod's address though its veth is still on the node: a sandbox the runtime lost leaves its namespace mounted", () => {
    expect(states([reservation("10.244.1.3", { sandbox: "up" })], listed(), GRACE)).toEqual(["leaked"]);
  });

  it("keeps a static pod's address when the API shows no mirror pod, unless its sandbox is shown gone", () => {
    expect(isApiUid(apiUid(1))).toBe(true);
    expect(isApiUid(manifestHash)).toBe(false);
    expect(judge([staticPod], listed(), GRACE * 10)[0]!.verdict).toMatchObject({ state: "kept", cause: "static-pod" });
    expect(states([{ ...staticPod, sandbox: "up" }], listed(), GRACE * 10)).toEqual(["held"]);
    expect(judge([{ ...staticPod, sandbox: "up" }], listed(), GRACE * 10)[0]!.verdict).toMatchObject({ why: expect.stringContaining("still has its veth") });
    expect(states([{ ...staticPod, sandbox: "gone" }], listed(), GRACE * 10)).toEqual(["leaked"]);
    expect(states([{ ...staticPod, sandbox: "gone" }], listed(), GRACE - 1)).toEqual(["pending"]);
    // From an earlier boot it is gone whatever the API says.
    expect(states([{ ...staticPod, predatesBoot: true }], listed(), GRACE)).toEqual(["leaked"]);
  });

  it("releases what a killed ADD left (an empty file, an owner without its index entry) once older than the short grace", () => {
    const { pod: _p, ...noPod } = reservation("10.244.1.8");
    const empty: ReservationView = { ...noPod, containerID: "", ifname: "", torn: "empty", createdAt: NOW - TORN_ADD_GRACE_MS };
    const noIndex: ReservationView = { ...noPod, torn: "no-index", createdAt: NOW - TORN_ADD_GRACE_MS + 1 };
    const judged = judge([empty, noIndex], listed());
    expect(judged.map((j) => j.verdict)).toEqual([
      expect.objectContaining({ state: "leaked", reason: "torn-add", why: expect.stringContaining("empty reservation file") }),
      expect.objectContaining({ state: "pending", reason: "torn-add", releaseAt: NOW + 1 }),
    ]);
    // Without pods in the datastore an empty file too (nobody was ever handed the address), but
    // not an owner without its entry: a twill-ipam without the index made those.
    expect(states([empty, { ...noIndex, createdAt: 0 }], { kind: "none", reason: "local" })).toEqual(["leaked", "kept"]);
    // The same sandbox's retried ADD took another address and runs: this one is free all the same.
    expect(states([{ ...noIndex, createdAt: 0, sandbox: "up" }], listed())).toEqual(["leaked"]);
    // Never one a live pod lists, never with the API away.
    expect(states([empty], listed({ namespace: "x", name: "y", uid: apiUid(1), ips: [empty.ip] }))).toEqual(["held"]);
    expect(states([empty], { kind: "unavailable", reason: "timeout" })).toEqual(["kept"]);
  });
});

describe("livePod", () => {
  it("leaves finished pods out, and takes the addresses and a mirror pod's static UID", () => {
    expect(livePod({ metadata: { name: "done", uid: "u" }, status: { phase: "Succeeded", podIP: "10.0.0.1" } })).toBeNull();
    expect(livePod({ metadata: { name: "failed", uid: "u" }, status: { phase: "Failed" } })).toBeNull();
    expect(
      livePod({
        metadata: { namespace: "kube-system", name: "static", uid: "m", annotations: { "kubernetes.io/config.mirror": "s" } },
        status: { phase: "Running", podIP: "10.0.0.2", podIPs: [{ ip: "10.0.0.2" }, { ip: "fd00::2" }] },
      }),
    ).toEqual({ namespace: "kube-system", name: "static", uid: "m", staticUid: "s", ips: ["10.0.0.2", "fd00::2"] });
    expect(livePod({ metadata: { name: "pending", uid: "p" }, status: { phase: "Pending" } })).toMatchObject({ uid: "p", ips: [] });
  });
});
