import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { execa } from "execa";
import { afterEach, describe, expect, it } from "vitest";
import { listNetns } from "../testkit/netns.js";

/**
 * scripts/lib/bytecode-order.ts, as scripts/build runs it on the compiled file: a pod's calls run
 * for real in namespaces of its own, each recorded, and nothing of them left behind.
 */

const ROOT = resolve(import.meta.dirname, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");
let out = "";

afterEach(() => {
  if (out) rmSync(out, { recursive: true, force: true });
  out = "";
});

/** A recorded file's lines by kind: F a function the run used, K one it did not (the rest of the build). */
function kinds(file: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of readFileSync(file, "utf8").split("\n").slice(1)) if (line) counts[line[0]!] = (counts[line[0]!] ?? 0) + 1;
  return counts;
}

/** The recorder's namespaces are named tbo<pid>-node and tbo<pid>-pod0..3. */
const namespaces = () => listNetns("tbo");

describe("bytecode-order", () => {
  it("records each call of a pod in the file's own terms, ADD running more of it than VERSION, and removes its namespaces", async () => {
    out = mkdtempSync(join(tmpdir(), "twill-bytecode-order-test-"));
    const before = await namespaces();
    const r = await execa(BUN, ["scripts/lib/bytecode-order.ts", "dist/bin/twill", out], { cwd: ROOT, reject: false });
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    const files = r.stdout.trim().split(",");
    expect(files.map((f) => basename(f))).toEqual(["add.order", "del.order", "add-ranges.order", "status.order", "check.order", "ipam-add.order", "ipam-del.order", "version.order"]);
    const counted = Object.fromEntries(files.map((f) => [basename(f, ".order"), kinds(f)]));
    // One build: every file places the same functions, used or not.
    const total = (c: Record<string, number>) => (c.F ?? 0) + (c.K ?? 0);
    expect(new Set(Object.values(counted).map(total)).size).toBe(1);
    expect(counted.version!.F).toBeGreaterThan(0);
    expect(counted.add!.F).toBeGreaterThan(2 * counted.version!.F!);
    expect(counted.del!.F).toBeGreaterThan(counted.version!.F!);
    expect(counted.add!.F).toBeGreaterThan(counted["ipam-add"]!.F!);
    expect(counted["ipam-add"]!.F).toBeGreaterThan(counted.version!.F!);
    expect(await namespaces()).toEqual(before);
  });
});
