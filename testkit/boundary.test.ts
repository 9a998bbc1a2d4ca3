import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

// What ships (cmd, agent, plugins, ipam, shared) must not depend on test support: the kit and the
// conformance tools are built for tests and may change with them. Product tests take their
// support from the kit only, never from conformance/.
const REPO = resolve(import.meta.dirname, "..");
const PRODUCT = ["cmd", "agent", "plugins", "ipam", "shared"];
const TEST_ONLY = ["testkit", "conformance"];

const isTest = (file: string): boolean => file.endsWith(".test.ts");

function sources(dir: string): string[] {
  return readdirSync(join(REPO, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts"))
    .map((e) => relative(REPO, join(e.parentPath, e.name)));
}

/** Module specifiers a file imports (static, type-only and dynamic imports, re-exports). */
function importsOf(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g)) found.push(m[1]!);
  return found;
}

/** The top folder a relative specifier of `file` lands in; null for packages and node: modules. */
function topFolder(file: string, spec: string): string | null {
  if (!spec.startsWith(".")) return null;
  return relative(REPO, resolve(REPO, dirname(file), spec)).split("/")[0]!;
}

function violations(filter: (file: string) => boolean, forbidden: (target: string | null, spec: string) => boolean): string[] {
  const out: string[] = [];
  for (const file of PRODUCT.flatMap(sources).filter(filter)) {
    for (const spec of importsOf(readFileSync(join(REPO, file), "utf8"))) {
      if (forbidden(topFolder(file, spec), spec)) out.push(`${file} imports ${spec}`);
    }
  }
  return out;
}

describe("product and test support boundaries", () => {
  it("finds imports of every form", () => {
    const text = [
      'import { a } from "../testkit/netns.js";',
      'import type { B } from "./b.js";',
      'export { c } from "../conformance/c.js";',
      'const d = await import("vitest");',
      'import "./side-effect.js";',
    ].join("\n");
    expect(importsOf(text)).toEqual(["../testkit/netns.js", "./b.js", "../conformance/c.js", "vitest", "./side-effect.js"]);
  });

  it("product code imports neither the test kit, nor conformance/, nor vitest", () => {
    expect(violations((f) => !isTest(f), (top, spec) => TEST_ONLY.includes(top ?? "") || spec === "vitest")).toEqual([]);
  });

  it("product tests take their support from the kit, never from conformance/", () => {
    expect(violations(isTest, (top) => top === "conformance")).toEqual([]);
  });
});
