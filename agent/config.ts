// The agent's settings from flags and INDRANET_* variables (a flag wins), validated once at start-up.
import { readFileSync } from "node:fs";
import { type AdminAddress, adminAddressKind } from "../shared/admin.ts";
import { isValidAgentId } from "../shared/auth.ts";
import {
  type Env,
  type Flags,
  fsReason,
  integerKind,
  logFormatKind,
  logLevelKind,
  oneSecret,
  parseSetting,
  pick,
  type Setting,
  secretSource,
} from "../shared/config.ts";
import { UsageError } from "../shared/errors.ts";
import type { LogFormat } from "../shared/log.ts";

export interface AgentConfig {
  /** Normalised `ws[s]://host:port` URLs, each with an explicit port. */
  gateways: string[];
  /** Connections held at once, spread over `gateways` (or all to one address, e.g. a balancer). */
  connections: number;
  token: string;
  secret: string;
  agentId: string;
  /** The local HTTP service; an IPv6 host is kept without brackets, as Bun.connect wants it. */
  to: { host: string; port: number };
  /** The TCP services the gateway may open streams to, by name (--tcp NAME=HOST:PORT). */
  tcp: TcpService[];
  /** PEM certificates trusted for wss:// gateways. */
  ca?: string;
  logLevel: string;
  logFormat: LogFormat;
  /** On SIGTERM, streams in flight get this long to finish. */
  shutdownGraceMs: number;
  /** /healthz and /metrics, only when asked for. */
  admin: AdminAddress | "off";
  /** Problems worth telling the user that do not stop the agent. */
  warnings: string[];
}

export interface TcpService {
  name: string;
  host: string;
  port: number;
}

const DEFAULT_GATEWAY_PORT = 8080;
const DEFAULT_TO: AgentConfig["to"] = { host: "127.0.0.1", port: 80 };
const TO_EXPECTED = "PORT, HOST:PORT or http://HOST:PORT";
const servicePort = integerKind("a port from 1 to 65535", 1, 65535);
const graceSeconds = integerKind("a whole number of seconds from 0 to 3600", 0, 3600);
const DEFAULT_GRACE_SECONDS = 10;
// Each connection holds a socket, a heartbeat and up to 64 MiB of grown stream windows on both
// ends, and a gateway admits at most 8 sessions per agent id: 16 is two gateways at that limit.
const connectionCount = integerKind("a whole number from 1 to 16", 1, 16);

export function loadAgentConfig(flags: Flags, env: Env): AgentConfig {
  const warnings: string[] = [];
  const to = pick(flags, env, "to", "INDRANET_TO");
  const ca = pick(flags, env, "ca", "INDRANET_CA");
  const logLevel = pick(flags, env, "log-level", "INDRANET_LOG_LEVEL");
  const logFormat = pick(flags, env, "log-format", "INDRANET_LOG_FORMAT");
  const grace = pick(flags, env, "shutdown-grace", "INDRANET_SHUTDOWN_GRACE");
  const admin = pick(flags, env, "admin", "INDRANET_ADMIN");
  const connections = pick(flags, env, "connections", "INDRANET_CONNECTIONS");
  const tcp = pick(flags, env, "tcp", "INDRANET_TCP");
  return {
    gateways: parseGateways(required(flags, env, "gateway", "INDRANET_GATEWAY")),
    connections: connections ? parseSetting(connectionCount, connections) : 1,
    token: required(flags, env, "token", "INDRANET_TOKEN").text,
    secret: loadSecret(flags, env, warnings),
    agentId: parseAgentId(required(flags, env, "id", "INDRANET_AGENT_ID")),
    to: to ? parseTarget(to) : DEFAULT_TO,
    tcp: tcp ? parseTcpServices(tcp) : [],
    ...(ca ? { ca: readCa(ca) } : {}),
    logLevel: logLevel ? parseSetting(logLevelKind, logLevel) : "info",
    logFormat: logFormat ? parseSetting(logFormatKind, logFormat) : "text",
    shutdownGraceMs: (grace ? parseSetting(graceSeconds, grace) : DEFAULT_GRACE_SECONDS) * 1000,
    admin: admin ? parseSetting(adminAddressKind, admin) : "off",
    warnings,
  };
}

function required(flags: Flags, env: Env, flag: string, envName: string): Setting {
  const setting = pick(flags, env, flag, envName);
  if (!setting) throw new UsageError(`--${flag} is required (or set ${envName})`);
  if (setting.text === "") throw new UsageError(`${setting.name} must not be empty`);
  return setting;
}

/**
 * Comma-separated `ws://` or `wss://` URLs (a repeated `--gateway` arrives joined by commas).
 * Connection i starts at the i-th and fails over to the next.
 */
export function parseGateways(setting: Setting): string[] {
  const urls = setting.text.split(",").map((part) => parseGateway(setting.name, part.trim()));
  const twice = urls.find((url, i) => urls.indexOf(url) !== i);
  if (twice) throw new UsageError(`${setting.name}: ${twice} is given twice`);
  return urls;
}

