import { stdio } from "../kernel/netlink/libc.js";
import { CniError, Code, invalidConfig, invalidEnv, toCniError } from "./errors.js";
import { netnsOverride, requirePodNetns, type NetnsKind } from "./netns.js";
import { readStdin, type StdinSource } from "./stdio.js";
import type { Attachment, NetConf, Result } from "./types.js";
import { CURRENT_VERSION, SUPPORTED_VERSIONS, formatResult, requireSupported } from "./version.js";

/**
 * The CNI protocol around a plugin: reads CNI_* variables and the network config, validates
 * them as SPEC.md section 2 and libcni's skel do, dispatches the command, and writes exactly
 * one JSON document (a result or an error) to stdout. IO is passed in so tests can drive it
 * without a process.
 */

export type Command = "ADD" | "DEL" | "CHECK" | "STATUS" | "GC" | "VERSION";

export interface CmdArgs {
  command: Command;
  containerId: string;
  /** Empty when DEL is called without a namespace. */
  netns: string;
  ifname: string;
  /** CNI_ARGS as key/value pairs (`IgnoreUnknown`, `K8S_POD_NAME`, `IP`, ...). */
  args: Record<string, string>;
  /** CNI_PATH split on ':'. */
  path: string[];
  conf: NetConf;
  /** The config exactly as received, for delegating to another plugin. */
  stdin: string;
}

export interface Plugin {
  add(args: CmdArgs): Promise<Result>;
  del(args: CmdArgs): Promise<void>;
  check(args: CmdArgs): Promise<void>;
  status(args: CmdArgs): Promise<void>;
  gc(args: CmdArgs, valid: Attachment[]): Promise<void>;
}

export interface PluginIO {
  env: Record<string, string | undefined>;
  stdin: string;
  stdout(text: string): void;
  stderr(text: string): void;
  /**
   * Set for a plugin that works inside CNI_NETNS: ADD and CHECK then refuse a path that is no
   * network namespace, or is the plugin's own (see netns.ts).
   */
  inspectNetns?: (path: string) => NetnsKind | Promise<NetnsKind>;
}

/** SPEC.md: container IDs and network names. Also stops path tricks such as `../../etc`. */
export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

const COMMANDS: readonly Command[] = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"];

/** Which variables each command needs (SPEC.md section 2; CNI_NETNS is optional on DEL). */
const REQUIRED_ENV: Record<Command, readonly string[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME"],
  GC: [],
  STATUS: [],
  VERSION: [],
};

/**
 * Runs one CNI invocation and returns the process exit status. The plugin is loaded only for a
 * command that needs it: VERSION and the about text answer from this module alone, so a
 * runtime's probe does not evaluate the plugin's modules.
 */
export async function dispatch(load: () => Plugin | Promise<Plugin>, io: PluginIO, about: string): Promise<number> {
  let version = CURRENT_VERSION;
  try {
    const command = io.env.CNI_COMMAND;
    if (!command) {
      // skel prints this for a person who runs the binary by hand; it is not a protocol call.
      io.stderr(`${about}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(", ")}\n`);
      return 0;
    }
    if (!(COMMANDS as readonly string[]).includes(command)) {
      throw invalidEnv("CNI_COMMAND", `unknown command ${JSON.stringify(command)}`);
    }
    if (command === "VERSION") {
      io.stdout(JSON.stringify(versionInfo(io.stdin)) + "\n");
      return 0;
    }
    const args = parseArgs(command as Command, io.env, io.stdin);
    version = args.conf.cniVersion;
    if (io.inspectNetns && (args.command === "ADD" || args.command === "CHECK")) {
      await requirePodNetns(args.netns, netnsOverride(io.env.CNI_NETNS_OVERRIDE), io.inspectNetns);
    }
    const plugin = await load();
    switch (args.command) {
      case "ADD": {
        const result = await plugin.add(args);
        io.stdout(JSON.stringify(formatResult(result, version)) + "\n");
        return 0;
      }
      case "DEL":
        await plugin.del(args);
        return 0;
      case "CHECK":
        await plugin.check(args);
        return 0;
      case "STATUS":
        await plugin.status(args);
        return 0;
      case "GC":
        await plugin.gc(args, validAttachments(args.conf));
        return 0;
    }
  } catch (err) {
    const e = toCniError(err);
    io.stdout(JSON.stringify(e.toJSON(version)) + "\n");
    return 1;
  }
  return 0;
}

