import { spawn } from "node:child_process";

/**
 * The one place in twill that starts processes. Arguments are always an array, never a shell
 * line. Kernel access (shared/kernel/) and nothing else calls this.
 */

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
}

export type Runner = (argv: readonly string[], opts?: ExecOptions) => Promise<ExecResult>;

export const run: Runner = (argv, opts = {}) =>
  new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      env: opts.env ?? process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on("data", (b: Buffer) => out.push(b));
    child.stderr!.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => reject(new Error(`failed to start ${argv[0]}: ${e.message}`)));
    child.on("close", (code, signal) =>
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      }),
    );
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
