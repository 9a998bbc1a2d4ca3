import { hostGwPath } from "./host-gw.js";
import type { BackendKind, PathFinder } from "./kind.js";
import { vtepDevice, vxlanOverhead, vxlanPath } from "./vxlan.js";

/**
 * auto: host-gw to every peer where it works (same segment, a next hop for every pod family),
 * VXLAN to every other. It keeps a VTEP for those, and its MTU is VXLAN's: a pod cannot know
 * which peer it will talk to.
 */

export const autoPath: PathFinder = (peer, view) => {
  const direct = hostGwPath(peer, view);
  return direct.errors.length === 0 ? direct : vxlanPath(peer, view);
};

export const auto: BackendKind = { type: "auto", overhead: vxlanOverhead, reach: autoPath, ...vtepDevice };
