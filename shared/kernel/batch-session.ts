import { startInteractive, type Interactive } from "./exec.js";

/**
 * One long-lived `ip -force -batch -` (or `bridge`) process, fed a batch at a time: the agent
 * reads and programs thousands of entries every resync and a few on every peer event, and a
 * process start costs it more than the kernel work (forking a large Node process is ~10 ms
 * of its main thread). After each batch a marker line that must fail (`link show dev .twN`, a
 * device that does not exist) is sent; its error, written after everything the batch printed
 * (errors at once, a `-json` document flushed as it ends), tells that the batch is done.
 * Batches run one at a time. iproute2 exits on a line it cannot parse: the batch then fails
 * with what was printed, and the next one starts a new process.
 */

export interface SessionResult {
  /** What the batch's lines printed: `-json` documents, one per line, and error messages. */
  output: string;
  /** A line failed ("Command failed -:N", N counted from 1 in this batch), or the tool exited. */
  failed: boolean;
}

export interface SessionTool {
  argv: readonly string[];
  /** The line that fails naming `dev`, and so marks the end of a batch. */
  marker(dev: string): string;
}

/** Longest a batch may take before the process is taken for stuck and killed. */
const BATCH_TIMEOUT_MS = 120_000;

export class BatchSession {
  private proc: Interactive | null = null;
  /** Counts processes started: output and exit of an earlier one are ignored. */
  private generation = 0;
  /** Lines the current process has been sent: its error line numbers count from its start. */
  private linesSent = 0;
  private markers = 0;
  private pending: { buffer: string; marker: RegExp; done: (r: SessionResult) => void } | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly tool: SessionTool) {}

  run(lines: readonly string[]): Promise<SessionResult> {
    const result = this.tail.then(() => this.runNow(lines));
    this.tail = result.catch(() => {});
    return result;
  }

  close(): void {
    this.closed = true;
    this.generation++;
    this.proc?.close();
    this.proc = null;
  }

  /** The running process, or a new one (batches run one at a time, so never two starts). */
  private async process(): Promise<Interactive> {
    if (this.proc) return this.proc;
    const gen = ++this.generation;
    this.proc = await startInteractive(this.tool.argv, {
      output: (text) => gen === this.generation && this.onOutput(text),
      exit: (code) => gen === this.generation && this.onExit(code),
    });
    this.linesSent = 0;
    return this.proc;
  }

  private async runNow(lines: readonly string[]): Promise<SessionResult> {
    if (this.closed) throw new Error(`${this.tool.argv[0]} session is closed`);
    const proc = await this.process();
    const base = this.linesSent;
    const dev = `.tw${(this.markers++ % 1e8).toString()}`;
    this.linesSent += lines.length + 1;
    const raw = await new Promise<SessionResult>((done) => {
      const timer = setTimeout(() => {
        this.generation++;
        proc.close();
        this.onExit(124);
      }, BATCH_TIMEOUT_MS);
      this.pending = {
        buffer: "",
        marker: new RegExp(`[^\\n]*"${dev.replace(".", "\\.")}"[^\\n]*\\nCommand failed -:\\d+\\n$`),
        done: (r) => {
          clearTimeout(timer);
          done(r);
        },
      };
      if (!proc.write([...lines, this.tool.marker(dev)].join("\n") + "\n")) this.onExit(1);
    });
    // Line numbers as a process of its own for this batch would print them.
    return { ...raw, output: raw.output.replace(/Command failed -:(\d+)/g, (_, n: string) => `Command failed -:${Number(n) - base}`) };
  }

  private onOutput(text: string): void {
    const p = this.pending;
    if (!p) return;
    p.buffer += text;
    const m = p.marker.exec(p.buffer.length > 512 ? p.buffer.slice(-512) : p.buffer);
    if (!m) return;
    const output = p.buffer.slice(0, p.buffer.length - m[0].length);
    this.pending = null;
    p.done({ output, failed: /Command failed -:\d+/.test(output) });
  }

  private onExit(code: number): void {
    this.proc = null;
    const p = this.pending;
    this.pending = null;
    p?.done({ output: `${p.buffer}${p.buffer.endsWith("\n") || p.buffer === "" ? "" : "\n"}(${this.tool.argv[0]} exited with code ${code})`, failed: true });
  }
}
