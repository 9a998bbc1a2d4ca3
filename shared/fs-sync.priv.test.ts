import * as node from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as fs from "./fs-sync.js";
import { fileCalls } from "./kernel/netlink/libc.js";

// On Bun (this tier) fs-sync makes its calls through libc; each is checked against node:fs on
// the same files, results and errors alike.
let dir: string;
beforeEach(() => {
  dir = node.mkdtempSync(join(tmpdir(), "twill-fs-sync-"));
});
afterEach(() => node.rmSync(dir, { recursive: true, force: true }));

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
};

describe("fs-sync through libc", () => {
  it("is in use here", () => {
    expect(fileCalls()).not.toBeNull();
  });

  it("opens, writes, reads and cuts a file as node:fs does", () => {
    const path = join(dir, "a");
    const fd = fs.openSync(path, "wx", 0o600);
    expect(fs.writeSync(fd, "10.0.0.20 é")).toBe(12);
    expect(fs.writeSync(fd, "3", 8)).toBe(1);
    fs.fsyncSync(fd);
    fs.ftruncateSync(fd, 9);
    fs.closeSync(fd);
    expect(node.readFileSync(path, "utf8")).toBe("10.0.0.23");
    expect(fs.readFileSync(path, "utf8")).toBe("10.0.0.23");
    expect(node.statSync(path).mode & 0o777).toBe(0o600);
    const rfd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    expect(fs.readFileSync(rfd, "utf8")).toBe("10.0.0.23");
    fs.closeSync(rfd);
    fs.writeFileSync(path, "1\n");
    expect(node.readFileSync(path, "utf8")).toBe("1\n");
  });

  it("reads a file of the kernel's, whose size says nothing, to its end", () => {
    expect(fs.readFileSync("/proc/self/mountinfo", "utf8")).toBe(node.readFileSync("/proc/self/mountinfo", "utf8"));
  });

  it("stats as node:fs does", () => {
    const file = join(dir, "f");
    node.writeFileSync(file, "hello");
    node.symlinkSync(file, join(dir, "l"));
    for (const [ours, theirs] of [
      [fs.statSync(file), node.statSync(file)],
      [fs.lstatSync(join(dir, "l")), node.lstatSync(join(dir, "l"))],
      [fs.statSync(dir), node.statSync(dir)],
    ] as const) {
      expect({ ino: ours.ino, size: ours.size, file: ours.isFile(), dir: ours.isDirectory(), link: ours.isSymbolicLink() }).toEqual({
        ino: theirs.ino, size: theirs.size, file: theirs.isFile(), dir: theirs.isDirectory(), link: theirs.isSymbolicLink(),
      });
      expect(Math.abs(ours.mtimeMs - theirs.mtimeMs)).toBeLessThan(1);
    }
    const fd = fs.openSync(file, "r");
    expect(fs.fstatSync(fd).ino).toBe(node.statSync(file).ino);
    fs.closeSync(fd);
    expect(fs.statSync("/proc/self/ns/net").dev).toBe(fs.statSync("/proc/self/ns/mnt").dev);
    expect(fs.statSync("/proc/self/ns/net").dev).not.toBe(fs.statSync(dir).dev);
    expect(fs.readlinkSync(join(dir, "l"))).toBe(node.readlinkSync(join(dir, "l")));
  });

  it("makes, links, renames and removes as node:fs does", () => {
    const deep = join(dir, "x", "y", "z");
    fs.mkdirSync(deep, { recursive: true, mode: 0o700 });
    fs.mkdirSync(deep, { recursive: true, mode: 0o700 });
    expect(node.statSync(deep).isDirectory()).toBe(true);
    expect(node.statSync(join(dir, "x")).mode & 0o777).toBe(0o700);
    const a = join(deep, "a");
    node.writeFileSync(a, "1");
    fs.linkSync(a, join(deep, "b"));
    expect(node.statSync(join(deep, "b")).ino).toBe(node.statSync(a).ino);
    fs.renameSync(join(deep, "b"), join(deep, "c"));
    fs.unlinkSync(a);
    expect(node.readdirSync(deep)).toEqual(["c"]);
    expect(fs.readdirSync(deep)).toEqual(["c"]);
    expect(fs.existsSync(join(deep, "c"))).toBe(true);
    expect(fs.existsSync(a)).toBe(false);
    fs.accessSync(deep, fs.constants.W_OK);
  });

  it("fails with node:fs's codes, naming the call and the path", () => {
    const file = join(dir, "f");
    node.writeFileSync(file, "");
    node.symlinkSync(file, join(dir, "l"));
    node.mkdirSync(join(dir, "d"));
    const cases: [string, () => unknown, () => unknown][] = [
      ["missing", () => fs.readFileSync(join(dir, "none"), "utf8"), () => node.readFileSync(join(dir, "none"), "utf8")],
      ["exclusive", () => fs.openSync(file, "wx"), () => node.openSync(file, "wx")],
      ["symlink, no follow", () => fs.openSync(join(dir, "l"), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW), () => node.openSync(join(dir, "l"), node.constants.O_RDONLY | node.constants.O_NOFOLLOW)],
      ["directory for writing", () => fs.openSync(join(dir, "d"), fs.constants.O_WRONLY), () => node.openSync(join(dir, "d"), node.constants.O_WRONLY)],
      ["mkdir over a file", () => fs.mkdirSync(file, { recursive: true }), () => node.mkdirSync(file, { recursive: true })],
      ["link onto a name taken", () => fs.linkSync(file, join(dir, "l")), () => node.linkSync(file, join(dir, "l"))],
      ["unlink missing", () => fs.unlinkSync(join(dir, "none")), () => node.unlinkSync(join(dir, "none"))],
      ["readlink of a file", () => fs.readlinkSync(file), () => node.readlinkSync(file)],
      ["lstat missing", () => fs.lstatSync(join(dir, "none")), () => node.lstatSync(join(dir, "none"))],
      ["a NUL in the path", () => fs.openSync(`${file}\0x`, "r"), () => node.openSync(`${file}\0x`, "r")],
      ["a NUL in a new name", () => fs.renameSync(file, `${dir}/a\0b`), () => node.renameSync(file, `${dir}/a\0b`)],
    ];
    for (const [what, ours, theirs] of cases) expect([what, codeOf(ours)]).toEqual([what, codeOf(theirs)]);
    const err = (() => {
      try {
        fs.openSync(file, "wx");
      } catch (e) {
        return e as NodeJS.ErrnoException;
      }
    })()!;
    expect(err).toMatchObject({ code: "EEXIST", errno: -17, syscall: "open", path: file });
    expect(err.message).toBe(`EEXIST: file exists, open '${file}'`);
  });

  it("refuses a FIFO nobody reads without waiting on it", () => {
    const fifo = join(dir, "p");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    expect(codeOf(() => fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK))).toBe("ENXIO");
  });
});

declare const Bun: { spawnSync(argv: string[]): { exitCode: number } };
