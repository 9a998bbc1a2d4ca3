import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { readSubnetFile, SUBNET_FILE_FORMAT, validateSubnetInfo, writeSubnetFile, type SubnetInfo } from "./subnet-file.js";

const info: SubnetInfo = { clusterCIDRs: ["10.244.0.0/16"], nodeSubnets: ["10.244.1.0/24"], mtu: 1450, backend: "vxlan", ipMasq: true, nodeName: "node-1" };
let dir = "";
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = "";
});

describe("the subnet file's format", () => {
  it("is written, and read back without it", () => {
    dir = mkdtempSync(join(tmpdir(), "subnet-"));
    const path = join(dir, "subnet.json");
    writeSubnetFile(path, info);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ format: SUBNET_FILE_FORMAT, ...info });
    expect(readSubnetFile(path)).toEqual(info);
  });

  it("reads v0.1.0's file (no marker) and ignores fields it does not know", () => {
    expect(validateSubnetInfo({ ...info, future: { x: 1 } })).toEqual(info);
  });

  it("refuses a file of a newer format, or a marker that is not a format number", () => {
    dir = mkdtempSync(join(tmpdir(), "subnet-"));
    const path = join(dir, "subnet.json");
    writeFileSync(path, JSON.stringify({ ...info, format: SUBNET_FILE_FORMAT + 1 }));
    expect(() => readSubnetFile(path)).toThrow(/is invalid: it was written by a newer twill \(format 2; this one reads format 1\)/);
    expect(() => validateSubnetInfo({ ...info, format: "1" })).toThrow(/"format" "1" is not a format number/);
  });
});