function parseGateway(name: string, text: string): string {
  const invalid = (why: string) => new UsageError(`${name}: ${why}, got '${text}'`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid("expected ws://HOST:PORT or wss://HOST:PORT");
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") throw invalid("the scheme must be ws:// or wss://");
  if (url.hostname === "") throw invalid("the host is missing");
  if (
    url.username ||
    url.password ||
    url.search ||
    url.hash ||
    (url.pathname !== "/" && url.pathname !== "")
  ) {
    throw invalid("expected only a scheme, a host and a port");
  }
  return `${url.protocol}//${url.hostname}:${gatewayPort(url, text)}`;
}

// URL drops a port equal to the scheme's default (80 for ws:, 443 for wss:), so whether one was
// written is read from the text itself; only a missing port means the gateway's 8080.
function gatewayPort(url: URL, text: string): number {
  if (url.port !== "") return Number(url.port);
  const authority = text.slice(text.indexOf("//") + 2).split(/[/?#]/, 1)[0] ?? "";
  const written = /:\d+$/.test(authority.replace(/^\[[^\]]*\]/, ""));
  if (!written) return DEFAULT_GATEWAY_PORT;
  return url.protocol === "wss:" ? 443 : 80;
}

/**
 * Exactly one source, so that a forgotten variable never silently wins over or loses to a file.
 * A secret on the command line works but is visible to every local user in `ps`.
 */
function loadSecret(flags: Flags, env: Env, warnings: string[]): string {
  // Each source on its own, under the same rules as any setting (an empty variable is unset).
  const found = oneSecret(
    [
      secretSource(pick(flags, {}, "secret", ""), false),
      secretSource(pick({}, env, "", "INDRANET_SECRET"), false),
      secretSource(pick(flags, {}, "secret-file", ""), true),
      secretSource(pick({}, env, "", "INDRANET_SECRET_FILE"), true),
    ],
    "secret",
    warnings,
  );
  if (!found)
    throw new UsageError("a secret is required: --secret-file FILE, INDRANET_SECRET_FILE or INDRANET_SECRET");
  if (found.source.name === "--secret") {
    warnings.push("--secret is visible to other local users (ps); prefer INDRANET_SECRET or --secret-file");
  }
  return found.secret;
}

function parseAgentId(setting: Setting): string {
  if (isValidAgentId(setting.text)) return setting.text;
  throw new UsageError(
    `${setting.name}: expected a DNS label (lowercase a-z, 0-9 and '-', 1 to 63 characters, ` +
      `not starting or ending with '-'), got '${setting.text}'`,
  );
}

/** `PORT`, `HOST:PORT`, `[IPv6]:PORT` or `http://HOST[:PORT]` (port 80 by default there). */
export function parseTarget(setting: Setting): AgentConfig["to"] {
  const { text, name } = setting;
  if (/^https:\/\//i.test(text)) {
    throw new UsageError(`${name}: https:// local services are not supported yet; use http://HOST:PORT`);
  }
  const target = /^http:\/\//i.test(text) ? fromHttpUrl(text) : fromHostPort(text);
  if (!target) throw new UsageError(`${name}: expected ${TO_EXPECTED}, got '${text}'`);
  return target;
}

/**
 * Comma-separated `NAME=HOST:PORT` (a repeated `--tcp` arrives joined by commas). A name is a DNS
 * label, as an agent id is; the address is written as for --to, without http://.
 */
export function parseTcpServices(setting: Setting): TcpService[] {
  const services = setting.text.split(",").map((part) => {
    const text = part.trim();
    const [name = "", address = ""] = text.split(/=(.*)/s, 2);
    const target = /^\d+$/.test(address) ? undefined : fromHostPort(address);
    if (!isValidAgentId(name) || !target) {
      throw new UsageError(
        `${setting.name}: expected NAME=HOST:PORT with NAME a DNS label such as ssh, got '${text}'`,
      );
    }
    return { name, ...target };
  });
  const twice = services.find((service, i) => services.findIndex((s) => s.name === service.name) !== i);
  if (twice) throw new UsageError(`${setting.name}: the name ${twice.name} is given twice`);
  return services;
}

function fromHostPort(text: string): AgentConfig["to"] | undefined {
  if (/^\d+$/.test(text)) return withPort(DEFAULT_TO.host, text);
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d+)$/.exec(text);
  if (!match) return undefined;
  return withPort((match[1] ?? match[2]) as string, match[3] as string);
}

function fromHttpUrl(text: string): AgentConfig["to"] | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  // The agent forwards each request's own path; a base path or credentials would be dropped.
  if (url.username || url.password || url.search || url.hash || url.pathname !== "/") return undefined;
  return withPort(url.hostname.replace(/^\[(.*)\]$/, "$1"), url.port || "80");
}

function withPort(host: string, port: string): AgentConfig["to"] | undefined {
  const parsed = servicePort.fromText(port);
  return parsed === undefined ? undefined : { host, port: parsed };
}

function readCa(setting: Setting): string {
  let pem: string;
  try {
    pem = readFileSync(setting.text, "utf8");
  } catch (error) {
    throw new UsageError(`${setting.name}: cannot read ${setting.text}: ${fsReason(error)}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new UsageError(`${setting.name}: ${setting.text} holds no PEM certificate (BEGIN CERTIFICATE)`);
  }
  return pem;
}
