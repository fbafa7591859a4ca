// The gateway's settings, validated once at start-up. Each comes from, in order of precedence, a
// flag, an INDRANET_* variable, the TOML file (--config) or a default.
import { readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type AdminAddress, adminAddressKind, DEFAULT_ADMIN } from "../shared/admin.ts";
import { isValidAgentId, randomHex } from "../shared/auth.ts";
import {
  type Env,
  exposedFileWarning,
  type Flags,
  fsReason,
  integerKind,
  type Kind,
  logFormatKind,
  logLevelKind,
  parseSetting,
  pick,
  readSecretFile,
  secretProblem,
  textKind,
} from "../shared/config.ts";
import { UsageError } from "../shared/errors.ts";
import type { LogFormat } from "../shared/log.ts";
import { parseCidr } from "./access/cidr.ts";
import { type AccessRule, readAccessTables } from "./access/config.ts";
import { type AcmeConfig, type AcmeFileTable, resolveAcme } from "./acme/config.ts";
import type { TokenEntry } from "./authenticate.ts";
import { type ClusterConfig, type ClusterFileTable, resolveCluster } from "./cluster/config.ts";
import { checkHostsAgainstDomain, type HostEntry, readHosts } from "./hosts.ts";
import { readAgentTables, resolveAdminToken } from "./inspect/config.ts";
import { readTcpTables, type TcpRoute } from "./tcp/config.ts";
import { readTlsPair, type TlsFiles, type TlsPair } from "./tls.ts";

export type { TokenEntry };

export interface GatewayConfig {
  /** Requests for `<agent-id>.<domain>` go to that agent; lowercase. */
  domain: string;
  bind: string;
  /** 0 picks a free port (tests). */
  httpPort: number;
  wsPort: number;
  requestTimeoutMs: number;
  /** A stream with no body bytes either way for this long is cut; 0 never. */
  idleTimeoutMs: number;
  heartbeatIntervalMs: number;
  maxStreamsPerAgent: number;
  /** `UNLIMITED_BODY` when no limit is configured (`max_request_body = 0`, the default). */
  maxRequestBodyBytes: number;
  /** On SIGTERM, in-flight requests get this long to finish before the gateway exits. */
  shutdownGraceMs: number;
  /** A request for an agent seen this recently waits this long for it to come back; 0 never. */
  holdMs: number;
  /** The /healthz, /metrics and /api/agents listener, or "off". */
  admin: AdminAddress | "off";
  tokens: TokenEntry[];
  /** The certificate both ports serve (`https://`, `wss://`) to names without one of their own. */
  tls?: TlsFiles & TlsPair;
  /** Set when certificates come from an ACME CA ([acme]); both ports then serve TLS. */
  acme?: AcmeConfig;
  /** Where the ACME account and certificates are kept. */
  stateDir: string;
  /** The plain-HTTP port answering ACME HTTP-01 challenges and redirecting to https://. */
  acmeHttpPort: number;
  /** Set when this gateway is one of several sharing a Redis directory. */
  cluster?: ClusterConfig;
  /** Exchanges the inspector keeps; 0 turns it off. */
  inspect: number;
  /** Bytes of each body the inspector keeps; 0 for heads only. */
  inspectBody: number;
  /** Agent ids whose bodies the inspector never keeps ([agents."id"] inspect = false). */
  inspectOff: string[];
  /** Asked for by the admin listener's API and page; required off loopback. */
  adminToken?: string;
  /** Front proxies whose X-Forwarded-* headers are kept (XFF is appended to); addresses or CIDR ranges. */
  trustedProxies: string[];
  /** Host names besides `<id>.<domain>` that route to an agent ([[hosts]]); reloaded on SIGHUP. */
  hosts: HostEntry[];
  /** Public TCP ports and the agent service each carries ([[tcp]]); reloaded on SIGHUP. */
  tcp: TcpRoute[];
  /** Per-agent access rules ([agents."id"] basic_auth, allow, deny, rate_limit); reloaded on SIGHUP. */
  access: AccessRule[];
  dev: boolean;
  configPath?: string;
  logLevel: string;
  logFormat: LogFormat;
  /** Problems worth telling the operator that do not stop the gateway. */
  warnings: string[];
  /** Set when --dev generated the only token, so the CLI can print the matching agent command. */
  devCredentials?: { token: string; secret: string };
}

