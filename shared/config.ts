// What the gateway's and the agent's configs share: reading a setting from a flag or an environment
// variable, naming it when its value is wrong, and reading secrets from files.
import { readFileSync, statSync } from "node:fs";
import { UsageError } from "./errors.ts";
import { isLogLevel, LOG_FORMATS, type LogFormat } from "./log.ts";

export type Flags = Record<string, string | boolean | undefined>;
export type Env = Record<string, string | undefined>;

/** A value given as a flag or an environment variable, and the name to blame when it is wrong. */
export interface Setting {
  text: string;
  name: string;
}

/** How one kind of value is read from a flag or variable (text) and from the TOML file. */
export interface Kind<T> {
  /** Completes "expected …" and "must be …" in error messages. */
  expected: string;
  fromText(text: string): T | undefined;
  fromFile(value: unknown): T | undefined;
}

// Anyone holding one recorded handshake can try secrets offline as fast as HMAC-SHA256 runs:
// 16 random characters put that far out of reach, shorter human-chosen ones do not.
export const MIN_SECRET_LENGTH = 16;

/** The flag wins over the variable. An empty variable counts as unset, as `VAR=` usually means. */
export function pick(flags: Flags, env: Env, flag: string, envName: string): Setting | undefined {
  const given = flags[flag];
  if (typeof given === "string") return { text: given, name: `--${flag}` };
  const fromEnv = env[envName];
  if (fromEnv !== undefined && fromEnv !== "") return { text: fromEnv, name: envName };
  return undefined;
}

export function parseSetting<T>(kind: Kind<T>, setting: Setting): T {
  const value = kind.fromText(setting.text);
  if (value === undefined) {
    throw new UsageError(`${setting.name}: expected ${kind.expected}, got '${setting.text}'`);
  }
  return value;
}

/** A kind whose file value is a string, read like the text of a flag. */
export function textKind<T>(expected: string, fromText: (text: string) => T | undefined): Kind<T> {
  return {
    expected,
    fromText,
    fromFile: (value) => (typeof value === "string" ? fromText(value) : undefined),
  };
}

/** Whole numbers from `min` to `max`; flags accept plain digits only (no signs, exponents or hex). */
export function integerKind(expected: string, min: number, max: number): Kind<number> {
  const check = (n: number) => (Number.isInteger(n) && n >= min && n <= max ? n : undefined);
  return {
    expected,
    fromText: (text) => (/^\d+$/.test(text) ? check(Number(text)) : undefined),
    fromFile: (value) => (typeof value === "number" ? check(value) : undefined),
  };
}

export const logLevelKind: Kind<string> = textKind("one of debug, info, warn, error", (text) =>
  isLogLevel(text) ? text : undefined,
);

export const logFormatKind: Kind<LogFormat> = textKind("one of text, json", (text) =>
  LOG_FORMATS.find((f) => f === text),
);

/** Why a secret cannot be used, or undefined when it can. Never echoes the secret itself. */
export function secretProblem(secret: string): string | undefined {
  if (secret.length >= MIN_SECRET_LENGTH) return undefined;
  return (
    `must be at least ${MIN_SECRET_LENGTH} characters ` +
    "(a short secret can be guessed offline from one recorded handshake)"
  );
}

/**
 * Reads a secret file. Surrounding whitespace is trimmed on both sides of the tunnel alike, so the
 * same file given to the gateway and to the agent always yields the same secret.
 */
export function readSecretFile(path: string, name: string): { secret: string; warning?: string } {
  let mode: number;
  let text: string;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`${name}: cannot read ${path}: ${fsReason(error)}`);
  }
  const secret = text.trim();
  const problem = secret === "" ? "is empty" : secretProblem(secret);
  if (problem) throw new UsageError(`${name}: the secret in ${path} ${problem}`);
  const warning = exposedFileWarning(path, mode, name);
  return warning ? { secret, warning } : { secret };
}

/** One place a secret may come from: its text, or the path of a file holding it. */
export interface SecretSource extends Setting {
  file: boolean;
}

/**
 * The secret from exactly one of `sources` (absent ones undefined), or undefined when none is
 * given. A file is read (and warned about when others can read it), an inline value is checked;
 * two sources are refused, naming both, so that a forgotten one never silently wins. `what`
 * names the secret in that message ("secret", "cluster secret").
 */
export function oneSecret(
  sources: (SecretSource | undefined)[],
  what: string,
  warnings: string[],
): { secret: string; source: SecretSource } | undefined {
  const given = sources.filter((source) => source !== undefined);
  const [source, extra] = given;
  if (extra)
    throw new UsageError(`give the ${what} only once (found ${given.map((s) => s.name).join(" and ")})`);
  if (!source) return undefined;
  if (source.file) {
    const read = readSecretFile(source.text, source.name);
    if (read.warning) warnings.push(read.warning);
    return { secret: read.secret, source };
  }
  const problem = source.text === "" ? "must not be empty" : secretProblem(source.text);
  if (problem) throw new UsageError(`${source.name} ${problem}`);
  return { secret: source.text, source };
}

/** A setting as a secret source, or undefined when it is not set. */
export function secretSource(setting: Setting | undefined, file: boolean): SecretSource | undefined {
  return setting ? { ...setting, file } : undefined;
}

/** A warning when a file holding secrets can be read by other local users, else undefined. */
export function exposedFileWarning(path: string, mode: number, name: string): string | undefined {
  if ((mode & 0o077) === 0) return undefined;
  const octal = (mode & 0o777).toString(8).padStart(4, "0");
  return `${name}: ${path} is accessible to group or others (mode ${octal}); run chmod 600 ${path}`;
}

/** A short reason for a failed file read, without the stack of a system error. */
export function fsReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES") return "permission denied";
  if (code === "EISDIR") return "it is a directory";
  return error instanceof Error ? error.message : String(error);
}

/** A TOML table (`[name]` or one entry of `[[name]]`): not an array, a date or a scalar. */
export function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}
