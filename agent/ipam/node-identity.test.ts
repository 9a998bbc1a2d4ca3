import { describe, expect, it } from "vitest";
import { nodeIdentityProblem, type RawNode } from "./node-identity.js";

const node = (...addresses: [string, string][]): RawNode => ({ status: { addresses: addresses.map(([type, address]) => ({ type, address })) } });
const OWN = ["127.0.0.1", "::1", "192.168.1.10", "fe80::1%eth0", "2001:db8::10"];

describe("whether the node name is this node", () => {
  it("accepts a Node that lists one of this host's interface addresses, of either family, in any text form", () => {
    expect(nodeIdentityProblem("node-0", node(["InternalIP", "192.168.1.10"]), OWN)).toBeNull();
    expect(nodeIdentityProblem("node-0", node(["ExternalIP", "203.0.113.7"], ["InternalIP", "2001:DB8:0::10"]), OWN)).toBeNull();
  });

  it("refuses a name with no Node, and says the name must be kubelet's", () => {
    expect(nodeIdentityProblem("my-host", null, OWN)).toMatch(/^no Node named "my-host" in the API: --node-name must be kubelet's node name$/);
  });

  it("refuses another node's Node (none of its addresses is here), naming its addresses", () => {
    expect(nodeIdentityProblem("node-1", node(["InternalIP", "192.168.1.11"], ["Hostname", "node-1"]), OWN)).toBe(
      'Node "node-1" is not this host: none of its addresses (192.168.1.11) is on this host\'s interfaces; --node-name must be kubelet\'s node name',
    );
  });

  it("proves nothing by loopback, a Hostname entry or a Node without addresses", () => {
    expect(nodeIdentityProblem("n", node(["InternalIP", "127.0.0.1"], ["InternalIP", "::1"]), OWN)).toMatch(/addresses \(127\.0\.0\.1, ::1\)/);
    expect(nodeIdentityProblem("n", node(["Hostname", "192.168.1.10"]), OWN)).toMatch(/addresses \(none\)/);
    expect(nodeIdentityProblem("n", {}, OWN)).toMatch(/addresses \(none\)/);
    expect(nodeIdentityProblem("n", node(["InternalIP", "not-an-ip"]), ["not-an-ip"])).toMatch(/addresses \(none\)/);
  });
});
