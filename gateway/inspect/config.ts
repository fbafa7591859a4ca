// The inspector's settings: how many exchanges it keeps, how much of each body, which agents it
// never records bodies for, and the token the admin listener asks for.
import { dirname, resolve } from "node:path";
import type { AdminAddress } from "../../shared/admin.ts";
import { type Env, type Flags, oneSecret, pick, secretSource } from "../../shared/config.ts";
import { UsageError } from "../../shared/errors.ts";

/** The [agents."<id>"] tables of the file: per-agent settings. */
export type AgentTables = Record<string, { inspect?: unknown }>;

const AGENT_KEYS = ["inspect"];

/** The agent ids whose bodies the inspector never keeps (`inspect = false`). */
export function readAgentTables(path: string, value: unknown): string[] {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`${path}: agents must be tables, written [agents."pi-kitchen"]`);
  }
  const off: string[] = [];
  for (const [id, table] of Object.entries(value as AgentTables)) {
    const where = `${path}: agents."${id}"`;
    if (typeof table !== "object" || table === null) throw new UsageError(`${where} must be a table`);
    const unknown = Object.keys(table).find((key) => !AGENT_KEYS.includes(key));
    if (unknown) throw new UsageError(`${where}: unknown key '${unknown}' (known: ${AGENT_KEYS.join(", ")})`);
    if (table.inspect === undefined) continue;
    if (typeof table.inspect !== "boolean") throw new UsageError(`${where}.inspect must be true or false`);
    if (!table.inspect) off.push(id);
  }
  return off;
}

/** Loopback addresses, where the admin listener may answer without a token. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/**
 * The admin token from --admin-token, --admin-token-file, INDRANET_ADMIN_TOKEN(_FILE) or the
 * file's admin_token_file: required when the admin listener is not on loopback, since it shows
 * request bodies.
 */
export function resolveAdminToken(
  flags: Flags,
  env: Env,
  fileValue: string | undefined,
  configPath: string,
  admin: AdminAddress | "off",
  warnings: string[],
): string | undefined {
  const inFile =
    fileValue === undefined
      ? undefined
      : { text: resolve(dirname(configPath), fileValue), name: `${configPath}: admin_token_file` };
  const found = oneSecret(
    [
      secretSource(pick(flags, {}, "admin-token", ""), false),
      secretSource(pick({}, env, "", "INDRANET_ADMIN_TOKEN"), false),
      secretSource(pick(flags, env, "admin-token-file", "INDRANET_ADMIN_TOKEN_FILE"), true),
      secretSource(inFile, true),
    ],
    "admin token",
    warnings,
  );
  if (found?.source.name === "--admin-token") {
    warnings.push(
      "--admin-token is visible to other local users (ps); prefer INDRANET_ADMIN_TOKEN or --admin-token-file",
    );
  }
  if (!found && admin !== "off" && !isLoopback(admin.hostname)) {
    throw new UsageError(
      `--admin ${admin.hostname}:${admin.port} is not loopback, and the admin listener shows request bodies: ` +
        "set --admin-token-file FILE (or INDRANET_ADMIN_TOKEN, admin_token_file)",
    );
  }
  return found?.secret;
}
