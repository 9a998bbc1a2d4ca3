import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { checkPublicKey, hexToKey, keyToHex, loadOrCreatePrivateKey, PrivateKey, WireguardKeyError } from "./keys.js";

// A pair made by `wg genkey | tee priv | wg pubkey` (wireguard-tools 1.0.20210914).
const WG_PRIVATE = "uKMQmcPwwALLwk5dyTlViB9b/ShebG3tBaeLwfPqA3A=";
const WG_PUBLIC = "OIEOUn6OA9l8a+cBGI1J4HWpSSayOokNsF9JK3o6hGM=";
// The same private key unclamped (low bits of byte 0 set): X25519 clamps, so the public key is the same.
const UNCLAMPED = "v6MQmcPwwALLwk5dyTlViB9b/ShebG3tBaeLwfPqA3A=";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "twill-wg-keys-"));
  dirs.push(d);
  return d;
};

describe("PrivateKey", () => {
  it("derives the public key wg pubkey derives", () => {
    expect(PrivateKey.fromBase64(WG_PRIVATE, "test").publicKey()).toBe(WG_PUBLIC);
  });

  it("clamps as wg genkey does, which leaves the public key unchanged", () => {
    const key = PrivateKey.fromBase64(UNCLAMPED, "test");
    expect(key.base64()).toBe(WG_PRIVATE);
    expect(key.publicKey()).toBe(WG_PUBLIC);
  });

  it("generates distinct clamped keys whose public keys are canonical", () => {
    const a = PrivateKey.generate();
    const b = PrivateKey.generate();
    expect(a.equals(b)).toBe(false);
    const bytes = Buffer.from(a.base64(), "base64");
    expect(bytes[0]! & 7).toBe(0);
    expect(bytes[31]! & 0xc0).toBe(0x40);
    expect(checkPublicKey(a.publicKey())).toEqual({ ok: true, key: a.publicKey() });
  });

  it("round-trips the UAPI's hex and compares by value", () => {
    const key = PrivateKey.fromBase64(WG_PRIVATE, "test");
    const again = PrivateKey.fromHex(key.hex());
    expect(again?.equals(key)).toBe(true);
    expect(PrivateKey.fromHex("AB".repeat(32))).toBeNull();
    expect(PrivateKey.fromHex("ab".repeat(31))).toBeNull();
  });

  it("never shows its bytes when printed, serialised or inspected", () => {
    const key = PrivateKey.fromBase64(WG_PRIVATE, "test");
    const shown = [String(key), `${key}`, JSON.stringify({ key }), inspect({ key }), inspect(key, { showHidden: true })].join(" ");
    expect(shown).not.toContain(WG_PRIVATE);
    expect(shown).not.toContain(key.hex());
    expect(shown).toContain("[WireGuard private key]");
  });

  it("refuses a malformed key without quoting it", () => {
    expect(() => PrivateKey.fromBase64("not-a-key-at-all", "the file")).toThrow(WireguardKeyError);
    expect(() => PrivateKey.fromBase64("not-a-key-at-all", "the file")).toThrow(/^the file: not a WireGuard private key/);
    expect(() => PrivateKey.fromBase64("not-a-key-at-all", "the file")).not.toThrow(/not-a-key/);
  });
});

describe("checkPublicKey", () => {
  it("takes 32 bytes in canonical base64", () => {
    expect(checkPublicKey(WG_PUBLIC)).toEqual({ ok: true, key: WG_PUBLIC });
  });

  it.each([
    ["not a string", 42],
    ["absent", undefined],
    ["empty", ""],
    ["without padding", WG_PUBLIC.slice(0, -1)],
    ["base64url", WG_PUBLIC.replace("+", "-")],
    ["surrounding space", ` ${WG_PUBLIC}`],
    ["trailing newline", `${WG_PUBLIC}\n`],
    ["31 bytes", Buffer.alloc(31, 1).toString("base64")],
    ["33 bytes", Buffer.alloc(33, 1).toString("base64")],
    // Same 32 bytes, but the spare bits of the last character set: a second text for one key.
    ["non-canonical last character", `${WG_PUBLIC.slice(0, 42)}N=`],
    ["all zero", Buffer.alloc(32).toString("base64")],
    ["hex instead of base64", keyToHex(WG_PUBLIC)],
  ])("refuses %s", (_what, text) => {
    const result = checkPublicKey(text);
    expect(result.ok).toBe(false);
  });

  it("says what is wrong without repeating the text", () => {
    const result = checkPublicKey("x".repeat(44));
    expect(result).toEqual({ ok: false, reason: "malformed WireGuard public key (44 characters; 32 bytes in canonical base64 expected)" });
  });
});

describe("key forms", () => {
  it("converts between base64 and the UAPI's lower-case hex", () => {
    const hex = keyToHex(WG_PUBLIC);
    expect(hex).toMatch(/^[0-9a-f]{64}$/);
    expect(hexToKey(hex)).toBe(WG_PUBLIC);
    expect(hexToKey(hex.toUpperCase())).toBeNull();
    expect(hexToKey(hex.slice(2))).toBeNull();
  });
});

describe("loadOrCreatePrivateKey", () => {
  it("makes the key on first use in a 0600 file (directory 0700), then reads the same key back", () => {
    const dir = join(tempDir(), "wireguard");
    const path = join(dir, "private.key");
    const first = loadOrCreatePrivateKey(path);
    expect(first.created).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const again = loadOrCreatePrivateKey(path);
    expect(again.created).toBe(false);
    expect(again.key.equals(first.key)).toBe(true);
    // Nothing left over from the write.
    expect(readdirSync(dir)).toEqual(["private.key"]);
  });

  it("reads a key file wg genkey wrote", () => {
    const path = join(tempDir(), "private.key");
    writeFileSync(path, `${WG_PRIVATE}\n`, { mode: 0o600 });
    const { key, created } = loadOrCreatePrivateKey(path);
    expect(created).toBe(false);
    expect(key.publicKey()).toBe(WG_PUBLIC);
  });

  it("refuses a key file others can read, naming its mode", () => {
    const path = join(tempDir(), "private.key");
    writeFileSync(path, `${WG_PRIVATE}\n`, { mode: 0o600 });
    chmodSync(path, 0o644);
    expect(() => loadOrCreatePrivateKey(path)).toThrow(/mode 0644 lets others read it/);
  });

  it("refuses a symlink and a malformed file instead of making a new key over them", () => {
    const dir = tempDir();
    const target = join(dir, "elsewhere");
    writeFileSync(target, `${WG_PRIVATE}\n`, { mode: 0o600 });
    symlinkSync(target, join(dir, "link.key"));
    expect(() => loadOrCreatePrivateKey(join(dir, "link.key"))).toThrow(/not a regular file/);
    writeFileSync(join(dir, "bad.key"), "garbage\n", { mode: 0o600 });
    expect(() => loadOrCreatePrivateKey(join(dir, "bad.key"))).toThrow(/not a WireGuard private key/);
  });
});