/** Request bodies of any size are streamed through; 0 in the config asks for this. */
export const UNLIMITED_BODY = Number.MAX_SAFE_INTEGER;

// setTimeout fires at once for delays above 2^31-1 ms, so a longer timeout would mean none at all.
const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

const port = integerKind("a port from 0 to 65535", 0, 65535);

const seconds: Kind<number> = {
  expected: `a number of seconds above 0 and at most ${MAX_TIMER_SECONDS}`,
  fromText: (text) => (/^\d+(\.\d+)?$/.test(text) ? secondsToMs(Number(text)) : undefined),
  fromFile: (value) => (typeof value === "number" ? secondsToMs(value) : undefined),
};

function secondsToMs(value: number): number | undefined {
  const ms = Math.round(value * 1000);
  return ms >= 1 && value <= MAX_TIMER_SECONDS ? ms : undefined;
}

const secondsOrNever: Kind<number> = {
  expected: `a number of seconds up to ${MAX_TIMER_SECONDS}, or 0 for never`,
  fromText: (text) => (text === "0" ? 0 : seconds.fromText(text)),
  fromFile: (value) => (value === 0 ? 0 : seconds.fromFile(value)),
};

const streamCount = integerKind("a whole number of at least 1", 1, Number.MAX_SAFE_INTEGER);

const bodyLimit = mapKind(
  integerKind("a number of bytes (0 for no limit)", 0, Number.MAX_SAFE_INTEGER),
  (n) => (n === 0 ? UNLIMITED_BODY : n),
);

const dnsName = textKind("a DNS name such as tunnel.example.com", (text) => {
  const name = text.toLowerCase();
  // Each label of a host name obeys the same rule as an agent id.
  return name.length <= 253 && name.split(".").every(isValidAgentId) ? name : undefined;
});

const address = textKind("a listen address such as 0.0.0.0 or ::", (text) =>
  text !== "" && !/\s/.test(text) ? text : undefined,
);

type Scalars = Omit<
  GatewayConfig,
  | "tokens"
  | "tls"
  | "acme"
  | "cluster"
  | "trustedProxies"
  | "hosts"
  | "tcp"
  | "access"
  | "dev"
  | "configPath"
  | "warnings"
  | "devCredentials"
  | "inspectOff"
  | "adminToken"
>;

/**
 * What the file holds besides scalars and tokens: TLS paths, resolved next to the file, and the
 * [cluster] table, read with its flags and variables.
 */
type FileConfig = Omit<Partial<GatewayConfig>, "cluster" | "acme"> & {
  acme?: AcmeFileTable;
  adminTokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  cluster?: ClusterFileTable;
  mode?: number;
};

interface Field<T> {
  flag: string;
  env: string;
  /** The key in the TOML file. */
  key: string;
  kind: Kind<T>;
  fallback: T;
}

