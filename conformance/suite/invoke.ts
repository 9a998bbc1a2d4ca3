import { run } from "../../shared/kernel/exec.js";
import { parseSingleDocument, type Parsed } from "./shape.js";

/**
 * Runs a plugin exactly as a runtime does (SPEC.md section 2): inside the node's network
 * namespace, CNI_* variables in an otherwise clean environment, the config on stdin.
 */

export interface Invocation {
  /** Node namespace name. */
  node: string;
  plugin: string;
  env: Record<string, string>;
  stdin: string;
}

export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
  parsed: Parsed;
  /** What ran, for a failure reason: command and the variables that differ from a normal call. */
  label: string;
}

/** The PATH a runtime such as containerd gives plugins. */
export const RUNTIME_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** A plugin that hangs must fail its case, not stop the suite. */
const TIMEOUT_S = 60;

export async function invoke(inv: Invocation, label: string): Promise<Outcome> {
  const argv = ["timeout", "--kill-after=5", String(TIMEOUT_S), "ip", "netns", "exec", inv.node, inv.plugin];
  const env = { PATH: RUNTIME_PATH, ...inv.env };
  const r = await run(argv, { input: inv.stdin, env });
  const timedOut = r.code === 124 || r.code === 137;
  return {
    code: r.code,
    stdout: r.stdout,
    stderr: timedOut ? `${r.stderr}\n(timed out after ${TIMEOUT_S}s)` : r.stderr,
    parsed: parseSingleDocument(r.stdout),
    label,
  };
}
