import { describe, expect, it } from "vitest";
import { CniError } from "./errors.js";
import { STDIN_LIMIT, readStdin, type StdinSource } from "./stdio.js";

const EINTR = 4;
const EAGAIN = 11;
const EBADF = 9;

/** A read(2) answer: bytes, end of file (0) or a failure with its errno. */
type ReadStep = string | Uint8Array | 0 | { errno: number };

const bytes = (s: string | Uint8Array) => (typeof s === "string" ? new TextEncoder().encode(s) : s);

/**
 * stdin as a list of read(2) answers (absent: libc is not bound) and what the runtime's stream
 * then yields, or the error it fails with.
 */
function source(opts: { tty?: boolean; reads?: ReadStep[]; stream?: (string | Uint8Array)[]; streamFails?: Error }) {
  const reads = [...(opts.reads ?? [])];
  let errno = 0;
  let streamed = false;
  const src: StdinSource = {
    isatty: () => opts.tty ?? false,
    stream: () => {
      streamed = true;
      if (!opts.stream && !opts.streamFails) throw new Error("the stream was not expected to be read");
      const chunks = (opts.stream ?? []).map(bytes);
      return new ReadableStream<Uint8Array>({
        pull(controller) {
          const chunk = chunks.shift();
          if (chunk) controller.enqueue(chunk);
          else if (opts.streamFails) controller.error(opts.streamFails);
          else controller.close();
        },
      });
    },
  };
  if (opts.reads) {
    src.libc = {
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
        const b = bytes(step);
        if (b.length > len) throw new Error("a read step larger than the buffer");
        buf.set(b);
        return b.length;
      },
    };
  }
  return { src, streamed: () => streamed, readsLeft: () => reads.length };
}

describe("readStdin through libc", () => {
  it("reads to the end of file, across reads and a character split between them, without the stream", async () => {
    const e = bytes('{"name":"é"}');
    const s = source({ reads: [e.subarray(0, 10), e.subarray(10), 0] });
    expect(await readStdin(s.src)).toBe('{"name":"é"}');
    expect(s.streamed()).toBe(false);
  });

  it("reads nothing from a terminal", async () => {
    const s = source({ tty: true, reads: ["{}", 0] });
    expect(await readStdin(s.src)).toBe("");
    expect(s.readsLeft()).toBe(2);
  });

  it("takes a closed stdin for an empty one", async () => {
    const s = source({ reads: [{ errno: EBADF }] });
    expect(await readStdin(s.src)).toBe("");
  });

  it("reads again when interrupted", async () => {
    const s = source({ reads: ['{"a"', { errno: EINTR }, ":1}", 0] });
    expect(await readStdin(s.src)).toBe('{"a":1}');
  });

  it("leaves a non-blocking stdin that is not ready to the stream, keeping what was read and a split character", async () => {
    const e = bytes('{"a":"é"}');
    const s = source({ reads: [e.subarray(0, 7), { errno: EAGAIN }], stream: [e.subarray(7), "  "] });
    expect(await readStdin(s.src)).toBe('{"a":"é"}  ');
    expect(s.streamed()).toBe(true);
  });

  it("fails on another error, naming it", async () => {
    const s = source({ reads: [{ errno: 5 }] });
    await expect(readStdin(s.src)).rejects.toThrow(/read the network config from stdin: Input\/output error \(EIO\)/);
  });

  it("refuses a stdin without end with a decoding error", async () => {
    const chunk = new Uint8Array(64 * 1024);
    const s = source({ reads: Array.from({ length: STDIN_LIMIT / chunk.length + 1 }, () => chunk) });
    const err = await readStdin(s.src).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(6);
    expect(s.readsLeft()).toBe(0);
  });
});

describe("readStdin through the runtime's stream (no libc)", () => {
  it("reads every chunk, a character split between two", async () => {
    const e = bytes('{"cniVersion":"0.4.0","x":"é"}');
    const s = source({ stream: [e.subarray(0, e.length - 2), e.subarray(e.length - 2)] });
    expect(await readStdin(s.src)).toBe('{"cniVersion":"0.4.0","x":"é"}');
  });

  it("reads nothing from a terminal", async () => {
    const s = source({ tty: true, stream: ["{}"] });
    expect(await readStdin(s.src)).toBe("");
    expect(s.streamed()).toBe(false);
  });

  it("an empty stdin is empty", async () => {
    expect(await readStdin(source({ stream: [] }).src)).toBe("");
  });

  it("fails with the stream's error, naming it", async () => {
    const s = source({ stream: ["{"], streamFails: new Error("EISDIR: illegal operation on a directory, fstat") });
    await expect(readStdin(s.src)).rejects.toThrow("failed to read the network config from stdin: EISDIR: illegal operation on a directory, fstat");
  });

  it("stops a stdin without end at the limit with a decoding error, and stops reading it", async () => {
    let pulled = 0;
    let cancelled = false;
    const src: StdinSource = {
      isatty: () => false,
      stream: () =>
        new ReadableStream<Uint8Array>(
          {
            pull(controller) {
              pulled++;
              controller.enqueue(new Uint8Array(1024 * 1024));
            },
            cancel: () => void (cancelled = true),
          },
          { highWaterMark: 0 },
        ),
    };
    const err = await readStdin(src).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(6);
    expect(pulled).toBe(STDIN_LIMIT / (1024 * 1024) + 1);
    expect(cancelled).toBe(true);
  });
});
