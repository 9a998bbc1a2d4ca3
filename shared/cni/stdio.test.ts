import { describe, expect, it } from "vitest";
import type { Stdio } from "../kernel/netlink/libc.js";
import { CniError } from "./errors.js";
import { STDIN_LIMIT, readStdin, writeAll } from "./stdio.js";

const EINTR = 4;
const EAGAIN = 11;
const EBADF = 9;
const EPIPE = 32;

/** A read(2) answer: bytes, end of file (0) or a failure with its errno. */
type ReadStep = string | Uint8Array | 0 | { errno: number };

/** stdin as a list of read(2) answers; every write(2) takes at most `writeMax` bytes or fails as `writes` says. */
function fakeStdio(opts: { tty?: boolean; reads?: ReadStep[]; writes?: ({ errno: number } | number)[] } = {}) {
  const reads = [...(opts.reads ?? [])];
  const writes = [...(opts.writes ?? [])];
  const written: number[] = [];
  let errno = 0;
  const io: Stdio = {
    isatty: () => opts.tty ?? false,
    errno: () => errno,
    read(fd, buf, len) {
      expect(fd).toBe(0);
      const step = reads.shift();
      if (step === undefined) throw new Error("read past the end of the script");
      if (step === 0) return 0;
      if (typeof step === "object" && "errno" in step) {
        errno = step.errno;
        return -1;
      }
      const bytes = typeof step === "string" ? new TextEncoder().encode(step) : step;
      if (bytes.length > len) throw new Error("a read step larger than the buffer");
      buf.set(bytes);
      return bytes.length;
    },
    write(_fd, buf, len) {
      const step = writes.shift() ?? len;
      if (typeof step === "object") {
        errno = step.errno;
        return -1;
      }
      const n = Math.min(step, len);
      written.push(...buf.subarray(0, n));
      return n;
    },
  };
  return { io, written: () => new TextDecoder().decode(new Uint8Array(written)) };
}

const noRest = async (): Promise<Uint8Array> => {
  throw new Error("rest not expected");
};

describe("readStdin", () => {
  it("reads to the end of file, across reads and a character split between them", async () => {
    const e = new TextEncoder().encode('{"name":"é"}');
    const { io } = fakeStdio({ reads: [e.subarray(0, 10), e.subarray(10), 0] });
    expect(await readStdin(io, noRest)).toBe('{"name":"é"}');
  });

  it("reads nothing from a terminal", async () => {
    const { io } = fakeStdio({ tty: true, reads: [] });
    expect(await readStdin(io, noRest)).toBe("");
  });

  it("takes a closed stdin for an empty one", async () => {
    const { io } = fakeStdio({ reads: [{ errno: EBADF }] });
    expect(await readStdin(io, noRest)).toBe("");
  });

  it("reads again when interrupted", async () => {
    const { io } = fakeStdio({ reads: ['{"a"', { errno: EINTR }, ":1}", 0] });
    expect(await readStdin(io, noRest)).toBe('{"a":1}');
  });

  it("leaves a non-blocking stdin that is not ready to the runtime's reader, keeping what was read", async () => {
    const { io } = fakeStdio({ reads: ['{"a"', { errno: EAGAIN }] });
    expect(await readStdin(io, async () => new TextEncoder().encode(":1}"))).toBe('{"a":1}');
  });

  it("fails on another error", async () => {
    const { io } = fakeStdio({ reads: [{ errno: 5 }] });
    await expect(readStdin(io, noRest)).rejects.toThrow(/read the network config from stdin: Input\/output error \(EIO\)/);
  });

  it("refuses a stdin without end with a decoding error", async () => {
    const chunk = new Uint8Array(64 * 1024);
    const { io } = fakeStdio({ reads: Array.from({ length: STDIN_LIMIT / chunk.length + 1 }, () => chunk) });
    const err = await readStdin(io, noRest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(6);
  });
});

describe("writeAll", () => {
  const never = async () => {
    throw new Error("rest not expected");
  };

  it("writes everything across short writes and an interruption", async () => {
    const { io, written } = fakeStdio({ writes: [3, { errno: EINTR }, 5] });
    await writeAll(io, 1, '{"cniVersion":"1.1.0"}\n', never);
    expect(written()).toBe('{"cniVersion":"1.1.0"}\n');
  });

  it("hands what is left to the runtime's writer when the descriptor is full", async () => {
    const { io, written } = fakeStdio({ writes: [4, { errno: EAGAIN }] });
    let rest = "";
    await writeAll(io, 1, "abcdefgh", async (bytes) => (rest = new TextDecoder().decode(bytes)));
    expect(written() + rest).toBe("abcdefgh");
    expect(rest).toBe("efgh");
  });

  it("stops when the reader is gone", async () => {
    const { io, written } = fakeStdio({ writes: [2, { errno: EPIPE }] });
    await writeAll(io, 1, "abcdef", never);
    expect(written()).toBe("ab");
  });
});
