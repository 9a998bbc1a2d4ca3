/**
 * CNI error codes (SPEC.md "Error"). 0-99 are reserved by the spec; libcni adds 8 (invalid
 * netns) and 999 (internal). Every failure a plugin reports goes through {@link CniError},
 * and {@link toCniError} is the one place that maps anything else to a code.
 */
export const Code = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnv: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  InvalidNetns: 8,
  TryAgainLater: 11,
  NotAvailable: 50,
  LimitedConnectivity: 51,
  Internal: 999,
} as const;

export type CodeNumber = (typeof Code)[keyof typeof Code];

export class CniError extends Error {
  constructor(
    readonly code: CodeNumber,
    message: string,
    readonly details = "",
  ) {
    super(message);
    this.name = "CniError";
  }

  toJSON(cniVersion: string) {
    return { cniVersion, code: this.code, msg: this.message, details: this.details };
  }
}

export const invalidEnv = (name: string, why: string) =>
  new CniError(Code.InvalidEnv, `${name}: ${why}`);

export const invalidConfig = (msg: string, details = "") =>
  new CniError(Code.InvalidConfig, msg, details);

/** Code 2: the spec requires the message to name the key and the value. */
export const unsupportedField = (key: string, value: unknown) =>
  new CniError(Code.UnsupportedField, `unsupported value for "${key}": ${JSON.stringify(value)}`);

export const tryAgainLater = (msg: string, details = "") =>
  new CniError(Code.TryAgainLater, msg, details);

/** Wraps anything thrown into a CniError; unknown errors keep their message, never a stack. */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof Error) {
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno && /^E[A-Z]+$/.test(errno)) return new CniError(Code.IoFailure, err.message);
    return new CniError(Code.Internal, err.message);
  }
  return new CniError(Code.Internal, String(err));
}
