// The [cluster] settings: where the shared Redis is, the secret gateways prove themselves to each
// other with, and the address peers forward requests to. Absent, the gateway runs on its own.
import { dirname, resolve } from "node:path";
import {
  type Env,
  exposedFileWarning,
  type Flags,
  oneSecret,
  pick,
  type Setting,
  secretSource,
} from "../../shared/config.ts";
import { UsageError } from "../../shared/errors.ts";

export interface ClusterConfig {
  /** `redis://` or `rediss://` URL of the directory. */
  redis: string;
  /** Signs every request forwarded between gateways. */
  secret: string;
  /** The ingress URL peers forward to; when unset, derived from --bind and the port once listening. */
  advertise?: string;
}

/** The [cluster] table as the TOML file gives it, paths still relative to the file. */
export interface ClusterFileTable {
  redis?: unknown;
  secret?: unknown;
  secret_file?: unknown;
  advertise?: unknown;
}

const TABLE_KEYS = ["redis", "secret", "secret_file", "advertise"];

/**
 * The cluster settings from flags, variables and the file's [cluster] table (in that order of
 * precedence), or undefined when no Redis is named anywhere.
 */
export function resolveCluster(
  flags: Flags,
  env: Env,
  table: ClusterFileTable | undefined,
  file: { path: string; mode: number },
  warnings: string[],
): ClusterConfig | undefined {
  const configPath = file.path;
  const where = `${configPath}: cluster`;
  const unknown = Object.keys(table ?? {}).find((key) => !TABLE_KEYS.includes(key));
  if (unknown) throw new UsageError(`${where}: unknown key '${unknown}' (known: ${TABLE_KEYS.join(", ")})`);
  const redisSetting =
    pick(flags, env, "cluster-redis", "INDRANET_CLUSTER_REDIS") ??
    fileSetting(table?.redis, `${where}.redis`);
  if (!redisSetting) {
    const stray = pick(flags, env, "cluster-advertise", "INDRANET_CLUSTER_ADVERTISE");
    if (stray)
      throw new UsageError(`${stray.name} needs --cluster-redis (INDRANET_CLUSTER_REDIS, [cluster] redis)`);
    return undefined;
  }
  const advertiseSetting =
    pick(flags, env, "cluster-advertise", "INDRANET_CLUSTER_ADVERTISE") ??
    fileSetting(table?.advertise, `${where}.advertise`);
  const advertise = advertiseSetting ? parseAdvertise(advertiseSetting) : undefined;
  return {
    redis: parseRedisUrl(redisSetting),
    secret: resolveSecret(flags, env, table, where, file, warnings),
    ...(advertise ? { advertise } : {}),
  };
}

function fileSetting(value: unknown, name: string): Setting | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "") throw new UsageError(`${name} must be a non-empty string`);
  return { text: value, name };
}

function tryUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

function parseRedisUrl(setting: Setting): string {
  const url = tryUrl(setting.text);
  if (!url || (url.protocol !== "redis:" && url.protocol !== "rediss:") || url.hostname === "") {
    throw new UsageError(
      `${setting.name}: expected redis://HOST:PORT or rediss://HOST:PORT, got '${setting.text}'`,
    );
  }
  return setting.text;
}

function parseAdvertise(setting: Setting): string {
  const url = tryUrl(setting.text);
  const plain =
    url && (url.pathname === "/" || url.pathname === "") && !url.search && !url.hash && !url.username;
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || !plain) {
    throw new UsageError(
      `${setting.name}: expected the ingress URL peers reach this gateway at, such as http://10.0.0.5:8082, got '${setting.text}'`,
    );
  }
  return url.origin;
}

/** Exactly one of a variable, --cluster-secret-file, the file's `secret` or `secret_file`. */
function resolveSecret(
  flags: Flags,
  env: Env,
  table: ClusterFileTable | undefined,
  where: string,
  file: { path: string; mode: number },
  warnings: string[],
): string {
  const inFile = fileSetting(table?.secret_file, `${where}.secret_file`);
  const found = oneSecret(
    [
      secretSource(pick({}, env, "", "INDRANET_CLUSTER_SECRET"), false),
      secretSource(pick(flags, env, "cluster-secret-file", "INDRANET_CLUSTER_SECRET_FILE"), true),
      secretSource(fileSetting(table?.secret, `${where}.secret`), false),
      // A relative secret_file is found next to the config file.
      secretSource(inFile && { ...inFile, text: resolve(dirname(file.path), inFile.text) }, true),
    ],
    "cluster secret",
    warnings,
  );
  if (!found) {
    throw new UsageError(
      "a cluster needs a secret shared by its gateways: [cluster] secret or secret_file, " +
        "--cluster-secret-file, INDRANET_CLUSTER_SECRET or INDRANET_CLUSTER_SECRET_FILE",
    );
  }
  if (found.source.name === `${where}.secret`) {
    const exposed = exposedFileWarning(file.path, file.mode, "the config file holds the cluster secret");
    if (exposed) warnings.push(exposed);
  }
  return found.secret;
}
