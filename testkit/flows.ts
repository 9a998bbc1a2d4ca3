import type { FlowRecord } from "../agent/flows/record.js";

/**
 * Flow records for the tests of agent/flows: an allowed connection from default/client to
 * default/web on this node, changed by `over`.
 */
export function flowRecord(over: Partial<FlowRecord> = {}): FlowRecord {
  return {
    time: "2026-01-02T12:03:04.123Z",
    event: "start",
    verdict: "allowed",
    direction: "ingress",
    pod: "default/web",
    protocol: "TCP",
    source: { ip: "10.0.0.11", port: 43210, pod: "default/client" },
    destination: { ip: "10.0.0.10", port: 8080, pod: "default/web" },
    policies: ["default/allow-client"],
    ...over,
  };
}

/** A drop of a packet from `source` (default: an address no pod holds) to default/web. */
export const droppedRecord = (over: Partial<FlowRecord> = {}): FlowRecord =>
  flowRecord({ event: "drop", verdict: "dropped", source: { ip: "192.0.2.1", port: 5555, pod: null }, policies: ["default/deny-all"], ...over });
