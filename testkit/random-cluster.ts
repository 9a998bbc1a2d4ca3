import type { LabelSelector, NamespaceInfo, NetworkPolicy, PodInfo, PolicyPeer, PolicyPort, PolicyRule, PolicySnapshot } from "../agent/policy/types.js";
import { NODE } from "./policy.js";

/**
 * Random clusters and changes to them, from a seed, for the NetworkPolicy compilers' property
 * tests: a handful of namespaces, pods and policies over few labels and addresses, so that
 * selectors match, pods share addresses (a Terminating pod and its successor), ipBlocks cover
 * pod addresses, and now and then something cannot be read (a bad address, selector, CIDR or
 * port) or a name is listed twice.
 */

/** mulberry32: a small seeded generator, so a failing case can be run again by its seed. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => next() < p;
  const some = <T>(xs: readonly T[], p = 0.5): T[] => xs.filter(() => chance(p));
  return { int, pick, chance, some };
}
export type Rng = ReturnType<typeof rng>;

const NAMESPACES = ["a", "b", "c", "d"];
// Few addresses, so pods share them (a Terminating pod and its successor) and ipBlocks cover some.
const V4 = Array.from({ length: 12 }, (_, i) => `10.0.0.${i + 1}`);
const V6 = ["fd00::1", "fd00::2", "fd00::3", "fd00:0::3", "fd00::a", "fd00::1:1"];
const BAD_IPS = ["10.0.0.300", "not-an-ip"];

function labels(r: Rng): Record<string, string> {
  const out: Record<string, string> = {};
  if (r.chance(0.8)) out.app = r.pick(["web", "db", "api"]);
  if (r.chance(0.5)) out.role = r.pick(["client", "server"]);
  return out;
}

function selector(r: Rng, keys: string[], values: string[]): LabelSelector {
  switch (r.int(6)) {
    case 0:
      return {};
    case 1:
    case 2:
      return { matchLabels: { [r.pick(keys)]: r.pick(values) } };
    case 3:
      return { matchExpressions: [{ key: r.pick(keys), operator: r.pick(["In", "NotIn"] as const), values: r.some(values) }] };
    case 4:
      return { matchExpressions: [{ key: r.pick(keys), operator: r.pick(["Exists", "DoesNotExist"] as const) }] };
    default:
      // Unreadable now and then: the policy is refused, for itself alone.
      return r.chance(0.1) ? { matchExpressions: [{ key: "app", operator: "In", values: 5 as never }] } : { matchLabels: { [r.pick(keys)]: r.pick(values) }, matchExpressions: [{ key: r.pick(keys), operator: "Exists" }] };
  }
}
const podSelector = (r: Rng) => selector(r, ["app", "role"], ["web", "db", "api", "client", "server"]);
const namespaceSelector = (r: Rng) => selector(r, ["team", "env", "kubernetes.io/metadata.name"], ["x", "y", "prod", "a", "b"]);

function peer(r: Rng): PolicyPeer {
  switch (r.int(8)) {
    case 0:
      return { podSelector: podSelector(r) };
    case 1:
      return { namespaceSelector: namespaceSelector(r) };
    case 2:
      return { podSelector: podSelector(r), namespaceSelector: namespaceSelector(r) };
    case 3:
      return { ipBlock: { cidr: r.pick(["10.0.0.0/29", "10.0.0.8/30", "0.0.0.0/0", "10.0.0.4/32"]), ...(r.chance(0.5) ? { except: [r.pick(["10.0.0.2/31", "10.0.0.9/32"])] } : {}) } };
    case 4:
      return { ipBlock: { cidr: r.chance(0.9) ? r.pick(["fd00::/125", "fd00::/64"]) : "10.0.0.0/33" } };
    case 5:
      return r.chance(0.3) ? {} : { podSelector: {} };
    default:
      return { namespaceSelector: {}, podSelector: podSelector(r) };
  }
}

function port(r: Rng): PolicyPort {
  switch (r.int(7)) {
    case 0:
      return { port: 80 };
    case 1:
      return { port: "http" };
    case 2:
      return { protocol: "UDP", port: "dns" };
    case 3:
      return { protocol: "UDP" };
    case 4:
      return { port: 8000, endPort: 8100 };
    case 5:
      return { protocol: "SCTP", port: "http" };
    default:
      return r.chance(0.1) ? { port: 70000 } : { port: "metrics" };
  }
}

function rule(r: Rng): PolicyRule {
  const out: PolicyRule = {};
  if (r.chance(0.8)) out.peers = Array.from({ length: 1 + r.int(2) }, () => peer(r));
  if (r.chance(0.6)) out.ports = Array.from({ length: 1 + r.int(2) }, () => port(r));
  return out;
}

function randomPolicy(r: Rng, name: string, namespace = r.pick(r.chance(0.8) ? NAMESPACES.slice(0, 2) : NAMESPACES)): NetworkPolicy {
  return {
    namespace,
    name,
    podSelector: podSelector(r),
    policyTypes: r.pick([["ingress"], ["egress"], ["ingress", "egress"], ["ingress", "egress"], []] as const).slice(),
    ingress: Array.from({ length: r.int(3) }, () => rule(r)),
    egress: Array.from({ length: r.int(3) }, () => rule(r)),
  };
}

function randomPod(r: Rng, name: string, namespace = r.pick(r.chance(0.8) ? NAMESPACES.slice(0, 2) : NAMESPACES)): PodInfo {
  const ips = [...r.some([r.pick(V4), r.pick(V6)], 0.7)];
  if (r.chance(0.1)) ips.push(r.pick(BAD_IPS));
  return {
    namespace,
    name,
    nodeName: r.chance(0.6) ? NODE : "node-b",
    labels: labels(r),
    ips,
    ports: r.some([
      { name: "http", port: r.pick([80, 8080]), protocol: "TCP" as const },
      { name: "dns", port: 53, protocol: "UDP" as const },
      { name: "metrics", port: r.chance(0.9) ? 9090 : 0, protocol: "TCP" as const },
    ]),
    ...(r.chance(0.15) ? { terminating: true } : {}),
    ...(r.chance(0.7) ? { createdAt: r.pick([1000, 2000, 3000]) } : {}),
  };
}

function randomNamespace(r: Rng, name: string): NamespaceInfo {
  return { name, labels: { "kubernetes.io/metadata.name": name, ...(r.chance(0.7) ? { team: r.pick(["x", "y"]) } : {}), ...(r.chance(0.5) ? { env: "prod" } : {}) } };
}

/** One change to a cluster: a pod, a namespace or a policy comes, goes or changes. */
export function change(r: Rng, s: PolicySnapshot): PolicySnapshot {
  const pods = [...s.pods];
  const policies = [...s.policies];
  const namespaces = [...s.namespaces];
  const at = <T>(xs: T[]) => r.int(xs.length);
  switch (r.int(14)) {
    case 0:
    case 1:
    case 12:
      pods.push(randomPod(r, `p${r.int(20)}`));
      break;
    case 2:
      if (pods.length > 0) pods.splice(at(pods), 1);
      break;
    case 3:
    case 13: {
      const i = at(pods);
      if (pods[i]) pods[i] = { ...pods[i], labels: labels(r) };
      break;
    }
    case 4: {
      const i = at(pods);
      if (pods[i]) pods[i] = r.chance(0.5) ? { ...pods[i], ips: randomPod(r, "x").ips } : { ...pods[i], nodeName: pods[i].nodeName === NODE ? "node-b" : NODE, terminating: r.chance(0.3) };
      break;
    }
    case 5: {
      // A pod of the same name anew: another namespace's, or the same with everything changed.
      const i = at(pods);
      if (pods[i]) pods[i] = randomPod(r, pods[i].name, r.chance(0.5) ? pods[i].namespace : undefined);
      break;
    }
    case 6: {
      const name = r.pick(NAMESPACES);
      const i = namespaces.findIndex((n) => n.name === name);
      if (i >= 0 && r.chance(0.3)) namespaces.splice(i, 1);
      else if (i >= 0) namespaces[i] = randomNamespace(r, name);
      else namespaces.push(randomNamespace(r, name));
      break;
    }
    case 7:
    case 8:
      policies.push(randomPolicy(r, `q${r.int(8)}`));
      break;
    case 9:
      if (policies.length > 0) policies.splice(at(policies), 1);
      break;
    case 10: {
      const i = at(policies);
      if (policies[i]) policies[i] = r.chance(0.5) ? randomPolicy(r, policies[i].name, policies[i].namespace) : { ...policies[i], podSelector: podSelector(r) };
      break;
    }
    default: {
      // The same object twice in a list: the first of a name counts.
      const i = at(pods);
      if (pods[i]) pods.push({ ...pods[i], labels: labels(r) });
    }
  }
  return { pods, policies, namespaces };
}

export function randomCluster(r: Rng): PolicySnapshot {
  return {
    namespaces: NAMESPACES.filter(() => r.chance(0.8)).map((n) => randomNamespace(r, n)),
    pods: Array.from({ length: 2 + r.int(12) }, (_, i) => randomPod(r, `p${i}`)),
    policies: Array.from({ length: 1 + r.int(5) }, (_, i) => randomPolicy(r, `q${i}`)),
  };
}

