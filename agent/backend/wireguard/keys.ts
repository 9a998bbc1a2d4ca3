import { createPrivateKey, createPublicKey, generateKeyPairSync, timingSafeEqual } from "node:crypto";
import { closeSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { inspect } from "node:util";

/**
 * WireGuard keys: Curve25519 (X25519) pairs of 32 bytes, written as standard base64 (44
 * characters, one `=`) the way `wg genkey`/`wg pubkey` do, and as hex on the UAPI socket.
 * A node's private key is made on its first start and never leaves the node: it lives in a
 * 0600 file and in a PrivateKey, which prints as a placeholder wherever it is logged,
 * serialised or inspected. Only the public key is published with the lease (issue 24).
 */

export class WireguardKeyError extends Error {
  readonly code = "WIREGUARD_KEY";
  constructor(message: string) {
    super(message);
    this.name = "WireguardKeyError";
  }
}

const KEY_BYTES = 32;
// node:crypto takes and gives raw X25519 keys only inside these fixed DER wrappers
// (PKCS#8 for the private key, SPKI for the public one; RFC 8410).
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");
/**
 * 32 bytes in canonical base64: 43 characters and one `=`; the 43rd carries 4 data bits and 2
 * zero bits, so only 16 letters may stand there. Anything else (no padding, `-_` of base64url,
 * spaces, non-zero spare bits that decode to the same bytes) is refused, so one key has one text.
 */
const CANONICAL_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

const REDACTED = "[WireGuard private key]";

/** A node's private key. Its bytes come out only through `hex()`, for the device. */
export class PrivateKey {
  readonly #bytes: Buffer;

  private constructor(bytes: Uint8Array) {
    // Clamped as `wg genkey` does (RFC 7748 §5): X25519 clamps anyway, so the public key is
    // the same; clamping here makes the stored key equal to what a device reports back.
    const b = Buffer.from(bytes);
    b[0]! &= 248;
    b[31] = (b[31]! & 127) | 64;
    this.#bytes = b;
  }

  static generate(): PrivateKey {
    const { privateKey } = generateKeyPairSync("x25519");
    return new PrivateKey(privateKey.export({ format: "der", type: "pkcs8" }).subarray(-KEY_BYTES));
  }

  /** From the key file's text (`wg genkey`'s form); a malformed key is refused without being quoted. */
  static fromBase64(text: string, where: string): PrivateKey {
    const bytes = decodeKey(text.trim());
    if (bytes === null) throw new WireguardKeyError(`${where}: not a WireGuard private key (32 bytes in base64 expected)`);
    return new PrivateKey(bytes);
  }

  /** From the device's answer (UAPI `private_key=`, hex). */
  static fromHex(hex: string): PrivateKey | null {
    if (!/^[0-9a-f]{64}$/.test(hex)) return null;
    return new PrivateKey(Buffer.from(hex, "hex"));
  }

  /** The public key, base64: what peers are told. */
  publicKey(): string {
    const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, this.#bytes]), format: "der", type: "pkcs8" });
    const der = createPublicKey(key).export({ format: "der", type: "spki" });
    if (der.length !== SPKI_X25519.length + KEY_BYTES || !der.subarray(0, SPKI_X25519.length).equals(SPKI_X25519)) {
      throw new WireguardKeyError("X25519 public key: unexpected DER from node:crypto");
    }
    return der.subarray(SPKI_X25519.length).toString("base64");
  }

  /** For the UAPI `private_key=` line only. */
  hex(): string {
    return this.#bytes.toString("hex");
  }

  /** The key file's content. */
  base64(): string {
    return this.#bytes.toString("base64");
  }

  equals(other: PrivateKey): boolean {
    return timingSafeEqual(this.#bytes, other.#bytes);
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}

/** The bytes of a key in canonical base64, or null. All-zero is refused: it is what an unset key reads as. */
function decodeKey(text: string): Buffer | null {
  if (!CANONICAL_KEY.test(text)) return null;
  const bytes = Buffer.from(text, "base64");
  if (bytes.length !== KEY_BYTES || bytes.toString("base64") !== text || bytes.every((b) => b === 0)) return null;
  return bytes;
}

/**
 * A peer's published public key, checked strictly; the reason says what is wrong (never the
 * key's full text, which may be anything a datastore held).
 */
export function checkPublicKey(text: unknown): { ok: true; key: string } | { ok: false; reason: string } {
  if (typeof text !== "string") return { ok: false, reason: "no WireGuard public key published" };
  if (decodeKey(text) === null) {
    return { ok: false, reason: `malformed WireGuard public key (${text.length} characters; 32 bytes in canonical base64 expected)` };
  }
  return { ok: true, key: text };
}

/** A checked base64 key as the UAPI's hex. */
export function keyToHex(base64: string): string {
  return Buffer.from(base64, "base64").toString("hex");
}

/** A UAPI hex key as base64, or null when it is not 32 bytes of lower-case hex. */
export function hexToKey(hex: string): string | null {
  return /^[0-9a-f]{64}$/.test(hex) ? Buffer.from(hex, "hex").toString("base64") : null;
}

/** The key file, as the filesystem calls it; tests pass a temporary directory. */
export interface KeyFileResult {
  key: PrivateKey;
  /** True when this call made the key (the node's first start, or after a reinstall). */
  created: boolean;
}

/**
 * Reads the node's private key, or makes one when the file does not exist. The file is
 * written whole before it appears (a 0600 temporary file, fsync, then link, which fails if
 * another start got there first, whose key is then read). A file that others may read, or
 * that is not a regular file, is refused rather than used: the key may already be known.
 */
export function loadOrCreatePrivateKey(path: string): KeyFileResult {
  const existing = readKeyFile(path);
  if (existing) return { key: existing, created: false };
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const key = PrivateKey.generate();
  const tmp = join(dirname(path), `.${process.pid}.${Date.now()}.key.tmp`);
  const fd = openSync(tmp, "wx", 0o600);
  try {
    writeSync(fd, `${key.base64()}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw keyFileError(path, "write", err);
    const other = readKeyFile(path);
    if (!other) throw new WireguardKeyError(`WireGuard key file ${path}: vanished while being created`);
    return { key: other, created: false };
  } finally {
    unlinkSync(tmp);
  }
  return { key, created: true };
}

function readKeyFile(path: string): PrivateKey | null {
  let mode: number;
  try {
    const st = lstatSync(path);
    if (!st.isFile()) throw new WireguardKeyError(`WireGuard key file ${path}: not a regular file`);
    mode = st.mode & 0o777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err instanceof WireguardKeyError ? err : keyFileError(path, "read", err);
  }
  if ((mode & 0o077) !== 0) {
    throw new WireguardKeyError(`WireGuard key file ${path}: mode ${mode.toString(8).padStart(4, "0")} lets others read it; 0600 expected (replace the key if it may have been read)`);
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw keyFileError(path, "read", err);
  }
  return PrivateKey.fromBase64(text, `WireGuard key file ${path}`);
}

function keyFileError(path: string, op: string, err: unknown): WireguardKeyError {
  return new WireguardKeyError(`WireGuard key file ${path}: failed to ${op}: ${err instanceof Error ? err.message : String(err)}`);
}
