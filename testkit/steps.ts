import type { NetStep } from "../shared/kernel/pod-kernel.js";

/**
 * A plugin step in `ip`'s words: what it does, as an operator would type it, so tests of plans
 * read like the commands they stand for.
 */
export function stepLine(s: NetStep): readonly (string | number)[] {
  switch (s.op) {
    case "set-link":
      return [
        "link", "set", "dev", s.dev,
        ...(s.mtu !== undefined ? ["mtu", s.mtu] : []),
        ...(s.mac ? ["address", s.mac] : []),
        ...(s.promisc ? ["promisc", "on"] : []),
        ...(s.up ? ["up"] : []),
      ];
    case "add-veth": {
      const v = s.veth;
      const mtu = v.mtu !== undefined ? ["mtu", v.mtu] : [];
      return [
        "link", "add", "name", v.name, ...mtu, "address", v.mac, "master", v.master, "up",
        "type", "veth", "peer", "name", v.peer.name, ...mtu, ...(v.peer.mac ? ["address", v.peer.mac] : []), "netns", v.peer.netns,
      ];
    }
    case "hairpin":
      return ["link", "set", "dev", s.dev, "type", "bridge_slave", "hairpin", "on"];
    case "add-address":
      // No DAD: the address is usable at once; DAD would hold an IPv6 pod for a second or more (k8s#54651).
      return ["addr", s.replace ? "replace" : "add", s.cidr, "dev", s.dev, ...(s.cidr.includes(":") ? ["nodad"] : [])];
    case "add-route":
      return ["route", "add", s.dst, ...(s.via ? ["via", s.via] : []), "dev", s.dev];
  }
}
