import { describe, expect, it } from "vitest";
import { droppedRecord, flowRecord } from "../../testkit/flows.js";
import { ConfigError } from "../errors.js";
import { matchesFilter, parseFlowFilter } from "./filter.js";

describe("parseFlowFilter", () => {
  it("takes NAMESPACE/NAME and a verdict", () => {
    expect(parseFlowFilter({})).toEqual({});
    expect(parseFlowFilter({ pod: "kube-system/coredns-5d78c9869d-x2x4v", verdict: "dropped" })).toEqual({ pod: "kube-system/coredns-5d78c9869d-x2x4v", verdict: "dropped" });
    expect(parseFlowFilter({ pod: "default/web.v1" })).toEqual({ pod: "default/web.v1" });
  });

  it.each([
    ["web", "give NAMESPACE/NAME, e.g. default/web"],
    ["default/", "give NAMESPACE/NAME, e.g. default/web"],
    ["/web", "give NAMESPACE/NAME, e.g. default/web"],
    ["a/b/c", "give NAMESPACE/NAME, e.g. default/web"],
    ["Default/web", '"Default" is no namespace name'],
    ["my.ns/web", '"my.ns" is no namespace name'],
    [`${"n".repeat(64)}/web`, "is no namespace name"],
    ["default/Web", '"Web" is no pod name'],
    ["default/web-", '"web-" is no pod name'],
    [`default/${"p".repeat(254)}`, "is no pod name"],
  ])("refuses --pod %j, saying why", (pod, why) => {
    const err = (() => {
      try {
        parseFlowFilter({ pod });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(`--pod ${JSON.stringify(pod)}: `);
    expect((err as Error).message).toContain(why);
  });

  it("refuses a verdict other than allowed or dropped", () => {
    expect(() => parseFlowFilter({ verdict: "denied" })).toThrow('--verdict "denied": give allowed or dropped');
  });
});

describe("matchesFilter", () => {
  it("--pod: the record's pod or either end's", () => {
    const r = flowRecord();
    expect(matchesFilter({ pod: "default/web" }, r)).toBe(true);
    expect(matchesFilter({ pod: "default/client" }, r)).toBe(true);
    expect(matchesFilter({ pod: "default/client" }, flowRecord({ direction: "egress", pod: "default/client", destination: { ip: "192.0.2.1", port: 443, pod: null } }))).toBe(true);
    expect(matchesFilter({ pod: "default/other" }, r)).toBe(false);
    expect(matchesFilter({ pod: "default/client" }, droppedRecord())).toBe(false);
  });

  it("--verdict", () => {
    expect(matchesFilter({ verdict: "dropped" }, droppedRecord())).toBe(true);
    expect(matchesFilter({ verdict: "dropped" }, flowRecord())).toBe(false);
    expect(matchesFilter({ verdict: "allowed" }, flowRecord())).toBe(true);
  });

  it("both must match", () => {
    expect(matchesFilter({ pod: "default/web", verdict: "dropped" }, flowRecord())).toBe(false);
    expect(matchesFilter({ pod: "default/web", verdict: "dropped" }, droppedRecord())).toBe(true);
  });
});
