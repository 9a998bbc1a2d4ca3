import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { flowRecord } from "../../testkit/flows.js";
import { JsonLinesFile } from "./sink.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "twill-flows-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Records numbered in `policies`, so order and loss show; every line is the same length. */
const numbered = (from: number, n: number) => Array.from({ length: n }, (_, i) => flowRecord({ policies: [`ns/p${String(from + i).padStart(4, "0")}`] }));
const LINE = JSON.stringify(numbered(0, 1)[0]).length + 1;
const numbersIn = (path: string): number[] => {
  const text = readFileSync(path, "utf8");
  expect(text.endsWith("\n"), `${path} ends with a whole line`).toBe(true);
  return text
    .slice(0, -1)
    .split("\n")
    .map((line) => Number((JSON.parse(line) as { policies: string[] }).policies[0]!.slice(4)));
};
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe("JsonLinesFile", () => {
  it("appends a JSON line per record, in a directory 0700 and a file 0600 it makes", () => {
    const path = join(dir, "sub", "flows.jsonl");
    const f = new JsonLinesFile({ path });
    f.write(numbered(0, 2));
    f.write([]);
    f.write(numbered(2, 1));
    f.close();
    expect(readFileSync(path, "utf8").split("\n").slice(0, 1).map((l) => JSON.parse(l))).toEqual(numbered(0, 1));
    expect(numbersIn(path)).toEqual([0, 1, 2]);
    expect(statSync(join(dir, "sub")).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("appends to the file a previous run left, counting its size", () => {
    const path = join(dir, "flows.jsonl");
    new JsonLinesFile({ path }).write(numbered(0, 2));
    const again = new JsonLinesFile({ path, maxBytes: 3 * LINE });
    again.write(numbered(2, 1));
    again.write(numbered(3, 1));
    expect(numbersIn(path)).toEqual([3]);
    expect(numbersIn(`${path}.1`)).toEqual([0, 1, 2]);
  });

  it("rotates before a batch would pass maxBytes, numbering as logrotate, keeping `keep` old files", () => {
    const path = join(dir, "flows.jsonl");
    const f = new JsonLinesFile({ path, maxBytes: 4 * LINE, keep: 2 });
    for (let i = 0; i < 10; i++) f.write(numbered(i * 2, 2));
    // Batches of two lines, files of at most four: 20 records are five files, the last three kept.
    expect(numbersIn(path)).toEqual(range(16, 4));
    expect(numbersIn(`${path}.1`)).toEqual(range(12, 4));
    expect(numbersIn(`${path}.2`)).toEqual(range(8, 4));
    expect(existsSync(`${path}.3`)).toBe(false);
    for (const p of [path, `${path}.1`, `${path}.2`]) expect(statSync(p).size).toBeLessThanOrEqual(4 * LINE);
  });

  it("never splits a batch: one larger than maxBytes goes whole into a file of its own", () => {
    const path = join(dir, "flows.jsonl");
    const f = new JsonLinesFile({ path, maxBytes: 2 * LINE });
    f.write(numbered(0, 1));
    f.write(numbered(1, 5));
    f.write(numbered(6, 1));
    expect(numbersIn(`${path}.2`)).toEqual([0]);
    expect(numbersIn(`${path}.1`)).toEqual(range(1, 5));
    expect(numbersIn(path)).toEqual([6]);
  });

  it("keep 0: the full file goes", () => {
    const path = join(dir, "flows.jsonl");
    const f = new JsonLinesFile({ path, maxBytes: 2 * LINE, keep: 0 });
    f.write(numbered(0, 2));
    f.write(numbered(2, 1));
    expect(numbersIn(path)).toEqual([2]);
    expect(existsSync(`${path}.1`)).toBe(false);
  });

  it("refuses to write through a link planted under its name, naming the file", () => {
    const path = join(dir, "flows.jsonl");
    writeFileSync(join(dir, "elsewhere"), "");
    symlinkSync(join(dir, "elsewhere"), path);
    expect(() => new JsonLinesFile({ path }).write(numbered(0, 1))).toThrow(`failed to write flow log "${path}"`);
    expect(readFileSync(join(dir, "elsewhere"), "utf8")).toBe("");
  });
});
