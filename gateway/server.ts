// Wires the gateway together: the agent listener, the ingress, the session registry and the
// liveness timer. The CLI (main.ts) builds the config; everything after that starts here.
import { startAdmin } from "../shared/admin.ts";
import { agentIdAllowed } from "../shared/auth.ts";
import { ConnectError_Code, type ConnectRequest } from "../shared/gen/tunnel_pb.ts";
import { log } from "../shared/log.ts";
import { logExchange } from "./access-log.ts";
import { agentList } from "./admin.ts";
import { startAgentListener } from "./agent-listener.ts";
import { Authenticator, type AuthResult } from "./authenticate.ts";
import type { GatewayConfig, TokenEntry } from "./config.ts";
import { startIngress } from "./ingress.ts";
import { GatewayMetrics } from "./metrics.ts";
import { matchHostToAgentId } from "./route.ts";
import { SessionRegistry } from "./sessions.ts";

/** How often sessions are checked for missed probes and silence. */
const LIVENESS_TICK_MS = 500;

/** A session silent for this many heartbeat intervals is considered dead (DESIGN §5). */
const MISSED_HEARTBEATS = 3;

/** How often a draining gateway checks whether its last request has finished. */
const DRAIN_POLL_MS = 50;

/** After the grace period, how long closing the listeners may take before they are cut. */
const CLOSE_TIMEOUT_MS = 1_000;

export interface RunningGateway {
  httpPort: number;
  wsPort: number;
  /** Undefined when the admin listener is off (or its default address was taken). */
  adminPort: number | undefined;
  registry: SessionRegistry;
  /**
   * Stops taking requests and agents, tells the agents (GoAway), waits for the requests in flight
   * up to the grace period, then closes everything. Resolves when the gateway is down.
   */
  stop(): Promise<void>;
  /**
   * Re-reads the config (SIGHUP): the token table applies at once, other settings at the next
   * start. A config that does not load is reported and the running one stays in force.
   */
  reload(load: () => GatewayConfig): void;
}

/** Counts every refused credential by its reason for /metrics. */
class ObservedAuthenticator extends Authenticator {
  readonly #onRefused: (code: ConnectError_Code) => void;

  constructor(tokens: TokenEntry[], onRefused: (code: ConnectError_Code) => void) {
    super(tokens);
    this.#onRefused = onRefused;
  }

  override authenticate(req: ConnectRequest, nowMs: number): AuthResult {
    const result = super.authenticate(req, nowMs);
    if (!result.ok) this.#onRefused(result.code);
    return result;
  }
}

