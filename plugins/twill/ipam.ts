import { existsSync } from "../../shared/fs-sync.js";
import { join } from "node:path";
import { CniError, Code, type CodeNumber } from "../../shared/cni/errors.js";
import type { CmdArgs, Plugin } from "../../shared/cni/skel.js";
import type { Attachment, Result } from "../../shared/cni/types.js";
import { parseResult } from "../../shared/cni/version.js";
import { run, type Runner } from "../../shared/kernel/exec.js";
import type { TwillConf } from "./config.js";

/** The IPAM a plugin delegates to: the same five operations, the IPAM result on ADD. */
export interface Ipam {
  readonly type: string;
  add(args: CmdArgs): Promise<Result>;
  del(args: CmdArgs): Promise<void>;
  check(args: CmdArgs): Promise<void>;
  status(args: CmdArgs): Promise<void>;
  gc(args: CmdArgs, valid: Attachment[]): Promise<void>;
}

/**
 * twill-ipam called in this process: no second process start on any operation. In node mode it
 * reads the node subnet file twill reads, unless its own config names another.
 */
export function inProcessIpam(plugin: Plugin, conf: TwillConf): Ipam {
  const withSubnetFile = (args: CmdArgs): CmdArgs => {
    if (!conf.ipam || conf.ipam.subnetFile !== undefined) return args;
    return { ...args, conf: { ...args.conf, ipam: { ...conf.ipam, subnetFile: conf.subnetFile } } };
  };
  return {
    type: "twill-ipam",
    add: (args) => plugin.add(withSubnetFile(args)),
    del: (args) => plugin.del(withSubnetFile(args)),
    check: (args) => plugin.check(withSubnetFile(args)),
    status: (args) => plugin.status(withSubnetFile(args)),
    gc: (args, valid) => plugin.gc(withSubnetFile(args), valid),
  };
}

/**
 * An IPAM plugin run from CNI_PATH as SPEC.md "Delegated plugins" says: the same environment
 * with CNI_COMMAND set to the operation, the same config on stdin.
 */
export class ExecIpam implements Ipam {
  constructor(
    readonly type: string,
    private readonly env: Record<string, string | undefined>,
    private readonly runner: Runner = run,
  ) {}

  async add(args: CmdArgs): Promise<Result> {
    const out = await this.invoke("ADD", args);
    let raw: unknown;
    try {
      raw = JSON.parse(out);
    } catch {
      throw new CniError(Code.DecodeFailure, `IPAM plugin "${this.type}" printed no JSON result`);
    }
    return parseResult(raw);
  }

  async del(args: CmdArgs): Promise<void> {
    await this.invoke("DEL", args);
  }

  async check(args: CmdArgs): Promise<void> {
    await this.invoke("CHECK", args);
  }

  async status(args: CmdArgs): Promise<void> {
    await this.invoke("STATUS", args);
  }

  async gc(args: CmdArgs): Promise<void> {
    await this.invoke("GC", args);
  }

  private async invoke(command: string, args: CmdArgs): Promise<string> {
    const binary = findPlugin(this.type, args.path);
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.env)) if (v !== undefined) env[k] = v;
    env.CNI_COMMAND = command;
    const r = await this.runner([binary], { input: args.stdin, env });
    if (r.code === 0) return r.stdout;
    throw delegatedError(this.type, command, r.stdout, r.stderr);
  }
}

/** The first CNI_PATH directory holding the plugin, as libcni's FindInPath. */
export function findPlugin(type: string, path: readonly string[]): string {
  for (const dir of path) {
    const candidate = join(dir, type);
    if (existsSync(candidate)) return candidate;
  }
  throw new CniError(Code.InvalidConfig, `IPAM plugin "${type}" not found in CNI_PATH ${JSON.stringify(path.join(":"))}`);
}

/** The delegated plugin's own error document, kept with its code and named. */
export function delegatedError(type: string, command: string, stdout: string, stderr: string): CniError {
  try {
    const e = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof e.code === "number" && typeof e.msg === "string") {
      return new CniError(e.code as CodeNumber, `IPAM plugin "${type}" ${command}: ${e.msg}`, typeof e.details === "string" ? e.details : "");
    }
  } catch {
    // Not a CNI error document: report what it printed.
  }
  const text = (stderr || stdout).trim().split("\n").slice(-3).join("; ");
  return new CniError(Code.Internal, `IPAM plugin "${type}" ${command} failed: ${text || "no output"}`);
}