const FIELDS: { [K in keyof Scalars]: Field<Scalars[K]> } = {
  domain: { flag: "domain", env: "INDRANET_DOMAIN", key: "domain", kind: dnsName, fallback: "localhost" },
  bind: { flag: "bind", env: "INDRANET_BIND", key: "bind", kind: address, fallback: "0.0.0.0" },
  httpPort: { flag: "http-port", env: "INDRANET_HTTP_PORT", key: "http_port", kind: port, fallback: 8082 },
  wsPort: { flag: "ws-port", env: "INDRANET_WS_PORT", key: "ws_port", kind: port, fallback: 8080 },
  requestTimeoutMs: {
    flag: "request-timeout",
    env: "INDRANET_REQUEST_TIMEOUT",
    key: "request_timeout",
    kind: seconds,
    fallback: 10_000,
  },
  idleTimeoutMs: {
    flag: "idle-timeout",
    env: "INDRANET_IDLE_TIMEOUT",
    key: "idle_timeout",
    kind: secondsOrNever,
    fallback: 300_000,
  },
  heartbeatIntervalMs: {
    flag: "heartbeat",
    env: "INDRANET_HEARTBEAT",
    key: "heartbeat_interval",
    kind: seconds,
    fallback: 15_000,
  },
  maxStreamsPerAgent: {
    flag: "max-streams",
    env: "INDRANET_MAX_STREAMS",
    key: "max_streams_per_agent",
    kind: streamCount,
    fallback: 1024,
  },
  maxRequestBodyBytes: {
    flag: "max-body",
    env: "INDRANET_MAX_BODY",
    key: "max_request_body",
    kind: bodyLimit,
    fallback: UNLIMITED_BODY,
  },
  logLevel: {
    flag: "log-level",
    env: "INDRANET_LOG_LEVEL",
    key: "log_level",
    kind: logLevelKind,
    fallback: "info",
  },
  logFormat: {
    flag: "log-format",
    env: "INDRANET_LOG_FORMAT",
    key: "log_format",
    kind: logFormatKind,
    fallback: "text",
  },
  shutdownGraceMs: {
    flag: "shutdown-grace",
    env: "INDRANET_SHUTDOWN_GRACE",
    key: "shutdown_grace",
    kind: seconds,
    fallback: 10_000,
  },
  admin: {
    flag: "admin",
    env: "INDRANET_ADMIN",
    key: "admin",
    kind: adminAddressKind,
    fallback: DEFAULT_ADMIN,
  },
  holdMs: { flag: "hold", env: "INDRANET_HOLD", key: "hold", kind: secondsOrNever, fallback: 5_000 },
  inspect: {
    flag: "inspect",
    env: "INDRANET_INSPECT",
    key: "inspect",
    kind: integerKind("a number of exchanges from 0 (off) to 100000", 0, 100_000),
    fallback: 200,
  },
  stateDir: {
    flag: "state-dir",
    env: "INDRANET_STATE_DIR",
    key: "state_dir",
    kind: textKind("a directory path", (text) => (text === "" ? undefined : text)),
    fallback: "/var/lib/indranet",
  },
  acmeHttpPort: {
    flag: "acme-http-port",
    env: "INDRANET_ACME_HTTP_PORT",
    key: "acme_http_port",
    kind: port,
    fallback: 80,
  },
  inspectBody: {
    flag: "inspect-body",
    env: "INDRANET_INSPECT_BODY",
    key: "inspect_body",
    kind: integerKind("a number of bytes from 0 (heads only) to 16777216", 0, 16 * 1024 * 1024),
    fallback: 64 * 1024,
  },
};

const FIELD_ENTRIES = Object.entries(FIELDS) as [keyof Scalars, Field<unknown>][];
const FILE_KEYS = [
  ...FIELD_ENTRIES.map(([, field]) => field.key),
  "tls_cert",
  "tls_key",
  "trusted_proxies",
  "tokens",
  "hosts",
  "tcp",
  "cluster",
  "acme",
  "agents",
  "admin_token_file",
];
const TOKEN_KEYS = ["token", "secret", "secret_file", "agents"];

// Agent ids are DNS labels; a pattern may add `*` for any run of label characters.
const AGENT_PATTERN = /^[a-z0-9*-]{1,63}$/;

