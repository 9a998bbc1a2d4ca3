import { describe, expect, it } from "vitest";
import { namespaceView, podView, policyView } from "./kubernetes-views.js";

describe("NetworkPolicy objects", () => {
  it("defaults policyTypes as the API does", () => {
    expect(policyView({ metadata: { namespace: "a", name: "p" }, spec: { podSelector: {} } }).policyTypes).toEqual(["ingress"]);
    expect(policyView({ metadata: { namespace: "a", name: "p" }, spec: { podSelector: {}, egress: [{}] } }).policyTypes).toEqual(["ingress", "egress"]);
    expect(policyView({ metadata: { namespace: "a", name: "p" }, spec: { podSelector: {}, policyTypes: ["Egress"] } }).policyTypes).toEqual(["egress"]);
  });

  it("keeps peers, except blocks, named and numbered ports with their protocol", () => {
    const p = policyView({
      metadata: { namespace: "a", name: "p" },
      spec: {
        podSelector: { matchLabels: { app: "web" } },
        ingress: [
          {
            _from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } }, { namespaceSelector: {}, podSelector: { matchExpressions: [{ key: "x", operator: "Exists" }] } }],
            ports: [{ port: "http" }, { protocol: "UDP", port: 53 }, { port: 8000, endPort: 8080 }],
          },
          {},
        ],
      },
    });
    expect(p).toEqual({
      namespace: "a",
      name: "p",
      podSelector: { matchLabels: { app: "web" } },
      policyTypes: ["ingress"],
      ingress: [
        {
          peers: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } }, { namespaceSelector: {}, podSelector: { matchExpressions: [{ key: "x", operator: "Exists" }] } }],
          ports: [{ protocol: "TCP", port: "http" }, { protocol: "UDP", port: 53 }, { protocol: "TCP", port: 8000, endPort: 8080 }],
        },
        {},
      ],
      egress: [],
    });
  });

  it("reads ingress peers from a watch event's JSON (from) as from a listed model (_from)", () => {
    const raw = JSON.parse('{"metadata":{"namespace":"a","name":"p"},"spec":{"podSelector":{},"ingress":[{"from":[{"podSelector":{"matchLabels":{"x":"y"}}}]}]}}');
    expect(policyView(raw).ingress).toEqual([{ peers: [{ podSelector: { matchLabels: { x: "y" } } }] }]);
  });

  it("takes a pod's addresses and container ports, and leaves out hostNetwork and finished pods", () => {
    const pod = {
      metadata: { namespace: "a", name: "web", labels: { app: "web" } },
      spec: { nodeName: "n1", containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }, { containerPort: 53, protocol: "UDP" }] }] },
      status: { phase: "Running", podIP: "10.0.0.5", podIPs: [{ ip: "10.0.0.5" }, { ip: "fd00::5" }] },
    };
    expect(podView(pod)).toEqual({
      namespace: "a",
      name: "web",
      nodeName: "n1",
      labels: { app: "web" },
      ips: ["10.0.0.5", "fd00::5"],
      ports: [{ name: "http", port: 8080, protocol: "TCP" }, { port: 53, protocol: "UDP" }],
    });
    expect(podView({ ...pod, spec: { ...pod.spec, hostNetwork: true } })).toBeNull();
    expect(podView({ ...pod, status: { ...pod.status, phase: "Succeeded" } })).toBeNull();
    expect(podView({ ...pod, status: { phase: "Pending" } })?.ips).toEqual([]);
  });

  it("takes a namespace's labels", () => {
    expect(namespaceView({ metadata: { name: "a", labels: { team: "x" } } })).toEqual({ name: "a", labels: { team: "x" } });
  });

  it("reads a pod's addresses as the apiserver does, drops what is no address, and tells a pod being deleted and its age", () => {
    const raw = JSON.parse(
      '{"metadata":{"namespace":"a","name":"web","creationTimestamp":"2026-01-02T03:04:05Z","deletionTimestamp":"2026-01-02T04:00:00Z"},' +
        '"spec":{"nodeName":"n1"},"status":{"phase":"Running","podIPs":[{"ip":"010.0.0.05"},{"ip":"fd00::5"},{"ip":"10.0.0.5"},{"ip":"10.0.0.5\\"; flush"}]}}',
    );
    const view = podView(raw)!;
    expect(view.ips).toEqual(["10.0.0.5", "fd00::5"]);
    expect(view.terminating).toBe(true);
    expect(view.createdAt).toBe(Date.parse("2026-01-02T03:04:05Z"));
    // A listed pod's timestamps are Dates.
    const listed = podView({ metadata: { namespace: "a", name: "b", creationTimestamp: new Date(5_000) }, status: { podIP: "10.0.0.6" } })!;
    expect(listed).toMatchObject({ ips: ["10.0.0.6"], createdAt: 5_000 });
    expect(listed.terminating).toBeUndefined();
  });
});
