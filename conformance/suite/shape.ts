import { atLeast } from "../../shared/cni/version.js";
import { isObject } from "./config.js";

/**
 * What a plugin printed, judged against SPEC.md section 5 ("Result", "Error"). Pure: every
 * function takes text or parsed JSON and returns the problems it found, so the rules are
 * tested on plain data and each failing case can say exactly what was wrong.
 */

export type Parsed = { ok: true; doc: unknown } | { ok: false; problem: string };

/** stdout must be exactly one JSON document: logs on stdout break every runtime's decoder. */
export function parseSingleDocument(stdout: string): Parsed {
  const text = stdout.trim();
  if (text === "") return { ok: false, problem: "stdout is empty" };
  try {
    return { ok: true, doc: JSON.parse(text) };
  } catch {
    return { ok: false, problem: `stdout is not exactly one JSON document: ${snippet(text)}` };
  }
}

export const snippet = (text: string, max = 160): string => {
  const flat = text.replace(/\s+/g, " ").trim();
  return JSON.stringify(flat.length > max ? flat.slice(0, max) + "…" : flat);
};

/** Problems with an error document: `{cniVersion, code, msg, details?}` (SPEC.md "Error"). */
export function errorProblems(doc: unknown): string[] {
  if (!isObject(doc)) return ["error output is not a JSON object"];
  const problems: string[] = [];
  if (typeof doc.cniVersion !== "string") problems.push("error has no cniVersion");
  if (typeof doc.code !== "number" || !Number.isInteger(doc.code)) problems.push("error has no integer code");
  else if (doc.code === 0) problems.push("error has code 0");
  if (typeof doc.msg !== "string" || doc.msg === "") problems.push("error has no msg");
  if (doc.details !== undefined && typeof doc.details !== "string") problems.push("error details is not a string");
  return problems;
}

/** The text of an error a person reads: msg and details. */
export const errorText = (doc: unknown): string =>
  isObject(doc) ? [doc.msg, doc.details].filter((s) => typeof s === "string").join(": ") : "";

/**
 * Whether an error message names an environment variable. People write the name in several
 * ways ("CNI_CONTAINERID", "containerID", "container ID"); any of them names it.
 */
export function namesVariable(text: string, variable: string): boolean {
  const plain = variable.replace(/^CNI_/, "");
  const aliases: Record<string, string[]> = {
    CONTAINERID: ["containerid", "container id", "container_id"],
    NETNS: ["netns", "network namespace"],
    IFNAME: ["ifname", "interface name"],
    COMMAND: ["command"],
    PATH: ["cni_path"],
  };
  const lower = text.toLowerCase();
  return [variable.toLowerCase(), ...(aliases[plain] ?? [plain.toLowerCase()])].some((a) => lower.includes(a));
}

const V11_INTERFACE_KEYS = ["mtu", "socketPath", "pciID"];
const V11_ROUTE_KEYS = ["mtu", "advmss", "priority", "table", "scope"];
const IP_OR_CIDR = /^[0-9a-fA-F.:]+(\/\d{1,3})?$/;

/**
 * Problems with an ADD result in the shape of `version`: 0.3.x and 0.4.0 carry
 * `ips[].version`, 1.x does not; fields that 1.1.0 added must not appear in older shapes;
 * every `ips[].interface` indexes `interfaces`.
 */