export function loadGatewayConfig(flags: Flags, env: Env): GatewayConfig {
  const configFile = pick(flags, env, "config", "INDRANET_CONFIG");
  const file = configFile ? parseConfigFile(configFile.text) : {};
  const warnings = [...(file.warnings ?? [])];
  const tls = resolveTls(flags, env, file, configFile?.text ?? "", warnings);
  const fileInfo = { path: configFile?.text ?? "", mode: file.mode ?? 0o600 };
  const cluster = resolveCluster(flags, env, file.cluster, fileInfo, warnings);
  const scalars = resolveScalars(flags, env, file);
  const acme = resolveAcme(flags, env, file.acme, fileInfo.path, scalars.domain);
  // With certificates of its own the ingress is an HTTPS server, on HTTPS's port unless told otherwise.
  if (acme && !pick(flags, env, "http-port", "INDRANET_HTTP_PORT") && file.httpPort === undefined)
    scalars.httpPort = 443;
  const adminToken = resolveAdminToken(
    flags,
    env,
    file.adminTokenFile,
    fileInfo.path,
    scalars.admin,
    warnings,
  );
  const config: GatewayConfig = {
    ...scalars,
    inspectOff: file.inspectOff ?? [],
    ...(adminToken ? { adminToken } : {}),
    ...(tls ? { tls } : {}),
    ...(acme ? { acme } : {}),
    ...(cluster ? { cluster } : {}),
    trustedProxies: resolveTrustedProxies(flags, env, file),
    hosts: file.hosts ?? [],
    tcp: file.tcp ?? [],
    access: file.access ?? [],
    tokens: file.tokens ?? [],
    dev: flags.dev === true,
    warnings,
    ...(configFile ? { configPath: configFile.text } : {}),
  };
  checkHostsAgainstDomain(fileInfo.path, config.hosts, config.domain);
  checkDistinctPorts(config);
  if (acme && cluster) {
    // Each gateway would order only its own agents' names, and the CA's challenge for one of them
    // may reach another gateway: certificates and challenges would have to be shared first.
    throw new UsageError(
      "[acme] cannot be used with [cluster] yet: give every gateway the same --tls-cert (a wildcard certificate for *.<domain>) instead",
    );
  }
  if (cluster && !cluster.advertise && (config.bind === "0.0.0.0" || config.bind === "::")) {
    throw new UsageError(
      `--cluster-advertise is needed when --bind is ${config.bind}: other gateways must know which address reaches this one`,
    );
  }
  if (config.tokens.length > 0) return config;
  if (!config.dev)
    throw new UsageError("no tokens configured: pass --config FILE with [[tokens]] or use --dev");
  const dev = devToken();
  return { ...config, tokens: [dev], devCredentials: { token: dev.token, secret: dev.secret } };
}

/** Two listeners on one port would share it (SO_REUSEPORT) and split its connections between them. */
function checkDistinctPorts(config: GatewayConfig): void {
  const ports: [string, number][] = [
    ["--http-port", config.httpPort],
    ["--ws-port", config.wsPort],
    ...(config.acme ? ([["--acme-http-port", config.acmeHttpPort]] as [string, number][]) : []),
  ];
  for (const [i, [name, port]] of ports.entries()) {
    const clash = ports.slice(i + 1).find(([, other]) => port !== 0 && other === port);
    if (clash)
      throw new UsageError(`${name} and ${clash[0]} are both ${port}: each listener needs a port of its own`);
  }
}

/** Both of --tls-cert and --tls-key (each from a flag, a variable or the file) or neither. */
function resolveTls(
  flags: Flags,
  env: Env,
  file: FileConfig,
  configPath: string,
  warnings: string[],
): GatewayConfig["tls"] {
  const fromFile = (path: string | undefined, key: string) =>
    path === undefined ? undefined : { text: path, name: `${configPath}: ${key}` };
  const cert = pick(flags, env, "tls-cert", "INDRANET_TLS_CERT") ?? fromFile(file.tlsCert, "tls_cert");
  const key = pick(flags, env, "tls-key", "INDRANET_TLS_KEY") ?? fromFile(file.tlsKey, "tls_key");
  if (!cert && !key) return undefined;
  if (!cert || !key) {
    const missing = cert
      ? "--tls-key (INDRANET_TLS_KEY, tls_key)"
      : "--tls-cert (INDRANET_TLS_CERT, tls_cert)";
    throw new UsageError(`${(cert ?? key)?.name} is set but ${missing} is not: TLS needs both or neither`);
  }
  const files = { certFile: cert.text, keyFile: key.text, certName: cert.name, keyName: key.name };
  const { pair, warning } = readTlsPair(files);
  if (warning) warnings.push(warning);
  return { ...files, ...pair };
}

