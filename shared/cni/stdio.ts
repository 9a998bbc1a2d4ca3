import { errnoText, type Stdio } from "../kernel/netlink/libc.js";
import { CniError, Code } from "./errors.js";

/**
 * A plugin's stdin and stdout, moved with read(2) and write(2) on the calling thread. The config
 * is a few hundred bytes, and Bun's own file API starts a pool of threads to read a pipe: that
 * start was most of what a VERSION answer cost beyond the runtime's. The IO is passed in, so the
 * loops are tested on plain data.
 */

const EINTR = 4;
const EAGAIN = 11;
const EBADF = 9;
/** More than any network config; a character device such as /dev/zero would never end. */
export const STDIN_LIMIT = 16 * 1024 * 1024;
const CHUNK = 64 * 1024;

/**
 * All of stdin, to its end. A terminal holds no config (a person ran the plugin by hand), nor
 * does a closed stdin. A non-blocking stdin that is not ready (EAGAIN) is read to its end by
 * `rest`, which waits for it.
 */
export async function readStdin(io: Stdio, rest: () => Promise<Uint8Array>): Promise<string> {
  if (io.isatty(0)) return "";
  // Decoded as read: a character may span two reads.
  const decoder = new TextDecoder();
  let out = "";
  let total = 0;
  const buf = new Uint8Array(CHUNK);
  for (;;) {
    const n = io.read(0, buf, buf.length);
    if (n > 0) {
      out += decoder.decode(buf.subarray(0, n), { stream: true });
      total += n;
      if (total > STDIN_LIMIT) throw new CniError(Code.DecodeFailure, `network config on stdin is larger than ${STDIN_LIMIT} bytes`);
      continue;
    }
    if (n === 0) return out + decoder.decode();
    const errno = io.errno();
    if (errno === EINTR) continue;
    if (errno === EBADF) return "";
    if (errno !== EAGAIN) throw new Error(`failed to read the network config from stdin: ${errnoText(errno)}`);
    return out + decoder.decode(await rest());
  }
}

/**
 * Writes all of `text` to `fd`. A non-blocking descriptor that is full (EAGAIN) gets the rest
 * through `rest`, which waits for room; a reader that is gone (EPIPE) cannot be answered.
 */
export async function writeAll(io: Stdio, fd: number, text: string, rest: (bytes: Uint8Array) => Promise<unknown>): Promise<void> {
  let bytes = new TextEncoder().encode(text);
  while (bytes.length > 0) {
    const n = io.write(fd, bytes, bytes.length);
    if (n > 0) {
      bytes = bytes.subarray(n);
      continue;
    }
    const errno = n < 0 ? io.errno() : 0;
    if (errno === EINTR) continue;
    if (errno === EAGAIN) await rest(bytes);
    return;
  }
}
