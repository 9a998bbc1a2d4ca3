import { ConfigError } from "./errors.js";

/**
 * Flags from the environment: TWILL_<FLAG> (TWILL_NODE_NAME, TWILL_NET_CONF, ...) becomes the
 * flag's default, so a flag on the command line still wins. Only variables that name a known
 * flag are read: TWILL_* also holds other programs' settings (the CNI plugin's TWILL_LOG_FILE,
 * a wrapper script's own), and one the agent does not know must never stop it. A known
 * variable with a value outside the flag's choices is an error naming the variable.
 */

export interface EnvOption {
  type?: string;
  choices?: readonly string[];
  default?: unknown;
  defaultDescription?: string;
}

export const ENV_PREFIX = "TWILL_";

/** TWILL_NODE_NAME for `node-name`. */
export const envName = (flag: string): string => ENV_PREFIX + flag.toUpperCase().replace(/-/g, "_");

/** The options with their defaults taken from the environment where it sets them. */
export function withEnvDefaults<T extends Record<string, EnvOption>>(options: T, env: Record<string, string | undefined>): T {
  const out: Record<string, EnvOption> = {};
  for (const [flag, option] of Object.entries(options)) {
    const name = envName(flag);
    const value = env[name];
    if (value === undefined) {
      out[flag] = option;
      continue;
    }
    if (option.choices && !option.choices.includes(value)) {
      throw new ConfigError(`${name}=${JSON.stringify(value)} is not one of ${option.choices.join(", ")}`);
    }
    out[flag] = { ...option, default: option.type === "boolean" ? envBoolean(name, value) : value, defaultDescription: `$${name}` };
  }
  return out as T;
}

/** TWILL_* variables that name none of the flags: ignored, worth a debug line. */
export function ignoredEnv(env: Record<string, string | undefined>, flags: readonly string[]): string[] {
  const known = new Set(flags.map(envName));
  return Object.keys(env).filter((k) => k.startsWith(ENV_PREFIX) && !known.has(k)).sort();
}

function envBoolean(name: string, value: string): boolean {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new ConfigError(`${name}=${JSON.stringify(value)} is not true or false`);
}
