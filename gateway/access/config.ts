// The access keys of the config file's [agents."<id or pattern>"] tables: basic_auth, allow,
// deny, rate_limit and rate_burst. Every error names the file, the table and the key.
import { isValidAgentId } from "../../shared/auth.ts";
import { UsageError } from "../../shared/errors.ts";
import { type BasicAuthUser, isPasswordHash } from "./basic-auth.ts";
import { parseCidr } from "./cidr.ts";
import type { Rate } from "./rate-limit.ts";

/** One agent table's access rules; only tables with at least one access key become one. */
export interface AccessRule {
  /** An agent id, or a pattern with `*` for any run of id characters. */
  pattern: string;
  users: BasicAuthUser[];
  allow: string[];
  deny: string[];
  rate?: Rate;
}

export const ACCESS_KEYS = ["basic_auth", "allow", "deny", "rate_limit", "rate_burst"];

type Table = Record<string, unknown>;

/**
 * Takes the access keys out of the agent tables: the rules, and the tables without those keys for
 * the other readers. `otherKeys` are the keys those readers know, for the unknown-key error.
 */
export function readAccessTables(
  path: string,
  value: unknown,
  otherKeys: readonly string[],
): { rules: AccessRule[]; rest: unknown } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return { rules: [], rest: value };
  const rules: AccessRule[] = [];
  const rest: Record<string, unknown> = {};
  for (const [pattern, table] of Object.entries(value as Table)) {
    if (typeof table !== "object" || table === null || Array.isArray(table)) {
      rest[pattern] = table;
      continue;
    }
    const where = `${path}: agents."${pattern}"`;
    const known = [...otherKeys, ...ACCESS_KEYS];
    const unknown = Object.keys(table).find((key) => !known.includes(key));
    if (unknown) throw new UsageError(`${where}: unknown key '${unknown}' (known: ${known.join(", ")})`);
    const own = Object.fromEntries(Object.entries(table).filter(([key]) => !ACCESS_KEYS.includes(key)));
    rest[pattern] = own;
    if (Object.keys(own).length === Object.keys(table).length) continue;
    rules.push(readRule(where, pattern, table as Table));
  }
  return { rules, rest };
}

function readRule(where: string, pattern: string, table: Table): AccessRule {
  // `*` stands for id characters, so a pattern with each `*` read as one letter is an id.
  if (!isValidAgentId(pattern.replaceAll("*", "a"))) {
    throw new UsageError(`${where} is not an agent id or pattern (lowercase a-z, 0-9, '-' and '*')`);
  }
  const rate = readRate(where, table.rate_limit, table.rate_burst);
  return {
    pattern,
    users: readStrings(where, "basic_auth", table.basic_auth, readUser),
    allow: readStrings(where, "allow", table.allow, readRange),
    deny: readStrings(where, "deny", table.deny, readRange),
    ...(rate ? { rate } : {}),
  };
}

function readStrings<T>(
  where: string,
  key: string,
  value: unknown,
  read: (text: string, name: string) => T,
): T[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new UsageError(`${where}.${key} must be an array of strings`);
  return value.map((item, i) => {
    if (typeof item !== "string") throw new UsageError(`${where}.${key}[${i}] must be a string`);
    return read(item, `${where}.${key}[${i}]`);
  });
}

function readUser(text: string, name: string): BasicAuthUser {
  const colon = text.indexOf(":");
  const user = text.slice(0, colon);
  const hash = text.slice(colon + 1);
  if (colon <= 0 || !isPasswordHash(hash)) {
    throw new UsageError(
      `${name} must be "user:hash" with a hash from gateway-tunnel hash-password ($argon2id$… or $2b$…)`,
    );
  }
  return { user, hash };
}

function readRange(text: string, name: string): string {
  if (!parseCidr(text)) throw new UsageError(`${name} '${text}' is not an IP address or CIDR range`);
  return text;
}

const RATE = /^(\d+(?:\.\d+)?)\/(s|m)$/;

/** `rate_limit = "20/s"` or `"600/m"`; `rate_burst` defaults to the rate per second, at least 1. */
function readRate(where: string, limit: unknown, burst: unknown): Rate | undefined {
  if (limit === undefined) {
    if (burst !== undefined) throw new UsageError(`${where}.rate_burst needs rate_limit`);
    return undefined;
  }
  const match = typeof limit === "string" ? RATE.exec(limit) : null;
  const count = Number(match?.[1]);
  if (!match || !(count > 0)) {
    throw new UsageError(
      `${where}.rate_limit must be requests per second or minute, such as "20/s" or "600/m"`,
    );
  }
  const perSecond = match[2] === "m" ? count / 60 : count;
  if (burst === undefined) return { perSecond, burst: Math.max(1, Math.ceil(perSecond)) };
  if (typeof burst !== "number" || !Number.isInteger(burst) || burst < 1) {
    throw new UsageError(`${where}.rate_burst must be a whole number of at least 1`);
  }
  return { perSecond, burst };
}
