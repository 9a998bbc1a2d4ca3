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

/** A long-lived process fed on stdin, its stdout and stderr read as one ordered stream. */
export interface Interactive {
  /** false when the process has exited. */
  write(text: string): boolean;
  /** Ends stdin (the tool exits on end of input) and kills it if it does not. */
  close(): void;
}

export interface InteractiveHandlers {
  output(text: string): void;
  exit(code: number): void;
}

/**
 * Starts `argv` with stderr joined to stdout (through `sh -c 'exec "$@" 2>&1'`: two pipes read
 * apart would lose the order of an error against the output around it). node:child_process
 * under Bun too: the agent is the one long-lived user, and pays its load once.
 */
export async function startInteractive(argv: readonly string[], on: InteractiveHandlers): Promise<Interactive> {
  const { spawn } = await nodeChildProcess();
  const child = spawn("sh", ["-c", 'exec "$@" 2>&1', "sh", ...argv], { stdio: ["pipe", "pipe", "ignore"] });
  let exited = false;
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (text: string) => on.output(text));
  child.stdout!.on("error", () => {});
  child.stdin!.on("error", () => {}); // a tool that died mid-write: reported by its exit
  const exit = (code: number) => {
    if (exited) return;
    exited = true;
    on.exit(code);
  };
  child.on("error", () => exit(127));
  child.on("close", (code, signal) => exit(code ?? (signal ? 128 : 1)));
  return {
    write: (text) => {
      if (exited) return false;
      child.stdin!.write(text);
      return true;
    },
    close: () => {
      if (exited) return;
      child.stdin!.end();
      setTimeout(() => {
        if (!exited) child.kill("SIGKILL");
      }, 2_000).unref();
    },
  };
}

/**
 * Starts a reader that runs until close(), such as `ip monitor`: its output (stderr joined)
 * goes to `on.output`. It reads no input, so a shell holds its stdin and ends it when that
 * closes: the reader does not outlive this process, however this process ends.
 */
export function startFollower(argv: readonly string[], on: InteractiveHandlers): Promise<Interactive> {
  return startInteractive(
    ["sh", "-c", 'exec 2>&1 3<&0; "$@" </dev/null & p=$!; { read -r _ <&3; kill "$p" 2>/dev/null; } & r=$!; wait "$p"; s=$?; kill "$r" 2>/dev/null; exit "$s"', "sh", ...argv],
    on,
  );
}
