import { errnoText } from "../kernel/netlink/libc.js";
import { CniError, Code } from "./errors.js";

/**
 * A plugin's stdin, read on the calling thread two ways, by what the command binds anyway:
 * - read(2) through libc, for every command but VERSION: each binds libc (netlink, files), and
 *   a read costs nothing more;
 * - Bun's stream reader (epoll, and preadv2 without blocking), for VERSION, which binds nothing:
 *   opening the FFI is most of what binding costs, more than the rest of a VERSION answer. It is
 *   also where a non-blocking stdin that is not ready is read from, since it waits.
 * Bun's other ways to read a pipe (`Bun.stdin.text()`, node:fs, process.stdin) start a pool of
 * threads or load a large module. The source is passed in, so the loops are tested on plain data.
 */

const EINTR = 4;
const EAGAIN = 11;
const EBADF = 9;
/** More than any network config; a character device such as /dev/zero would never end. */
export const STDIN_LIMIT = 16 * 1024 * 1024;
const CHUNK = 64 * 1024;

export interface StdinSource {
  /** Whether stdin is a terminal: a person ran the plugin by hand, and there is no config. */
  isatty(): boolean;
  /** read(2) on stdin, and the errno of its failure; absent where libc is not bound. */
  libc?: { read(fd: number, buf: Uint8Array, len: number): number; errno(): number };
  /** The runtime's stream of stdin, from where reading stands; it waits for a non-blocking one. */
  stream(): ReadableStream<Uint8Array>;
}

/** All of stdin, to its end. A terminal holds no config, nor does a closed stdin. */
export async function readStdin(src: StdinSource): Promise<string> {
  if (src.isatty()) return "";
  const text = new Collected();
  if (src.libc && !readByLibc(src.libc, text)) return "";
  if (text.ended) return text.end();
  // A reader, not `for await`: Bun's async iterator of a stream costs a VERSION answer more.
  const failed = (err: unknown) => readFailed(err instanceof Error ? err.message : String(err));
  let reader: ReadableStreamDefaultReader<Uint8Array>;
  try {
    reader = src.stream().getReader();
  } catch (err) {
    throw failed(err);
  }
  for (;;) {
    const chunk = await reader.read().catch((err: unknown) => {
      throw failed(err);
    });
    if (chunk.done) return text.end();
    try {
      text.add(chunk.value);
    } catch (err) {
      void reader.cancel().catch(() => {});
      throw err;
    }
  }
}

/**
 * Reads with read(2) into `text` to the end of file, or until a non-blocking stdin is not ready
 * (EAGAIN: the stream reads the rest). False when stdin is closed.
 */
function readByLibc(libc: NonNullable<StdinSource["libc"]>, text: Collected): boolean {
  const buf = new Uint8Array(CHUNK);
  for (;;) {
    const n = libc.read(0, buf, buf.length);
    if (n > 0) {
      text.add(buf.subarray(0, n));
      continue;
    }
    if (n === 0) {
      text.ended = true;
      return true;
    }
    const errno = libc.errno();
    if (errno === EINTR) continue;
    if (errno === EBADF) return false;
    if (errno === EAGAIN) return true;
    throw readFailed(errnoText(errno));
  }
}

const readFailed = (why: string) => new Error(`failed to read the network config from stdin: ${why}`);

/** Text decoded as it is read (a character may span two reads), up to STDIN_LIMIT bytes. */
class Collected {
  ended = false;
  private readonly decoder = new TextDecoder();
  private text = "";
  private total = 0;

  add(bytes: Uint8Array): void {
    this.total += bytes.length;
    if (this.total > STDIN_LIMIT) throw new CniError(Code.DecodeFailure, `network config on stdin is larger than ${STDIN_LIMIT} bytes`);
    this.text += this.decoder.decode(bytes, { stream: true });
  }

  end(): string {
    return this.text + this.decoder.decode();
  }
}