export function resultProblems(doc: unknown, version: string): string[] {
  if (!isObject(doc)) return ["result is not a JSON object"];
  const problems: string[] = [];
  if (doc.cniVersion !== version) problems.push(`result cniVersion is ${JSON.stringify(doc.cniVersion)}, asked ${version}`);
  const legacy = !atLeast(version, "1.0.0");
  const v11 = atLeast(version, "1.1.0");
  const interfaces = doc.interfaces;
  if (interfaces !== undefined && !Array.isArray(interfaces)) problems.push("interfaces is not a list");
  const ifaces = Array.isArray(interfaces) ? interfaces : [];
  ifaces.forEach((i, n) => {
    if (!isObject(i) || typeof i.name !== "string" || i.name === "") return problems.push(`interfaces[${n}] has no name`);
    if (i.sandbox !== undefined && typeof i.sandbox !== "string") problems.push(`interfaces[${n}].sandbox is not a string`);
    if (!v11) for (const k of V11_INTERFACE_KEYS) if (k in i) problems.push(`interfaces[${n}].${k} is a 1.1.0 field in a ${version} result`);
  });
  if (doc.ips !== undefined && !Array.isArray(doc.ips)) problems.push("ips is not a list");
  (Array.isArray(doc.ips) ? doc.ips : []).forEach((ip, n) => {
    if (!isObject(ip) || typeof ip.address !== "string" || !ip.address.includes("/")) {
      return problems.push(`ips[${n}].address is not an address in CIDR form`);
    }
    const family = ip.address.includes(":") ? "6" : "4";
    if (legacy && ip.version !== family) problems.push(`ips[${n}].version is ${JSON.stringify(ip.version)}, a ${version} result needs "${family}"`);
    if (!legacy && "version" in ip) problems.push(`ips[${n}].version is not part of a ${version} result`);
    if (ip.gateway !== undefined && (typeof ip.gateway !== "string" || !IP_OR_CIDR.test(ip.gateway))) problems.push(`ips[${n}].gateway is not an address`);
    if (ip.interface !== undefined) {
      if (!Number.isInteger(ip.interface) || ip.interface < 0 || ip.interface >= ifaces.length) {
        problems.push(`ips[${n}].interface ${JSON.stringify(ip.interface)} indexes no interface`);
      }
    }
  });
  if (doc.routes !== undefined && !Array.isArray(doc.routes)) problems.push("routes is not a list");
  (Array.isArray(doc.routes) ? doc.routes : []).forEach((r, n) => {
    if (!isObject(r) || typeof r.dst !== "string" || !r.dst.includes("/")) return problems.push(`routes[${n}].dst is not a CIDR`);
    if (r.gw !== undefined && (typeof r.gw !== "string" || !IP_OR_CIDR.test(r.gw))) problems.push(`routes[${n}].gw is not an address`);
    if (!v11) for (const k of V11_ROUTE_KEYS) if (k in r) problems.push(`routes[${n}].${k} is a 1.1.0 field in a ${version} result`);
  });
  if (doc.dns !== undefined && !isObject(doc.dns)) problems.push("dns is not an object");
  return problems;
}

/**
 * What of `prev` is missing from `next`: a plugin given a prevResult must output it with its
 * own changes merged (SPEC.md "Chained plugins"). Interfaces compare by name and sandbox,
 * addresses by address and the name of the interface they point at, routes by dst and gw.
 */
export function missingFromResult(prev: Record<string, any>, next: Record<string, any>): string[] {
  const missing: string[] = [];
  const prevIfaces: any[] = prev.interfaces ?? [];
  const nextIfaces: any[] = Array.isArray(next.interfaces) ? next.interfaces : [];
  for (const i of prevIfaces) {
    if (!nextIfaces.some((n) => n?.name === i.name && (n?.sandbox ?? "") === (i.sandbox ?? ""))) missing.push(`interface ${i.name}`);
  }
  const ifName = (ifaces: any[], idx: unknown) => (typeof idx === "number" ? ifaces[idx]?.name : undefined);
  for (const ip of prev.ips ?? []) {
    const found = (Array.isArray(next.ips) ? next.ips : []).some(
      (n: any) => n?.address === ip.address && ifName(nextIfaces, n.interface) === ifName(prevIfaces, ip.interface),
    );
    if (!found) missing.push(`address ${ip.address}`);
  }
  for (const r of prev.routes ?? []) {
    if (!(Array.isArray(next.routes) ? next.routes : []).some((n: any) => n?.dst === r.dst && n?.gw === r.gw)) {
      missing.push(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ""}`);
    }
  }
  for (const ns of prev.dns?.nameservers ?? []) {
    if (!(next.dns?.nameservers ?? []).includes(ns)) missing.push(`nameserver ${ns}`);
  }
  return missing;
}
