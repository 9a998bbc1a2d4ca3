import { describe, expect, it } from "vitest";
import { parseCli } from "./args.js";

describe("parseCli", () => {
  it("reads every option", () => {
    const opts = parseCli([
      "--plugin", "/opt/cni/bin/x", "--config", "x.conflist", "--cni-path", "/a:/b", "--small-pool-config", "s.conflist",
      "--not-ready-config", "n.conflist", "--temp-path", "logFile", "--temp-path", "ipam.dataDir",
      "--unsupported", 'mode={"a":1}', "--only", "3, 12.1", "--json",
    ]);
    expect(opts).toEqual({
      plugin: "/opt/cni/bin/x",
      config: "x.conflist",
      cniPath: "/a:/b",
      smallPoolConfig: "s.conflist",
      notReadyConfig: "n.conflist",
      tempPaths: ["logFile", "ipam.dataDir"],
      unsupported: [{ key: "mode", value: { a: 1 } }],
      only: ["3", "12.1"],
      json: true,
    });
  });

  it("answers usage: status 0 when asked, 2 when --plugin or --config is missing", () => {
    expect(parseCli(["--help"])).toMatchObject({ status: 0, help: expect.stringMatching(/^usage/) });
    expect(parseCli(["--plugin", "x"])).toMatchObject({ status: 2 });
  });

  it("refuses an --unsupported without a value", () => {
    expect(() => parseCli(["--plugin", "x", "--config", "c", "--unsupported", "mode"])).toThrow(/KEY=JSON/);
  });
});