function resolveTrustedProxies(flags: Flags, env: Env, file: FileConfig): string[] {
  const setting = pick(flags, env, "trust-proxy", "INDRANET_TRUST_PROXY");
  if (!setting) return file.trustedProxies ?? [];
  return readTrustedProxies(setting.name, setting.text === "" ? [] : setting.text.split(","));
}

function readTrustedProxies(name: string, value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((a) => typeof a === "string")) {
    throw new UsageError(`${name} must be an array of IP addresses or CIDR ranges, e.g. ["10.0.0.0/8"]`);
  }
  return value.map((text) => {
    const range = text.trim();
    if (!parseCidr(range)) throw new UsageError(`${name}: '${text}' is not an IP address or CIDR range`);
    return range;
  });
}

function resolveScalars(flags: Flags, env: Env, file: FileConfig): Scalars {
  const values: Record<string, unknown> = {};
  for (const [prop, field] of FIELD_ENTRIES) {
    const setting = pick(flags, env, field.flag, field.env);
    values[prop] = setting ? parseSetting(field.kind, setting) : (file[prop] ?? field.fallback);
  }
  return values as Scalars;
}

/** A throwaway credential for trying the gateway out; it may register any agent id. */
function devToken(): TokenEntry {
  return {
    token: `dev-${randomHex(4)}`,
    secret: randomHex(32),
    agents: ["*"],
  };
}

/** Reads and checks the TOML file; every error names the file and the key. */
export function parseConfigFile(path: string): FileConfig {
  const { table, mode } = readToml(path);
  const config: Record<string, unknown> = { mode };
  for (const [key, value] of Object.entries(table)) {
    if (key === "cluster") {
      if (!isTable(value)) throw new UsageError(`${path}: cluster must be a table, written [cluster]`);
      config.cluster = value;
      continue;
    }
    if (key === "acme") {
      if (!isTable(value)) throw new UsageError(`${path}: acme must be a table, written [acme]`);
      config.acme = value;
      continue;
    }
    if (key === "agents") {
      const { rules, rest } = readAccessTables(path, value, ["inspect"]);
      config.access = rules;
      config.inspectOff = readAgentTables(path, rest);
      continue;
    }
    if (key === "tcp") {
      config.tcp = readTcpTables(path, value);
      continue;
    }
    if (key === "hosts") {
      config.hosts = readHosts(path, value);
      continue;
    }
    if (key === "admin_token_file") {
      if (typeof value !== "string" || value === "")
        throw new UsageError(`${path}: admin_token_file must be a file path`);
      config.adminTokenFile = value;
      continue;
    }
    if (key === "tokens") {
      Object.assign(config, readTokens(path, value, mode));
      continue;
    }
    if (key === "tls_cert" || key === "tls_key") {
      if (typeof value !== "string" || value === "")
        throw new UsageError(`${path}: ${key} must be a file path`);
      config[key === "tls_cert" ? "tlsCert" : "tlsKey"] = resolve(dirname(path), value);
      continue;
    }
    if (key === "trusted_proxies") {
      config.trustedProxies = readTrustedProxies(`${path}: trusted_proxies`, value);
      continue;
    }
    const entry = FIELD_ENTRIES.find(([, field]) => field.key === key);
    if (!entry) throw new UsageError(`${path}: unknown key '${key}' (known: ${FILE_KEYS.join(", ")})`);
    const [prop, field] = entry;
    const parsed = field.kind.fromFile(value);
    if (parsed === undefined) throw new UsageError(`${path}: ${key} must be ${field.kind.expected}`);
    config[prop] = parsed;
  }
  if (typeof config.stateDir === "string") config.stateDir = resolve(dirname(path), config.stateDir);
  return config as FileConfig;
}

