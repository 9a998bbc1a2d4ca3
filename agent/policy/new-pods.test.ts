import { describe, expect, it } from "vitest";
import { policyReadyOf, reservedAddressesKey, withReservedAddresses } from "./new-pods.js";
import type { PodInfo, PolicySnapshot } from "./types.js";

const pod = (namespace: string, name: string, uid: string, nodeName: string, ips: string[] = []): PodInfo => ({
  namespace, name, uid, nodeName, labels: {}, ips, ports: [],
});
const snapshot = (pods: PodInfo[], policyNamespaces: string[] = []): PolicySnapshot => ({
  policies: policyNamespaces.map((namespace, i) => ({ namespace, name: `p${i}`, podSelector: {}, policyTypes: ["ingress"], ingress: [], egress: [] })),
  pods,
  namespaces: [],
});
const ref = (namespace: string, name: string, uid = "") => ({ namespace, name, uid });

describe("withReservedAddresses", () => {
  it("gives a local pod the address reserved for its UID before the API reports it", () => {
    const s = withReservedAddresses(snapshot([pod("shop", "web", "u1", "n1")]), "n1", [{ ip: "10.0.0.6", pod: ref("shop", "web", "u1") }]);
    expect(s.pods[0]!.ips).toEqual(["10.0.0.6"]);
  });

  it("matches by namespace and name when the runtime passed no UID", () => {
    const s = withReservedAddresses(snapshot([pod("shop", "web", "u1", "n1")]), "n1", [{ ip: "10.0.0.6", pod: ref("shop", "web") }]);
    expect(s.pods[0]!.ips).toEqual(["10.0.0.6"]);
  });

  it("does not give a reservation of an older pod (another UID) to its namesake", () => {
    const s = withReservedAddresses(snapshot([pod("shop", "web", "u2", "n1")]), "n1", [{ ip: "10.0.0.6", pod: ref("shop", "web", "u1") }]);
    expect(s.pods[0]!.ips).toEqual([]);
  });

  it("leaves pods of other nodes, reservations naming no pod, and addresses the API gives another pod alone", () => {
    const remote = pod("shop", "far", "u3", "n2");
    const holder = pod("shop", "old", "u4", "n1", ["10.0.0.7"]);
    const s = withReservedAddresses(snapshot([pod("shop", "web", "u1", "n1"), remote, holder]), "n1", [
      { ip: "10.0.0.5", pod: ref("shop", "far", "u3") },
      { ip: "10.0.0.8" },
      { ip: "10.0.0.7", pod: ref("shop", "web", "u1") },
    ]);
    expect(s.pods.map((p) => p.ips)).toEqual([[], [], ["10.0.0.7"]]);
  });

  it("adds to what the API reports without repeating it", () => {
    const s = withReservedAddresses(snapshot([pod("shop", "web", "u1", "n1", ["10.0.0.6"])]), "n1", [
      { ip: "10.0.0.6", pod: ref("shop", "web", "u1") },
      { ip: "fd00::6", pod: ref("shop", "web", "u1") },
    ]);
    expect(s.pods[0]!.ips).toEqual(["10.0.0.6", "fd00::6"]);
  });
});

describe("policyReadyOf", () => {
  it("lists the namespaces with policies and this node's pod addresses", () => {
    const s = snapshot([pod("shop", "web", "u1", "n1", ["10.0.0.6"]), pod("shop", "far", "u2", "n2", ["10.0.1.6"]), pod("b", "x", "u3", "n1", ["10.0.0.2"])], ["shop", "a", "shop"]);
    expect(policyReadyOf(s, "n1")).toEqual({ namespaces: ["a", "shop"], ips: ["10.0.0.2", "10.0.0.6"] });
  });
});

describe("reservedAddressesKey", () => {
  const s = snapshot([pod("shop", "web", "u1", "n1"), pod("shop", "api", "u2", "n1")]);
  const web = { ip: "10.0.0.6", pod: ref("shop", "web", "u1") };

  it("stays when only what the join ignores changes: an address not yet naming its pod, a reservation's other fields", () => {
    const before = [web];
    const after = [{ ...web, createdAt: 5, containerID: "c1" }, { ip: "10.0.0.7" }];
    expect(reservedAddressesKey(after)).toBe(reservedAddressesKey(before));
    expect(withReservedAddresses(s, "n1", after)).toEqual(withReservedAddresses(s, "n1", before));
  });

  it("changes when a reservation names its pod, and with the pod it names", () => {
    const named = [web, { ip: "10.0.0.7", pod: ref("shop", "api", "u2") }];
    expect(reservedAddressesKey(named)).not.toBe(reservedAddressesKey([web, { ip: "10.0.0.7" }]));
    expect(reservedAddressesKey([{ ...web, pod: ref("shop", "web", "u9") }])).not.toBe(reservedAddressesKey([web]));
    expect(withReservedAddresses(s, "n1", named).pods[1]!.ips).toEqual(["10.0.0.7"]);
  });
});
