import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, lutimesSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NotRegularFile, appendRegularFile, readRegularFile, removeOldTemporaries, writeFileAtomic, writeRegularFile } from "./fs.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "twill-fs-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("regular files only", () => {
  it("refuses a symlink, a directory and a FIFO for reading, writing and appending, and never waits", () => {
    writeFileSync(join(dir, "target"), "secret");
    symlinkSync(join(dir, "target"), join(dir, "link"));
    mkdirSync(join(dir, "dir"));
    execFileSync("mkfifo", [join(dir, "fifo")]);
    for (const name of ["link", "dir", "fifo"]) {
      const path = join(dir, name);
      expect(() => readRegularFile(path)).toThrow(NotRegularFile);
      expect(() => writeRegularFile(path, "x")).toThrow(NotRegularFile);
      expect(() => appendRegularFile(path, "x")).toThrow(NotRegularFile);
    }
    expect(readFileSync(join(dir, "target"), "utf8")).toBe("secret");
  });

  it("reads, replaces and appends a regular file; a missing one reads as undefined", () => {
    const path = join(dir, "f");
    expect(readRegularFile(path)).toBeUndefined();
    writeRegularFile(path, "10.0.0.20");
    writeRegularFile(path, "10.0.0.3");
    expect(readRegularFile(path)).toBe("10.0.0.3");
    appendRegularFile(path, "\nmore");
    expect(readRegularFile(path)).toBe("10.0.0.3\nmore");
  });
});

describe("writeFileAtomic", () => {
  it("makes a missing directory, replaces a file in one that exists, and leaves no temporary", () => {
    const path = join(dir, "a", "b", "state.json");
    writeFileAtomic(path, "one");
    expect(readFileSync(path, "utf8")).toBe("one");
    writeFileAtomic(path, "two", 0o600, false);
    expect(readFileSync(path, "utf8")).toBe("two");
    expect(readdirSync(join(dir, "a", "b"))).toEqual(["state.json"]);
    expect(statSync(join(dir, "a")).mode & 0o777).toBe(0o700);
  });
});

describe("removeOldTemporaries", () => {
  it("removes temporaries of either writer older than the age given, by age alone, and nothing named otherwise", () => {
    const now = Date.now();
    const old = ["subnet.json.tmp-100-1700000000000", ".tmp-200-9fa3c1", "policy.json.tmp-1-2"];
    const kept = ["subnet.json", "subnet.json.tmp-300-1", "x.tmp", ".tmp-1-xyz", "tmp-1-2"];
    for (const n of [...old, ...kept]) writeFileSync(join(dir, n), "");
    for (const n of [...old, "subnet.json", "x.tmp", ".tmp-1-xyz", "tmp-1-2"]) utimesSync(join(dir, n), (now - 3_600_000) / 1000, (now - 3_600_000) / 1000);
    symlinkSync("/etc/hostname", join(dir, "link.tmp-1-2"));
    mkdirSync(join(dir, "d.tmp-1-2"));
    lutimesSync(join(dir, "link.tmp-1-2"), (now - 3_600_000) / 1000, (now - 3_600_000) / 1000);
    utimesSync(join(dir, "d.tmp-1-2"), (now - 3_600_000) / 1000, (now - 3_600_000) / 1000);
    expect(removeOldTemporaries(dir, 600_000, now).sort()).toEqual([...old].sort());
    expect(readdirSync(dir).sort()).toEqual([...kept, "d.tmp-1-2", "link.tmp-1-2"].sort());
    expect(removeOldTemporaries(join(dir, "absent"))).toEqual([]);
  });
});
