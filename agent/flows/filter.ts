import { ConfigError } from "../errors.js";
import type { FlowRecord } from "./record.js";

/** What `twilld flows --pod NS/NAME --verdict allowed|dropped` keeps. */
export interface FlowFilter {
  /** "ns/name": the record's pod, or either end's. */
  pod?: string;
  verdict?: FlowRecord["verdict"];
}

/** RFC 1123 label: what a namespace name is. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** RFC 1123 subdomain: what a pod name is. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const VERDICTS: readonly string[] = ["allowed", "dropped"] satisfies FlowRecord["verdict"][];

/** The flags, checked; a ConfigError says what is wrong with which. */
export function parseFlowFilter(flags: { pod?: string; verdict?: string }): FlowFilter {
  const out: FlowFilter = {};
  if (flags.pod !== undefined) out.pod = parsePodArgument(flags.pod);
  if (flags.verdict !== undefined) {
    if (!VERDICTS.includes(flags.verdict)) throw new ConfigError(`--verdict ${JSON.stringify(flags.verdict)}: give allowed or dropped`);
    out.verdict = flags.verdict as FlowRecord["verdict"];
  }
  return out;
}

/** `NAMESPACE/NAME`, as Kubernetes names them; anything else a ConfigError that says why. */
export function parsePodArgument(text: string): string {
  const fail = (why: string): never => {
    throw new ConfigError(`--pod ${JSON.stringify(text)}: ${why}`);
  };
  const parts = text.split("/");
  if (parts.length !== 2) fail("give NAMESPACE/NAME, e.g. default/web");
  const [namespace, name] = parts as [string, string];
  if (namespace === "" || name === "") fail("give NAMESPACE/NAME, e.g. default/web");
  if (namespace.length > 63 || !DNS_LABEL.test(namespace)) {
    fail(`${JSON.stringify(namespace)} is no namespace name (lower-case letters, digits and "-", at most 63, starting and ending with a letter or digit)`);
  }
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    fail(`${JSON.stringify(name)} is no pod name (lower-case letters, digits, "-" and ".", at most 253, starting and ending with a letter or digit)`);
  }
  return text;
}

export function matchesFilter(f: FlowFilter, r: FlowRecord): boolean {
  if (f.verdict !== undefined && r.verdict !== f.verdict) return false;
  if (f.pod !== undefined && r.pod !== f.pod && r.source.pod !== f.pod && r.destination.pod !== f.pod) return false;
  return true;
}
