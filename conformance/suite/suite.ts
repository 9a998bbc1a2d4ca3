import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { allCases } from "./cases/index.js";
import { loadConfig, defaultTempPathKeys, type Conf } from "./config.js";
import { CaseContext, CaseFailure, NotApplicable, type Case, type SuiteSetup } from "./context.js";
import { invoke } from "./invoke.js";
import { Namespaces } from "./namespaces.js";
import type { CaseResult } from "./report.js";

/** Runs the cases against one plugin: setup once, then each case in its own namespaces. */

export interface SuiteOptions {
  plugin: string;
  config: string;
  /** CNI_PATH for the plugin; defaults to the plugin's directory. */
  cniPath?: string;
  smallPoolConfig?: string;
  notReadyConfig?: string;
  /** Dotted config keys to point at per-case temp directories. */
  tempPaths?: string[];
  unsupported?: { key: string; value: unknown }[];
  /** Case ids to run; all when empty. */
  only?: string[];
}

export interface SuiteRun {
  plugin: string;
  config: string;
  supportedVersions: string[];
  results: CaseResult[];
}

/** A name no other run, and nothing on the machine, uses. */
export const runPrefix = (): string => `cf${randomBytes(3).toString("hex")}`;

export async function prepareSuite(opts: SuiteOptions, namespaces = new Namespaces(runPrefix())): Promise<SuiteSetup> {
  const plugin = resolve(opts.plugin);
  const pluginType = basename(plugin);
  const load = (path: string): Conf => loadConfig(readFileSync(path, "utf8"), pluginType).conf;
  const { conf, versions } = loadConfig(readFileSync(opts.config, "utf8"), pluginType);
  const setup: SuiteSetup = {
    plugin,
    pluginType,
    cniPath: opts.cniPath ?? dirname(plugin),
    conf,
    fileVersions: versions,
    supported: [],
    smallPool: opts.smallPoolConfig ? load(opts.smallPoolConfig) : null,
    notReady: opts.notReadyConfig ? load(opts.notReadyConfig) : null,
    tempPathKeys: opts.tempPaths ?? defaultTempPathKeys(conf),
    unsupported: opts.unsupported ?? [],
    namespaces,
    tmpRoot: mkdtempSync(`/tmp/${namespaces.prefix}-`),
  };
  setup.supported = await supportedVersions(setup);
  return setup;
}

/** The plugin's VERSION answer, or [] (the VERSION cases then say why). */
async function supportedVersions(setup: SuiteSetup): Promise<string[]> {
  const node = await setup.namespaces.create("version");
  try {
    const out = await invoke({ node, plugin: setup.plugin, env: { CNI_COMMAND: "VERSION" }, stdin: JSON.stringify({ cniVersion: setup.fileVersions[0] }) }, "VERSION");
    const list = out.parsed.ok ? (out.parsed.doc as { supportedVersions?: unknown }).supportedVersions : undefined;
    return Array.isArray(list) ? list.filter((v): v is string => typeof v === "string") : [];
  } finally {
    await setup.namespaces.remove(node);
  }
}

export async function disposeSuite(setup: SuiteSetup): Promise<void> {
  try {
    await setup.namespaces.removeAll();
  } finally {
    rmSync(setup.tmpRoot, { recursive: true, force: true });
  }
}

export async function runCase(setup: SuiteSetup, c: Case): Promise<CaseResult> {
  const started = Date.now();
  const ctx = new CaseContext(setup, `c${c.id.replace(/\./g, "-")}`);
  let result: CaseResult;
  try {
    await ctx.init();
    await c.run(ctx);
    result = { id: c.id, name: c.name, result: "pass" };
  } catch (err) {
    if (err instanceof NotApplicable) result = { id: c.id, name: c.name, result: "n/a", reason: err.message };
    else if (err instanceof CaseFailure) result = { id: c.id, name: c.name, result: "fail", reason: err.message };
    else result = { id: c.id, name: c.name, result: "fail", reason: `suite error: ${(err as Error).message}` };
  }
  try {
    await ctx.dispose();
  } catch (err) {
    result.notes = [...(result.notes ?? []), `cleanup: ${(err as Error).message}`];
  }
  if (ctx.notes.length > 0) result.notes = [...ctx.notes, ...(result.notes ?? [])];
  result.ms = Date.now() - started;
  return result;
}

export const selectCases = (only: readonly string[] = []): Case[] =>
  only.length === 0 ? allCases : allCases.filter((c) => only.some((o) => c.id === o || c.id.startsWith(`${o}.`)));

export async function runSuite(
  opts: SuiteOptions,
  onResult: (r: CaseResult) => void = () => {},
  setupReady: (s: SuiteSetup) => void = () => {},
  namespaces?: Namespaces,
): Promise<SuiteRun> {
  const setup = await prepareSuite(opts, namespaces);
  setupReady(setup);
  try {
    const results: CaseResult[] = [];
    for (const c of selectCases(opts.only)) {
      const r = await runCase(setup, c);
      results.push(r);
      onResult(r);
    }
    return { plugin: setup.plugin, config: resolve(opts.config), supportedVersions: setup.supported, results };
  } finally {
    await disposeSuite(setup);
  }
}
