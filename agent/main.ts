// agent-tunnel: the command line only. Everything it runs starts in client.ts, which also owns
// SIGINT/SIGTERM (finish in-flight streams, then return the exit code).
import { type ArgsDef, defineCommand } from "citty";
import {
  exitOnStartupError,
  flagValues,
  type ListFlags,
  loggingArgs,
  rejectUnknownFlags,
  runBinary,
  startupDone,
} from "../shared/cli.ts";
import { installFaultHandlers } from "../shared/fault.ts";
import { configureLogging, log } from "../shared/log.ts";
import { loadAgentConfig } from "./config.ts";

const connectArgs = {
  gateway: {
    type: "string",
    valueHint: "url",
    description:
      "ws://HOST:PORT or wss://…; repeat it or separate several with commas (INDRANET_GATEWAY; port 8080 if omitted)",
  },
  connections: {
    type: "string",
    valueHint: "n",
    description:
      "connections held at once, 1 to 16; connection i dials the i-th gateway (INDRANET_CONNECTIONS; default 1)",
  },
  token: { type: "string", valueHint: "token", description: "public credential id (INDRANET_TOKEN)" },
  secret: {
    type: "string",
    valueHint: "secret",
    description: "shared secret; visible in ps, prefer INDRANET_SECRET or --secret-file",
  },
  "secret-file": {
    type: "string",
    valueHint: "file",
    description: "file holding the secret (INDRANET_SECRET_FILE)",
  },
  id: {
    type: "string",
    valueHint: "id",
    description: "agent id, a DNS label such as pi-kitchen (INDRANET_AGENT_ID)",
  },
  to: {
    type: "string",
    valueHint: "addr",
    description: "local service: PORT, HOST:PORT or http://HOST:PORT (INDRANET_TO; default 127.0.0.1:80)",
  },
  tcp: {
    type: "string",
    valueHint: "name=addr",
    description:
      "expose a local TCP service under a name, e.g. ssh=127.0.0.1:22; repeat it for more (INDRANET_TCP, commas)",
  },
  ca: {
    type: "string",
    valueHint: "file",
    description: "PEM CA certificate to trust for wss:// (INDRANET_CA)",
  },
  "shutdown-grace": {
    type: "string",
    valueHint: "seconds",
    description: "on SIGTERM, let streams in flight finish this long (INDRANET_SHUTDOWN_GRACE; default 10)",
  },
  admin: {
    type: "string",
    valueHint: "addr",
    description: "serve /healthz and /metrics on HOST:PORT (INDRANET_ADMIN; default off)",
  },
  ...loggingArgs,
} satisfies ArgsDef;

const connectLists: ListFlags<typeof connectArgs> = new Set(["gateway", "tcp"]);

const connect = defineCommand({
  meta: { name: "connect", description: "Connect to a gateway and serve a local HTTP service through it" },
  args: connectArgs,
  async run({ args, rawArgs }) {
    let code: number;
    try {
      rejectUnknownFlags(rawArgs, connectArgs, connectLists);
      const config = loadAgentConfig(flagValues(args, connectArgs, rawArgs, connectLists), process.env);
      configureLogging(config.logLevel, config.logFormat);
      for (const warning of config.warnings) log.warn(warning);
      // Loaded here so that --help, --version and usage errors never depend on the client's code.
      const { runAgent } = await import("./client.ts");
      installFaultHandlers();
      startupDone();
      code = await runAgent(config);
    } catch (error) {
      exitOnStartupError(error);
    }
    process.exit(code);
  },
});

await runBinary("agent-tunnel", "indraNet Ingress-Tunnel agent", { connect });