function readToml(path: string): { table: Record<string, unknown>; mode: number } {
  let text: string;
  let mode: number;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read config file ${path}: ${fsReason(error)}`);
  }
  try {
    return { table: Bun.TOML.parse(text) as Record<string, unknown>, mode };
  } catch (error) {
    throw new UsageError(`${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function readTokens(
  path: string,
  value: unknown,
  mode: number,
): { tokens: TokenEntry[]; warnings: string[] } {
  if (!Array.isArray(value) || !value.every(isTable)) {
    throw new UsageError(`${path}: tokens must be an array of tables, written [[tokens]]`);
  }
  const warnings: string[] = [];
  const inline = value.some((table) => table.secret !== undefined);
  const exposed = inline ? exposedFileWarning(path, mode, "the config file holds secrets") : undefined;
  if (exposed) warnings.push(exposed);
  const firstUse = new Map<string, number>();
  const tokens = value.map((table, i) => {
    const where = `${path}: tokens[${i}]`;
    const entry = readToken(where, table, dirname(path), warnings);
    const earlier = firstUse.get(entry.token);
    if (earlier !== undefined) {
      throw new UsageError(`${where}.token repeats tokens[${earlier}].token: each token must be unique`);
    }
    firstUse.set(entry.token, i);
    return entry;
  });
  return { tokens, warnings };
}

function readToken(
  where: string,
  table: Record<string, unknown>,
  baseDir: string,
  warnings: string[],
): TokenEntry {
  const unknown = Object.keys(table).find((key) => !TOKEN_KEYS.includes(key));
  if (unknown) throw new UsageError(`${where}: unknown key '${unknown}' (known: ${TOKEN_KEYS.join(", ")})`);
  const { token } = table;
  if (typeof token !== "string" || token === "") {
    throw new UsageError(`${where}.token must be a non-empty string`);
  }
  return {
    token,
    secret: readTokenSecret(where, table, baseDir, warnings),
    agents: readAgentPatterns(where, table.agents),
  };
}

/** Exactly one of `secret` and `secret_file`; a relative file is found next to the config file. */
function readTokenSecret(
  where: string,
  table: Record<string, unknown>,
  baseDir: string,
  warnings: string[],
): string {
  const { secret, secret_file: file } = table;
  if (secret !== undefined && file !== undefined) {
    throw new UsageError(`${where} has both secret and secret_file: keep one`);
  }
  if (secret !== undefined) {
    if (typeof secret !== "string") throw new UsageError(`${where}.secret must be a string`);
    const problem = secretProblem(secret);
    if (problem) throw new UsageError(`${where}.secret ${problem}`);
    return secret;
  }
  if (file === undefined) throw new UsageError(`${where} has no secret: set secret or secret_file`);
  if (typeof file !== "string" || file === "")
    throw new UsageError(`${where}.secret_file must be a file path`);
  const read = readSecretFile(resolve(baseDir, file), `${where}.secret_file`);
  if (read.warning) warnings.push(read.warning);
  return read.secret;
}

function readAgentPatterns(where: string, agents: unknown): string[] {
  if (agents === undefined) {
    throw new UsageError(
      `${where}.agents is missing: list the agent ids this token may register, e.g. ["pi-*"]`,
    );
  }
  if (!Array.isArray(agents) || !agents.every((a) => typeof a === "string")) {
    throw new UsageError(`${where}.agents must be an array of strings`);
  }
  if (agents.length === 0) throw new UsageError(`${where}.agents must list at least one agent id or pattern`);
  agents.forEach((pattern, i) => {
    if (!AGENT_PATTERN.test(pattern)) {
      throw new UsageError(
        `${where}.agents[${i}] '${pattern}' is not an agent id or pattern ` +
          "(lowercase a-z, 0-9, '-' and '*', at most 63 characters)",
      );
    }
  });
  return agents;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function mapKind<T, U>(kind: Kind<T>, map: (value: T) => U): Kind<U> {
  const apply = (value: T | undefined) => (value === undefined ? undefined : map(value));
  return {
    expected: kind.expected,
    fromText: (text) => apply(kind.fromText(text)),
    fromFile: (value) => apply(kind.fromFile(value)),
  };
}