/**
 * The version asked in stdin's cniVersion; whatever else stdin holds, VERSION answers (libcni's
 * skel does not read stdin for it at all), so a caller can always learn what is supported.
 */
function versionInfo(stdin: string) {
  let asked = CURRENT_VERSION;
  // No config at all (the usual probe) is not parsed: the exception a parse of "" throws is,
  // as the first one in a fresh process, a cost of its own.
  if (stdin.trim() !== "") {
    try {
      const conf = decode(stdin);
      if (typeof conf.cniVersion === "string" && conf.cniVersion !== "") asked = conf.cniVersion;
    } catch {
      // Not a config: the current version.
    }
  }
  return { cniVersion: asked, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/** Validates the environment and the config for one command. Pure: no IO. */
export function parseArgs(
  command: Command,
  env: Record<string, string | undefined>,
  stdin: string,
): CmdArgs {
  for (const name of REQUIRED_ENV[command]) {
    if (!env[name]) throw invalidEnv(name, "required but not set");
  }
  const containerId = env.CNI_CONTAINERID ?? "";
  if (containerId && !NAME_PATTERN.test(containerId)) {
    throw invalidEnv("CNI_CONTAINERID", `invalid container ID ${JSON.stringify(containerId)}`);
  }
  const ifname = env.CNI_IFNAME ?? "";
  if (ifname) validateIfname(ifname);
  const netns = env.CNI_NETNS ?? "";
  if (netns && !netns.startsWith("/")) {
    throw invalidEnv("CNI_NETNS", `must be an absolute path, got ${JSON.stringify(netns)}`);
  }

  const raw = decode(stdin);
  raw.cniVersion = requireSupported(raw.cniVersion);
  if (typeof raw.name !== "string" || raw.name === "") {
    throw invalidConfig('network config has no "name"');
  }
  if (!NAME_PATTERN.test(raw.name)) {
    throw invalidConfig(`invalid network name ${JSON.stringify(raw.name)}`);
  }
  if (typeof raw.type !== "string" || raw.type === "") {
    throw invalidConfig('network config has no "type"');
  }

  return {
    command,
    containerId,
    netns,
    ifname,
    args: parseCniArgs(env.CNI_ARGS ?? ""),
    path: (env.CNI_PATH ?? "").split(":").filter(Boolean),
    conf: raw as NetConf,
    stdin,
  };
}

export function validateIfname(ifname: string): void {
  if (!isValidIfname(ifname)) throw invalidEnv("CNI_IFNAME", `invalid interface name ${JSON.stringify(ifname)}`);
}

/**
 * The kernel's dev_valid_name, on the UTF-8 bytes it receives: 1-15 bytes, not '.' or '..',
 * no '/', ':' or byte its isspace() takes for space (which includes 0xa0, a byte of many
 * two-byte characters such as 'à').
 */
export function isValidIfname(name: string): boolean {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length === 0 || bytes.length > 15 || name === "." || name === "..") return false;
  return bytes.every((b) => !IFNAME_FORBIDDEN.has(b));
}

const IFNAME_FORBIDDEN = new Set([0x2f, 0x3a, 0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0xa0]);

function decode(stdin: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(Code.DecodeFailure, `network config is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CniError(Code.DecodeFailure, "network config is not a JSON object");
  }
  return value as Record<string, unknown>;
}

/** CNI_ARGS: `K=V;K2=V2`. A pair without '=' is an error (code 4), as in libcni. */
export function parseCniArgs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(";")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) throw invalidEnv("CNI_ARGS", `invalid pair ${JSON.stringify(pair)}`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/**
 * GC's list of attachments to keep. The tagged 1.1.0 spec text names `cni.dev/attachments`,
 * later text `cni.dev/valid-attachments`, and libcni sends both (cni#1101): accept either.
 */
export function validAttachments(conf: NetConf): Attachment[] {
  const list = conf["cni.dev/valid-attachments"] ?? conf["cni.dev/attachments"] ?? [];
  if (!Array.isArray(list)) {
    throw invalidConfig('"cni.dev/valid-attachments" must be a list');
  }
  return list.map((a, i) => {
    const { containerID, ifname } = (a ?? {}) as Partial<Attachment>;
    if (typeof containerID !== "string" || typeof ifname !== "string") {
      throw invalidConfig(`"cni.dev/valid-attachments"[${i}] needs containerID and ifname`);
    }
    return { containerID, ifname };
  });
}

/** The part of Bun's API runPlugin uses (Bun's types are not installed: the code type-checks for Node). */
interface BunIO {
  stdin: { stream(): ReadableStream<Uint8Array> };
  stdout: unknown;
  stderr: unknown;
  write(to: unknown, data: string): Promise<number>;
}

/**
 * Wires a plugin to the real process: env, stdin, stdout, exit status. `load` as dispatch's.
 * The plugins are compiled with Bun (scripts/build). stdin is read on this thread (stdio.ts);
 * the answer goes out with Bun.write, which writes a pipe at once on this thread too.
 */
export async function runPlugin(load: () => Plugin | Promise<Plugin>, about: string, opts: { inspectNetns?: (path: string) => Promise<NetnsKind> } = {}): Promise<never> {
  const bun = (globalThis as { Bun?: BunIO }).Bun;
  if (!bun) throw new Error("the CNI plugins run on Bun: run the executable ./scripts/build makes");
  // Written once dispatch is done (one document on stdout), and all of it before process.exit,
  // which drops what is still on its way.
  const out = { stdout: "", stderr: "" };
  let code: number;
  try {
    // Without a command (the about text) stdin is not read.
    const command = process.env.CNI_COMMAND;
    const stdin = command ? await readStdin(stdinSource(bun, command)) : "";
    code = await dispatch(
      load,
      {
        env: process.env,
        stdin,
        stdout: (text) => void (out.stdout += text),
        stderr: (text) => void (out.stderr += text),
        ...(opts.inspectNetns ? { inspectNetns: opts.inspectNetns } : {}),
      },
      about,
    );
  } catch (err) {
    // stdin could not be read: no config, so no version asked.
    out.stdout = JSON.stringify(toCniError(err).toJSON(CURRENT_VERSION)) + "\n";
    code = 1;
  }
  // A reader that is gone (EPIPE) cannot be answered.
  if (out.stderr) await bun.write(bun.stderr, out.stderr).catch(() => {});
  if (out.stdout) await bun.write(bun.stdout, out.stdout).catch(() => {});
  process.exit(code);
}

/**
 * Where runPlugin reads stdin from (stdio.ts). VERSION binds no libc: whether stdin is a
 * terminal comes from Bun's tty_wrap binding (as Node's `process.binding`) where it has one.
 */
function stdinSource(bun: BunIO, command: string): StdinSource {
  const stream = () => bun.stdin.stream();
  const isTerminal = command === "VERSION" ? terminalByTtyWrap() : undefined;
  if (isTerminal) return { isatty: isTerminal, stream };
  const io = stdio();
  if (!io) throw new Error("the CNI plugins need libc (read(2) through bun:ffi)");
  return { isatty: () => io.isatty(0), libc: io, stream };
}

/** Whether stdin is a terminal, by Bun's tty_wrap binding; undefined where there is none. */
function terminalByTtyWrap(): (() => boolean) | undefined {
  try {
    const tty = (process as { binding?(name: string): { isTTY?: unknown } }).binding?.("tty_wrap");
    if (typeof tty?.isTTY === "function") {
      const isTTY = tty.isTTY as (this: unknown, fd: number) => boolean;
      return () => isTTY.call(tty, 0) === true;
    }
  } catch {
    // No such binding: libc's isatty.
  }
  return undefined;
}
