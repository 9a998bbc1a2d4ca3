import { createConnection, type Socket } from "node:net";

/**
 * A client of BIRD's control socket (the unix socket `bird -s PATH` listens on, which birdc
 * speaks): a line protocol where each answer line starts with a 4-digit code, `-` when more
 * lines follow and a space on the last one; lines starting with a space continue the one
 * before. BIRD greets with `0001 BIRD 2.0.12 ready.` and then answers one command at a time
 * on the same connection. The answers are read by bird-answers.ts; this module only frames
 * them, so a BIRD reply error (8xxx, 9xxx) is an answer here, not a failure.
 *
 * The socket is a file, reachable from any network namespace, so twilld needs no setns for it.
 */

export class BirdControlError extends Error {
  readonly code = "BIRD_CONTROL";
  constructor(message: string) {
    super(message);
    this.name = "BirdControlError";
  }
}

export interface BirdControlOptions {
  /** How long one command (or the connection and its greeting) may take before the connection is dropped. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 5_000;
/** A last line: a code and a space at the start of a line. */
const FINAL_LINE = /(?:^|\n)\d{4} [^\n]*\n/;

interface Connection {
  socket: Socket;
  /** Text received and not yet handed out. */
  buffer: string;
  /** Why the connection ended, once it has. */
  ended: string | null;
  /** Called on every arrival and on the end. */
  wake: () => void;
}

/**
 * One connection, opened on the first command and again after a failure, used by one command
 * at a time (BIRD answers in order, and a late answer to a timed-out command would be read as
 * the next one's, so a timeout drops the connection).
 */
export class BirdControl {
  private connection: Promise<Connection> | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly timeoutMs: number;

  constructor(
    readonly socketPath: string,
    options: BirdControlOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Sends one command line and returns BIRD's whole answer, codes and all, its last line included. */
  request(command: string): Promise<string> {
    if (command === "" || /[\r\n]/.test(command)) {
      return Promise.reject(new BirdControlError(`BIRD control socket ${this.socketPath}: refused command ${JSON.stringify(command)}: one non-empty line expected`));
    }
    const run = this.queue.then(() => this.exchange(command));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Ends the connection; later requests fail. */
  close(): void {
    this.closed = true;
    const connection = this.connection;
    this.connection = null;
    void connection?.then((c) => c.socket.destroy(), () => undefined);
  }

  private async exchange(command: string): Promise<string> {
    if (this.closed) throw this.error(command, "client closed");
    const deadline = Date.now() + this.timeoutMs;
    try {
      this.connection ??= this.open(deadline);
      const connection = await this.connection;
      connection.socket.write(`${command}\n`);
      return await this.answer(connection, deadline, command);
    } catch (err) {
      // Whatever failed, the connection's state is unknown: the next command opens a new one.
      const connection = this.connection;
      this.connection = null;
      void connection?.then((c) => c.socket.destroy(), () => undefined);
      throw err instanceof BirdControlError ? err : this.error(command, err instanceof Error ? err.message : String(err));
    }
  }

  private async open(deadline: number): Promise<Connection> {
    const socket = createConnection({ path: this.socketPath });
    socket.setEncoding("utf8");
    const connection: Connection = { socket, buffer: "", ended: null, wake: () => undefined };
    socket.on("data", (chunk: string) => {
      connection.buffer += chunk;
      connection.wake();
    });
    socket.on("error", (err) => {
      connection.ended ??= err.message;
      connection.wake();
    });
    socket.on("close", () => {
      connection.ended ??= "closed by BIRD";
      connection.wake();
    });
    const greeting = await this.answer(connection, deadline, "connect");
    if (!/^0001 /m.test(greeting)) throw this.error("connect", `not BIRD's greeting: ${JSON.stringify(greeting.trim())}`);
    return connection;
  }

  /** Waits for the next whole answer in the connection's buffer and takes it out. */
  private answer(connection: Connection, deadline: number, command: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(this.error(command, `no answer within ${this.timeoutMs} ms`)), Math.max(0, deadline - Date.now()));
      const done = (err: Error | null, text?: string): void => {
        clearTimeout(timer);
        connection.wake = () => undefined;
        if (err) reject(err);
        else resolve(text!);
      };
      connection.wake = () => {
        const final = FINAL_LINE.exec(connection.buffer);
        if (final) {
          const end = final.index + final[0].length;
          const text = connection.buffer.slice(0, end);
          connection.buffer = connection.buffer.slice(end);
          // `+` lines are spontaneous printouts (log echoes), not part of any answer.
          done(null, text.split(/(?<=\n)/).filter((line) => !line.startsWith("+")).join(""));
        } else if (connection.ended !== null) {
          done(this.error(command, connection.ended));
        }
      };
      connection.wake();
    });
  }

  private error(command: string, why: string): BirdControlError {
    return new BirdControlError(`BIRD control socket ${this.socketPath}: ${command}: ${why}`);
  }
}

/**
 * A file path as a BIRD command argument (`configure "PATH"`). BIRD's CLI strings have no
 * escapes, so a path with a quote, a backslash or a line break is refused rather than cut.
 */
export function quoteForBird(path: string): string {
  if (/["\\\r\n]/.test(path)) throw new BirdControlError(`path ${JSON.stringify(path)} cannot be given to BIRD: it has a quote, a backslash or a line break`);
  return `"${path}"`;
}
