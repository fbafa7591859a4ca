// gateway-tunnel: the command line only. Everything it runs starts in server.ts.
import { type ArgsDef, defineCommand } from "citty";
import { exitOnStartupError, flagValues, loggingArgs, rejectUnknownFlags, runBinary } from "../shared/cli.ts";
import { configureLogging, log } from "../shared/log.ts";
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
    description: "HTTP ingress (INDRANET_HTTP_PORT; default 8082)",
  },
  "ws-port": {
    type: "string",
    valueHint: "port",
    description: "agent WebSockets (INDRANET_WS_PORT; default 8080)",
  },
  "request-timeout": {
    type: "string",
    valueHint: "seconds",
    description: "wait this long for response headers, then 504 (INDRANET_REQUEST_TIMEOUT; default 10)",
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
      const config = loadGatewayConfig(flagValues(args, serveArgs), process.env);
      configureLogging(config.logLevel, config.logFormat);
      for (const warning of config.warnings) log.warn(warning);
      // Loaded here so that --help, --version and usage errors never depend on the server's code.
      const { startGateway } = await import("./server.ts");
      const gateway = await startGateway(config);
      if (config.devCredentials) logDevCommand(config, config.devCredentials, gateway);
      stopOnSignals(() => gateway.stop());
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

await runBinary("gateway-tunnel", "indraNet Ingress-Tunnel gateway", { serve });
