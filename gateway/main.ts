// gateway-tunnel: the command line only. Everything it runs starts in server.ts.
import { type ArgsDef, defineCommand } from "citty";
import { adminAddressKind, DEFAULT_ADMIN } from "../shared/admin.ts";
import {
  exitOnStartupError,
  flagValues,
  loggingArgs,
  rejectUnknownFlags,
  runBinary,
  startupDone,
} from "../shared/cli.ts";
import { type Flags, parseSetting, pick, readSecretFile } from "../shared/config.ts";
import { UsageError } from "../shared/errors.ts";
import { installFaultHandlers } from "../shared/fault.ts";
import { configureLogging, log } from "../shared/log.ts";
import type { AdminTarget } from "./admin-client.ts";
import { type GatewayConfig, loadGatewayConfig } from "./config.ts";

const serveArgs = {
  config: { type: "string", valueHint: "file", description: "TOML file with [[tokens]] (INDRANET_CONFIG)" },
  domain: {
    type: "string",
    valueHint: "name",
    description: "agents answer at <id>.<name> (INDRANET_DOMAIN; default localhost)",
  },
  bind: { type: "string", valueHint: "addr", description: "listen address (INDRANET_BIND; default 0.0.0.0)" },
  "http-port": {
    type: "string",
    valueHint: "port",
    description: "HTTP ingress (INDRANET_HTTP_PORT; default 8082, 443 with ACME)",
  },
  "ws-port": {
    type: "string",
    valueHint: "port",
    description: "agent WebSockets (INDRANET_WS_PORT; default 8080)",
  },
  "request-timeout": {
    type: "string",
    valueHint: "seconds",
    description:
      "wait this long for response headers once the request is sent, then 504 (INDRANET_REQUEST_TIMEOUT; default 10)",
  },
  "idle-timeout": {
    type: "string",
    valueHint: "seconds",
    description:
      "cut a stream with no body bytes for this long; 0 never (INDRANET_IDLE_TIMEOUT; default 300)",
  },
  heartbeat: {
    type: "string",
    valueHint: "seconds",
    description: "ping interval (INDRANET_HEARTBEAT; default 15)",
  },
  "max-streams": {
    type: "string",
    valueHint: "n",
    description: "concurrent requests per agent, then 503 (INDRANET_MAX_STREAMS; default 1024)",
  },
  "max-body": {
    type: "string",
    valueHint: "bytes",
    description: "largest request body, then 413; 0 for none (INDRANET_MAX_BODY; default 0)",
  },
  "tls-cert": {
    type: "string",
    valueHint: "file",
    description: "PEM certificate (chain): both ports serve TLS, https and wss (INDRANET_TLS_CERT)",
  },
  "tls-key": {
    type: "string",
    valueHint: "file",
    description: "PEM private key for --tls-cert (INDRANET_TLS_KEY)",
  },
  "acme-email": {
    type: "string",
    valueHint: "addr",
    description:
      "get certificates from Let's Encrypt (or [acme] directory) for every host served; the CA's account contact (INDRANET_ACME_EMAIL)",
  },
  "acme-http-port": {
    type: "string",
    valueHint: "port",
    description:
      "with ACME: plain HTTP for the CA's challenges, redirecting the rest to https (INDRANET_ACME_HTTP_PORT; default 80)",
  },
  "state-dir": {
    type: "string",
    valueHint: "dir",
    description:
      "where the ACME account and certificates are kept (INDRANET_STATE_DIR; default /var/lib/indranet)",
  },
  "trust-proxy": {
    type: "string",
    valueHint: "addrs",
    description:
      "comma-separated front-proxy IPs or CIDR ranges whose X-Forwarded-* headers are kept (INDRANET_TRUST_PROXY)",
  },
  "shutdown-grace": {
    type: "string",
    valueHint: "seconds",
    description: "on SIGTERM, let requests in flight finish this long (INDRANET_SHUTDOWN_GRACE; default 10)",
  },
  admin: {
    type: "string",
    valueHint: "addr",
    description:
      "/healthz, /metrics, /api/agents on HOST:PORT, or off (INDRANET_ADMIN; default 127.0.0.1:9180)",
  },
  hold: {
    type: "string",
    valueHint: "seconds",
    description:
      "a request for an agent connected this recently waits for it to reconnect; 0 never (INDRANET_HOLD; default 5)",
  },
  "cluster-redis": {
    type: "string",
    valueHint: "url",
    description:
      "join the gateways sharing this Redis: redis://HOST:PORT (INDRANET_CLUSTER_REDIS; [cluster] redis)",
  },
  "cluster-advertise": {
    type: "string",
    valueHint: "url",
    description:
      "the ingress URL other gateways forward to, e.g. http://10.0.0.5:8082 (INDRANET_CLUSTER_ADVERTISE; default from --bind)",
  },
  "cluster-secret-file": {
    type: "string",
    valueHint: "file",
    description:
      "file holding the secret all gateways share (INDRANET_CLUSTER_SECRET_FILE; [cluster] secret_file)",
  },
  inspect: {
    type: "string",
    valueHint: "n",
    description: "the inspector keeps the last N exchanges; 0 off (INDRANET_INSPECT; default 200)",
  },
  "inspect-body": {
    type: "string",
    valueHint: "bytes",
    description: "and this much of each body; 0 heads only (INDRANET_INSPECT_BODY; default 65536)",
  },
  "admin-token-file": {
    type: "string",
    valueHint: "file",
    description: "token the admin API and page ask for; required off loopback (INDRANET_ADMIN_TOKEN[_FILE])",
  },
  "admin-token": {
    type: "string",
    valueHint: "token",
    description: "the same, inline; visible in ps, prefer INDRANET_ADMIN_TOKEN or --admin-token-file",
  },
  dev: {
    type: "boolean",
    description: "without tokens, generate a throwaway one and print the agent command",
  },
  ...loggingArgs,
} satisfies ArgsDef;

