import { describe, expect, it } from "vitest";
import { ignoredEnv, withEnvDefaults } from "./env.js";

const options = {
  "node-name": { type: "string", default: "host" },
  datastore: { choices: ["local", "etcd", "kubernetes"], default: "local" },
  "leak-recovery": { type: "boolean", default: true },
} as const;

describe("flags from the environment", () => {
  it("takes TWILL_<FLAG> as the flag's default and leaves the rest alone", () => {
    const o = withEnvDefaults(options, { TWILL_NODE_NAME: "n1", TWILL_LEAK_RECOVERY: "false", PATH: "/bin" });
    expect(o["node-name"].default).toBe("n1");
    expect(o["leak-recovery"].default).toBe(false);
    expect(o.datastore.default).toBe("local");
  });

  it("ignores variables that name no flag (the plugin's TWILL_LOG_FILE) and lists them", () => {
    const env = { TWILL_LOG_FILE: "/tmp/x", TWILL_DATASTORE: "etcd", TWILLY: "1" };
    expect(withEnvDefaults(options, env).datastore.default).toBe("etcd");
    expect(ignoredEnv(env, Object.keys(options))).toEqual(["TWILL_LOG_FILE"]);
  });

  it("names the variable when a known one has a value the flag refuses", () => {
    expect(() => withEnvDefaults(options, { TWILL_DATASTORE: "consul" })).toThrow(/TWILL_DATASTORE="consul" is not one of local, etcd, kubernetes/);
    expect(() => withEnvDefaults(options, { TWILL_LEAK_RECOVERY: "maybe" })).toThrow(/TWILL_LEAK_RECOVERY="maybe" is not true or false/);
  });
});
