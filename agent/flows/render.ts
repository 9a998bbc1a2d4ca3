import type { FlowEndpoint, FlowRecord } from "./record.js";

/**
 * A flow as a person reads it, one line:
 *
 *   12:03:04.123  dropped  ingress  default/client 10.244.1.5:43210 -> default/server 10.244.2.7:80 TCP  by default/deny-all
 *
 * The time of day is the record's, in UTC as the record has it; `start`/`end` for an allowed
 * connection, `dropped` for a drop; a pod's end as its name and address, any other as its
 * address; the Service the client asked for after `via`; the deciding policies after `by`
 * (none for a pod no policy isolates); packets and bytes on an end, when counted.
 */
export function renderFlow(r: FlowRecord): string {
  const what = r.verdict === "dropped" ? "dropped" : r.event;
  let line = `${r.time.slice(11, 23)}  ${what.padEnd(7)}  ${r.direction.padEnd(7)}  ${endpoint(r.source)} -> ${endpoint(r.destination)} ${r.protocol}`;
  if (r.service) line += ` via ${hostPort(r.service.ip, r.service.port)}`;
  if (r.policies.length > 0) line += `  by ${r.policies.join(",")}`;
  if (r.packets !== undefined) line += `  ${r.packets} packets`;
  if (r.bytes !== undefined) line += `${r.packets !== undefined ? "," : " "} ${r.bytes} bytes`;
  return line;
}

/** `-o json`: the record as one JSON line (without its newline). */
export const renderFlowJson = (r: FlowRecord): string => JSON.stringify(r);

const endpoint = (e: FlowEndpoint): string => (e.pod ? `${e.pod} ${hostPort(e.ip, e.port)}` : hostPort(e.ip, e.port));

const hostPort = (ip: string, port: number | null): string => (port === null ? ip : ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);