const serve = defineCommand({
  meta: { name: "serve", description: "Accept agents and route HTTP requests to them" },
  args: serveArgs,
  async run({ args, rawArgs }) {
    try {
      rejectUnknownFlags(rawArgs, serveArgs);
      const flags = flagValues(args, serveArgs);
      const config = loadGatewayConfig(flags, process.env);
      configureLogging(config.logLevel, config.logFormat);
      for (const warning of config.warnings) log.warn(warning);
      // Loaded here so that --help, --version and usage errors never depend on the server's code.
      const { startGateway } = await import("./server.ts");
      // Signal handlers go in before anything listens: whoever reads the "listening" lines may
      // signal at once, and Node's default action for SIGTERM and SIGHUP is to die.
      let gateway: Awaited<ReturnType<typeof startGateway>> | undefined;
      stopOnSignals(async () => gateway?.stop());
      process.on("SIGHUP", () => {
        if (!config.configPath) return log.warn("SIGHUP: there is no --config file to re-read");
        log.info(`SIGHUP: re-reading ${config.configPath}`);
        gateway?.reload(() => loadGatewayConfig(flags, process.env));
      });
      gateway = await startGateway(config);
      installFaultHandlers();
      startupDone();
      if (config.devCredentials) logDevCommand(config, config.devCredentials, gateway);
    } catch (error) {
      exitOnStartupError(error);
    }
  },
});

function logDevCommand(
  config: GatewayConfig,
  credentials: { token: string; secret: string },
  ports: { httpPort: number; wsPort: number },
): void {
  const host = config.bind === "0.0.0.0" || config.bind === "::" ? "127.0.0.1" : config.bind;
  const wsHost = host.includes(":") ? `[${host}]` : host;
  log.warn("dev only: generated a throwaway token and secret; use --config with [[tokens]] in production");
  log.info(
    `run an agent: INDRANET_SECRET=${credentials.secret} agent-tunnel connect --gateway ws://${wsHost}:${ports.wsPort} ` +
      `--token ${credentials.token} --id dev --to 127.0.0.1:3000`,
  );
  log.info(`then open http://dev.${config.domain}:${ports.httpPort}/`);
}

/** The first signal drains and exits 0; a second one exits at once for an impatient operator. */
function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info(`${signal}: stopping`);
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error(`stopping failed: ${error instanceof Error ? error.message : String(error)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

const agentsArgs = {
  admin: {
    type: "string",
    valueHint: "addr",
    description: "the gateway's admin listener (INDRANET_ADMIN; default 127.0.0.1:9180)",
  },
} satisfies ArgsDef;

/** The admin listener a command asks, and the token it shows (INDRANET_ADMIN_TOKEN[_FILE]). */
function adminTarget(flags: Flags): AdminTarget {
  const setting = pick(flags, process.env, "admin", "INDRANET_ADMIN");
  const address = setting ? parseSetting(adminAddressKind, setting) : DEFAULT_ADMIN;
  if (address === "off") throw new UsageError(`${setting?.name}: the admin listener is needed here`);
  const file = pick({}, process.env, "", "INDRANET_ADMIN_TOKEN_FILE");
  const token = file
    ? readSecretFile(file.text, file.name).secret
    : process.env.INDRANET_ADMIN_TOKEN || undefined;
  return { hostname: address.hostname, port: address.port, token };
}

const agents = defineCommand({
  meta: { name: "agents", description: "List the agents connected to a running gateway" },
  args: agentsArgs,
  async run({ args, rawArgs }) {
    try {
      rejectUnknownFlags(rawArgs, agentsArgs);
      const target = adminTarget(flagValues(args, agentsArgs));
      const { fetchAgents, formatAgents } = await import("./admin.ts");
      process.stdout.write(formatAgents(await fetchAgents(target)));
    } catch (error) {
      exitOnStartupError(error);
    }
  },
});

const requestsArgs = {
  ...agentsArgs,
  agent: { type: "string", valueHint: "id", description: "only this agent's requests" },
  follow: { type: "boolean", description: "then print each request as it finishes, until interrupted" },
} satisfies ArgsDef;

const requests = defineCommand({
  meta: { name: "requests", description: "Print the requests a running gateway's inspector holds" },
  args: requestsArgs,
  async run({ args, rawArgs }) {
    try {
      rejectUnknownFlags(rawArgs, requestsArgs);
      const flags = flagValues(args, requestsArgs);
      const target = adminTarget(flags);
      const { printRequests } = await import("./inspect/cli.ts");
      const agent = typeof flags.agent === "string" ? flags.agent : undefined;
      await printRequests(target, { follow: flags.follow === true, ...(agent ? { agent } : {}) }, (text) =>
        process.stdout.write(text),
      );
    } catch (error) {
      exitOnStartupError(error);
    }
  },
});

const hashPassword = defineCommand({
  meta: {
    name: "hash-password",
    description: 'Read a password from stdin and print its hash for basic_auth = ["user:<hash>"]',
  },
  async run({ rawArgs }) {
    try {
      rejectUnknownFlags(rawArgs, {});
      const { readPasswordHash } = await import("./access/hash-password.ts");
      process.stdout.write(`${await readPasswordHash(Bun.stdin.stream())}\n`);
    } catch (error) {
      exitOnStartupError(error);
    }
  },
});

await runBinary("gateway-tunnel", "indraNet Ingress-Tunnel gateway", {
  serve,
  agents,
  requests,
  "hash-password": hashPassword,
});
