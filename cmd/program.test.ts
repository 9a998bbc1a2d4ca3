import { describe, expect, it } from "vitest";
import { programFor } from "./program.js";

describe("programFor", () => {
  it("picks the program by the name the executable runs under", () => {
    expect(programFor("/opt/cni/bin/twill")).toBe("twill");
    expect(programFor("/opt/cni/bin/twill-ipam")).toBe("twill-ipam");
    expect(programFor("/opt/twill/bin/twilld")).toBe("twilld");
    expect(programFor("twilld")).toBe("twilld");
    expect(programFor("./dist/bin/twill-ipam")).toBe("twill-ipam");
  });

  it("judges the last path element only", () => {
    expect(programFor("/srv/twilld/bin/twill")).toBe("twill");
    expect(programFor("/srv/twill-ipam/twilld")).toBe("twilld");
  });

  it("falls back to argv[1], then to the CNI plugin", () => {
    expect(programFor("", "/usr/local/bin/twilld")).toBe("twilld");
    expect(programFor(undefined, undefined)).toBe("twill");
    expect(programFor("bun", "/$bunfs/root/twill")).toBe("twill");
    expect(programFor("/opt/cni/bin/cni-twill")).toBe("twill");
  });
});
