// Wires the gateway together: the agent listener, the ingress, the session registry and the
// liveness timer. The CLI (main.ts) builds the config; everything after that starts here.
import { log } from "../shared/log.ts";
import { startAgentListener } from "./agent-listener.ts";
import { Authenticator } from "./authenticate.ts";
import type { GatewayConfig } from "./config.ts";
import { startIngress } from "./ingress.ts";
import { matchHostToAgentId } from "./route.ts";
import { SessionRegistry } from "./sessions.ts";

/** How often sessions are checked for missed probes and silence. */
const LIVENESS_TICK_MS = 500;

/** A session silent for this many heartbeat intervals is considered dead (DESIGN §5). */
const MISSED_HEARTBEATS = 3;

export interface RunningGateway {
  httpPort: number;
  wsPort: number;
  registry: SessionRegistry;
  stop(): Promise<void>;
}

export async function startGateway(config: GatewayConfig): Promise<RunningGateway> {
  const registry = new SessionRegistry();
  const authenticator = new Authenticator(config.tokens);
  let accepting = true;

  const agents = startAgentListener({
    hostname: config.bind,
    port: config.wsPort,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    publicUrl: (agentId) => `http://${agentId}.${config.domain}:${ingress.port}/`,
    authenticator: () => authenticator,
    registry,
    accepting: () => accepting,
  });
  const ingress = startIngress({
    hostname: config.bind,
    port: config.httpPort,
    domain: config.domain,
    requestTimeoutMs: config.requestTimeoutMs,
    maxStreamsPerAgent: config.maxStreamsPerAgent,
    maxRequestBodyBytes: config.maxRequestBodyBytes,
    registry,
    route: (host) => matchHostToAgentId(host, config.domain),
    accepting: () => accepting,
  });

  let lastPing = Date.now();
  const liveness = setInterval(() => {
    const now = Date.now();
    registry.expire(now, config.heartbeatIntervalMs * MISSED_HEARTBEATS);
    if (now - lastPing < config.heartbeatIntervalMs) return;
    lastPing = now;
    for (const session of registry.all()) session.ping();
  }, LIVENESS_TICK_MS);

  log.info(`ingress listening on http://${config.bind}:${ingress.port} for *.${config.domain}`);
  log.info(`agents connect to ws://${config.bind}:${agents.port}`);

  return {
    httpPort: ingress.port ?? config.httpPort,
    wsPort: agents.port ?? config.wsPort,
    registry,
    async stop() {
      accepting = false;
      clearInterval(liveness);
      for (const session of registry.all()) {
        session.sendGoAway("gateway shutting down");
        session.close(1001, "gateway shutting down");
      }
      await Promise.all([ingress.stop(), agents.stop()]);
    },
  };
}
