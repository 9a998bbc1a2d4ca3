import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { droppedRecord, flowRecord } from "../../testkit/flows.js";
import { boundedLabel, createFlowMetrics } from "./metrics.js";

const values = async (registry: Registry, name: string) =>
  Object.fromEntries(((await registry.getSingleMetric(name)!.get()).values as { labels: Record<string, string>; value: number }[]).map((v) => [Object.values(v.labels).join(" "), v.value]));

describe("flow metrics", () => {
  it("count connections at their start and drops, by namespace of this node's pod and verdict", async () => {
    const registry = new Registry();
    const m = createFlowMetrics(registry);
    m.count(flowRecord());
    m.count(flowRecord({ event: "end" }));
    m.count(flowRecord({ pod: "team-x/api", direction: "egress" }));
    m.count(droppedRecord());
    m.count(droppedRecord({ policies: ["default/a", "default/b"] }));
    m.count(droppedRecord({ policies: [] }));
    expect(await values(registry, "twill_flows_total")).toEqual({ "default allowed": 1, "team-x allowed": 1, "default dropped": 3 });
    expect(await values(registry, "twill_flow_drops_total")).toEqual({ "default default/deny-all": 1, "default default/a": 1, "default none": 1 });
  });

  it("count what is lost, each reason shown from the start", async () => {
    const registry = new Registry();
    const m = createFlowMetrics(registry);
    expect(await values(registry, "twill_flows_lost_total")).toEqual({ overflow: 0, rate: 0, "unknown-prefix": 0 });
    m.countLost("rate");
    m.countLost("overflow", 12);
    expect(await values(registry, "twill_flows_lost_total")).toEqual({ overflow: 12, rate: 1, "unknown-prefix": 0 });
  });

  it("a tenant's names take a bounded number of label values", async () => {
    const registry = new Registry();
    const m = createFlowMetrics(registry, 3);
    for (let i = 0; i < 10; i++) m.count(droppedRecord({ pod: `ns-${i}/web`, policies: [`ns-${i}/deny`] }));
    m.count(droppedRecord({ pod: "ns-1/web", policies: ["ns-1/deny"] }));
    expect(await values(registry, "twill_flows_total")).toEqual({ "ns-0 dropped": 1, "ns-1 dropped": 2, "ns-2 dropped": 1, "other dropped": 7 });
    expect(Object.keys(await values(registry, "twill_flow_drops_total"))).toHaveLength(4);
  });
});

describe("boundedLabel", () => {
  it("the first values seen, then other; a value seen stays itself", () => {
    const label = boundedLabel(2);
    expect(["a", "b", "c", "a", "d", "b"].map(label)).toEqual(["a", "b", "other", "a", "other", "b"]);
  });
});
