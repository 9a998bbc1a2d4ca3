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

/**
 * Under Bun (the compiled executable: the plugin and the agent), Bun's own spawn: the first
 * node:child_process spawn there costs several times a Bun.spawn, and the plugin starts
 * processes on every pod operation. Under Node (tests), node:child_process.
 */
export const run: Runner = (argv, opts = {}) => {
  const bun = (globalThis as { Bun?: BunSpawner }).Bun;
  return bun ? runBun(bun, argv, opts) : runNode(argv, opts);
};

/** node:child_process, imported on first use: loading it is a cost the plugin's ADD never pays. */
const nodeChildProcess = () => import("node:child_process");

async function runNode(argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
  const { spawn } = await nodeChildProcess();
  return new Promise((resolve, reject) => {
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
}

/** The part of Bun's API used here (Bun's types are not installed: the code type-checks for Node). */
interface BunSpawner {
  spawn(
    argv: string[],
    opts: { stdin: "ignore" | Uint8Array; stdout: "pipe"; stderr: "pipe"; env: Record<string, string | undefined> },
  ): { stdout: ReadableStream<Uint8Array>; stderr: ReadableStream<Uint8Array>; exited: Promise<number | null>; signalCode: string | null };
}

async function runBun(bun: BunSpawner, argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
  let child: ReturnType<BunSpawner["spawn"]>;
  try {
    child = bun.spawn([...argv], {
      stdin: opts.input === undefined ? "ignore" : new TextEncoder().encode(opts.input),
      stdout: "pipe",
      stderr: "pipe",
      env: opts.env ?? process.env,
    });
  } catch (e) {
    throw new Error(`failed to start ${argv[0]}: ${(e as Error).message}`);
  }
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code: code ?? (child.signalCode ? 128 : 1), stdout, stderr };
}