export async function startGateway(config: GatewayConfig): Promise<RunningGateway> {
  const registry = new SessionRegistry();
  let accepting = true;
  const metrics = new GatewayMetrics(registry, () => !accepting);
  const authenticator = new ObservedAuthenticator(config.tokens, (code) =>
    metrics.authFailures.inc(1, ConnectError_Code[code]?.toLowerCase() ?? String(code)),
  );
  let tokens = config.tokens;

  const httpScheme = config.tls ? "https" : "http";
  const agents = startAgentListener({
    tls: config.tls,
    hostname: config.bind,
    port: config.wsPort,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    publicUrl: (agentId) => `${httpScheme}://${agentId}.${config.domain}:${ingress.port}/`,
    authenticator: () => authenticator,
    registry,
    accepting: () => accepting,
  });
  const ingress = startIngress({
    tls: config.tls,
    trustedProxies: new Set(config.trustedProxies),
    hostname: config.bind,
    port: config.httpPort,
    domain: config.domain,
    requestTimeoutMs: config.requestTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    maxStreamsPerAgent: config.maxStreamsPerAgent,
    maxRequestBodyBytes: config.maxRequestBodyBytes,
    registry,
    route: (host) => matchHostToAgentId(host, config.domain),
    accepting: () => accepting,
    observe: (exchange) => {
      metrics.exchange(exchange);
      logExchange(exchange);
    },
  });

  let lastPing = Date.now();
  const liveness = setInterval(() => {
    const now = Date.now();
    registry.expire(now, config.heartbeatIntervalMs * MISSED_HEARTBEATS);
    if (now - lastPing < config.heartbeatIntervalMs) return;
    lastPing = now;
    for (const session of registry.all()) session.ping();
  }, LIVENESS_TICK_MS);

  log.info(`ingress listening on ${httpScheme}://${config.bind}:${ingress.port} for *.${config.domain}`);
  log.info(`agents connect to ${config.tls ? "wss" : "ws"}://${config.bind}:${agents.port}`);

  const admin =
    config.admin === "off"
      ? null
      : startAdmin({
          address: config.admin,
          healthy: () => accepting,
          metrics: metrics.registry,
          json: { "/api/agents": () => agentList(registry) },
        });

  // Requests still running: those whose stream is open, and those the ingress has not finished
  // answering (a response body still being written counts).
  const inFlight = () => {
    let streams = 0;
    for (const session of registry.all()) streams += session.httpStreams;
    return Math.max(streams, ingress.pendingRequests);
  };

  let stopped: Promise<void> | undefined;
  const stop = async () => {
    accepting = false;
    const graceMs = config.shutdownGraceMs;
    log.info(`draining: ${inFlight()} request(s) in flight, waiting up to ${graceMs / 1000} s`);
    for (const session of registry.all()) session.sendGoAway("gateway shutting down");
    const deadline = Date.now() + graceMs;
    while (inFlight() > 0 && Date.now() < deadline) await Bun.sleep(DRAIN_POLL_MS);
    const left = inFlight();
    if (left > 0) log.warn(`grace period over: cutting ${left} request(s) still in flight`);
    clearInterval(liveness);
    for (const session of registry.all()) session.close(1001, "gateway shutting down");
    const closed = Promise.all([ingress.stop(), agents.stop(), admin?.stop()]);
    if ((await Promise.race([closed, Bun.sleep(CLOSE_TIMEOUT_MS).then(() => "late")])) === "late") {
      await Promise.all([ingress.stop(true), agents.stop(true), admin?.stop(true)]);
    }
    log.info("stopped");
  };

  const reload = (load: () => GatewayConfig) => {
    let next: GatewayConfig;
    try {
      next = load();
    } catch (error) {
      metrics.reloads.inc(1, "error");
      log.error(`reload failed, the running config stays: ${error instanceof Error ? error.message : error}`);
      return;
    }
    const before = new Map(tokens.map((entry) => [entry.token, entry]));
    tokens = next.tokens;
    authenticator.setTokens(tokens);
    const after = new Map(tokens.map((entry) => [entry.token, entry]));
    for (const session of registry.all()) {
      const why = revocation(
        before.get(session.info.token),
        after.get(session.info.token),
        session.info.agentId,
      );
      if (!why) continue;
      log.info(`agent ${session.info.agentId}: ${why}, closing session ${session.id}`);
      session.close(4004, why);
    }
    for (const key of changedSettings(config, next)) log.warn(`reload: ${key} changed; restart to apply it`);
    for (const warning of next.warnings) log.warn(warning);
    metrics.reloads.inc(1, "ok");
    log.info(`config reloaded: ${tokens.length} token(s)`);
  };

  return {
    httpPort: ingress.port ?? config.httpPort,
    wsPort: agents.port ?? config.wsPort,
    adminPort: admin?.port,
    registry,
    stop() {
      stopped ??= stop();
      return stopped;
    },
    reload,
  };
}

/** Why a session may no longer stay after a reload, or undefined when it may. */
function revocation(old: TokenEntry | undefined, now: TokenEntry | undefined, agentId: string) {
  if (!now) return "token revoked";
  if (old && old.secret !== now.secret) return "token secret changed";
  if (!agentIdAllowed(now.agents, agentId)) return "agent id no longer allowed for its token";
  return undefined;
}

/** Settings other than the tokens, which only a restart applies. */
function changedSettings(running: GatewayConfig, next: GatewayConfig): string[] {
  const ignored = new Set(["tokens", "warnings", "dev", "devCredentials", "configPath"]);
  return Object.keys(next).filter(
    (key) =>
      !ignored.has(key) &&
      JSON.stringify(running[key as keyof GatewayConfig]) !==
        JSON.stringify(next[key as keyof GatewayConfig]),
  );
}
