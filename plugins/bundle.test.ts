import { build } from "esbuild";
import { describe, expect, it } from "vitest";

// The per-pod executable starts once per pod operation: what it loads is most of its cost.
// DESIGN.md: the Kubernetes client, etcd clients and yargs belong to twilld only.
const FORBIDDEN = [/node_modules\/@kubernetes\//, /node_modules\/yargs/, /node_modules\/etcd/, /node_modules\/prom-client/, /^agent\//];

describe("per-pod executable bundle", () => {
  it("contains none of the agent's dependencies", async () => {
    const out = await build({
      entryPoints: ["plugins/main.ts"],
      bundle: true,
      platform: "node",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    const inputs = Object.keys(out.metafile.inputs);
    expect(inputs).toContain("plugins/main.ts");
    expect(inputs.filter((i) => FORBIDDEN.some((re) => re.test(i)))).toEqual([]);
  });
});
