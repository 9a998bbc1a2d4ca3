import { describe, expect, it } from "vitest";
import { droppedRecord, flowRecord } from "../../testkit/flows.js";
import { renderFlow, renderFlowJson } from "./render.js";

describe("renderFlow", () => {
  it("a drop: time, verdict, direction, both ends, protocol, the isolating policies", () => {
    const r = droppedRecord({ source: { ip: "10.244.1.5", port: 43210, pod: "default/client" }, destination: { ip: "10.244.2.7", port: 80, pod: "default/server" }, pod: "default/server" });
    expect(renderFlow(r)).toBe("12:03:04.123  dropped  ingress  default/client 10.244.1.5:43210 -> default/server 10.244.2.7:80 TCP  by default/deny-all");
  });

  it("an allowed connection's start and end; addresses alone for what is no pod", () => {
    const start = flowRecord({ direction: "egress", pod: "default/client", source: { ip: "10.0.0.11", port: 43210, pod: "default/client" }, destination: { ip: "192.0.2.1", port: 443, pod: null }, policies: [] });
    expect(renderFlow(start)).toBe("12:03:04.123  start    egress   default/client 10.0.0.11:43210 -> 192.0.2.1:443 TCP");
    expect(renderFlow({ ...start, event: "end", packets: 12, bytes: 3400 })).toBe("12:03:04.123  end      egress   default/client 10.0.0.11:43210 -> 192.0.2.1:443 TCP  12 packets, 3400 bytes");
  });

  it("a Service's address after via; IPv6 in brackets; no port for ICMP; several policies", () => {
    const r = flowRecord({
      protocol: "UDP",
      source: { ip: "fd00::11", port: 5353, pod: "default/client" },
      destination: { ip: "fd00::10", port: 53, pod: "default/web" },
      service: { ip: "fd00:96::a", port: 53 },
      policies: ["default/a", "default/b"],
    });
    expect(renderFlow(r)).toBe("12:03:04.123  start    ingress  default/client [fd00::11]:5353 -> default/web [fd00::10]:53 UDP via [fd00:96::a]:53  by default/a,default/b");
    const icmp = flowRecord({ protocol: "ICMP", source: { ip: "192.0.2.1", port: null, pod: null }, destination: { ip: "10.0.0.10", port: null, pod: "default/web" }, policies: [] });
    expect(renderFlow(icmp)).toBe("12:03:04.123  start    ingress  192.0.2.1 -> default/web 10.0.0.10 ICMP");
  });

  it("-o json: the record, one line", () => {
    const r = flowRecord({ source: { ip: "10.0.0.11", port: 1, pod: "default/c\nlient" } });
    const line = renderFlowJson(r);
    expect(line).not.toContain("\n");
    expect(JSON.parse(line)).toEqual(r);
  });
});
