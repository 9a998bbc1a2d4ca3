import { spawn } from "node:child_process";
import { existsSync, fstatSync, linkSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger, fileLogger, rotateLog } from "./log.js";

let dir: string;
let path: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "twill-log-"));
  path = join(dir, "twill.log");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const lines = (file: string): { seq: number; w?: number }[] =>
  existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { seq: number }) : [];
const seqs = (file: string) => lines(file).map((l) => l.seq);

describe("the plugin's log file", () => {
  it("is rotated past its limit, keeping one older file, and no line written since the older file began is lost", () => {
    const log = fileLogger(path, { maxBytes: 1000 });
    for (let seq = 0; seq < 200; seq++) log.info("Added pod", { seq });
    expect(statSync(path).size).toBeLessThan(1000);
    expect(statSync(`${path}.1`).size).toBeGreaterThanOrEqual(1000);
    const kept = [...seqs(`${path}.1`), ...seqs(path)];
    expect(kept.at(-1)).toBe(199);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 200 - kept.length + i));
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  it("does not move a fresh file begun after another process rotated the full one", () => {
    writeFileSync(path, `${JSON.stringify({ seq: 1 })}\n`);
    const fd = openSync(path, "a");
    const full = fstatSync(fd);
    rotateLog(path, full, false); // another process rotates first
    writeFileSync(path, `${JSON.stringify({ seq: 2 })}\n`); // and a third begins a fresh file
    rotateLog(path, full, false); // this process, late, still holding the full one
    closeSync(fd);
    expect(seqs(`${path}.1`)).toEqual([1]);
    expect(seqs(path)).toEqual([2]);
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  it("leaves rotation to the holder of the lock, and takes a lock left by a killed process for stale once the log doubled", () => {
    const log = fileLogger(path, { maxBytes: 500 });
    log.info("first", { seq: 0 });
    linkSync(path, `${path}.lock`); // a process killed while rotating
    for (let seq = 1; seq < 100; seq++) log.info("Added pod", { seq });
    expect(existsSync(`${path}.1`)).toBe(true);
    expect(existsSync(`${path}.lock`)).toBe(false);
    expect(statSync(path).size).toBeLessThan(500);
  });

  it("keeps logging, without throwing, when the older file's name is taken by a directory", () => {
    mkdirSync(`${path}.1`);
    const log = fileLogger(path, { maxBytes: 200 });
    for (let seq = 0; seq < 50; seq++) log.info("Added pod", { seq });
    expect(seqs(path).at(-1)).toBe(49);
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  it("rotates under concurrent plugin processes without a torn line, an exception or a lock left behind", async () => {
    const writers = 6;
    const perWriter = 300;
    const maxBytes = 8 * 1024;
    const script = join(dir, "writer.ts");
    writeFileSync(script, `
      import { fileLogger } from ${JSON.stringify(resolve("shared/log.ts"))};
      const log = fileLogger(process.argv[2], { maxBytes: ${maxBytes} });
      for (let seq = 0; seq < ${perWriter}; seq++) log.info("Added pod", { w: Number(process.argv[3]), seq });
    `);
    const exits = await Promise.all(
      Array.from({ length: writers }, (_, w) =>
        new Promise<number | null>((done) => {
          const child = spawn(resolve("node_modules/.bin/bun"), [script, path, String(w)], { stdio: "inherit" });
          child.on("close", done);
        })),
    );
    expect(exits).toEqual(Array(writers).fill(0));
    const kept = [...lines(`${path}.1`), ...lines(path)]; // parses every line: none torn
    expect(kept.length).toBeGreaterThan(0);
    // The last line written may have filled the file and rotated it away: then there is no
    // current file until the next line, and the lines are all in the older one.
    if (existsSync(path)) expect(statSync(path).size).toBeLessThan(maxBytes + writers * 200);
    expect(statSync(`${path}.1`).size).toBeLessThan(2 * maxBytes);
    expect(existsSync(`${path}.lock`)).toBe(false);
    // The last line any writer wrote is kept.
    expect(kept.some((l) => l.seq === perWriter - 1)).toBe(true);
  });
});

describe("a log line", () => {
  it("writes an Error as its message and a bigint as its digits, at any depth, and everything else as JSON does", () => {
    const out: string[] = [];
    const log = createLogger((line) => out.push(line));
    const err = new Error("no such device");
    log.info("flat", { a: 1, s: "x", ips: ["10.0.0.2/24"], phases: { ipam: 3.2 }, none: null, empty: {} });
    log.info("errors", { error: err, n: 12345678901234567890n, list: [err, 1n], nested: { e: err }, deep: { a: { b: { e: err, n: 2n } } } });
    const [flat, errors] = out.map((l) => JSON.parse(l));
    expect(flat).toMatchObject({ msg: "flat", a: 1, s: "x", ips: ["10.0.0.2/24"], phases: { ipam: 3.2 }, none: null, empty: {} });
    expect(errors).toMatchObject({
      error: "no such device",
      n: "12345678901234567890",
      list: ["no such device", "1"],
      nested: { e: "no such device" },
      deep: { a: { b: { e: "no such device", n: "2" } } },
    });
  });
});
