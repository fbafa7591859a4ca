// Wires the gateway together: the agent listener, the ingress, the session registry and the
// liveness timer. The CLI (main.ts) builds the config; everything after that starts here.
import { startAdmin } from "../shared/admin.ts";
import { agentIdAllowed } from "../shared/auth.ts";
import { ConnectError_Code, type ConnectRequest } from "../shared/gen/tunnel_pb.ts";
import { log } from "../shared/log.ts";
import { CidrList } from "./access/cidr.ts";
import { AccessControl } from "./access/policy.ts";
import { logExchange, logTcp } from "./access-log.ts";
import { agentList, clusterView } from "./admin.ts";
import { AgentListener } from "./agent-listener.ts";
import { Authenticator, type AuthResult } from "./authenticate.ts";
import { ClusterDirectory } from "./cluster/directory.ts";
import type { GatewayConfig, TokenEntry } from "./config.ts";
import { HeldRequests } from "./hold.ts";
import { HostTable } from "./hosts.ts";
import { startIngress } from "./ingress.ts";
import { AdminAuth } from "./inspect/admin-auth.ts";
import { answerInspector, type InspectorApi } from "./inspect/api.ts";
import { Inspector } from "./inspect/inspector.ts";
import { replayThroughIngress } from "./inspect/replay.ts";
import { inspectorPage } from "./inspector/page.ts";
import { Locator } from "./locate.ts";
import { GatewayMetrics } from "./metrics.ts";
import { matchHostToAgentId } from "./route.ts";
import { SessionRegistry } from "./sessions.ts";
import { TcpMetrics } from "./tcp/metrics.ts";
import { TcpPorts } from "./tcp/ports.ts";
import { TlsCertificates } from "./tls-certificates.ts";

/** How often sessions are checked for missed probes and silence. */
const LIVENESS_TICK_MS = 500;

/** A session silent for this many heartbeat intervals is considered dead (DESIGN §5). */
const MISSED_HEARTBEATS = 3;

/** How often a draining gateway checks whether its last request has finished. */
const DRAIN_POLL_MS = 50;

/** How long a draining ingress keeps listening while its clients leave their connections. */
const HANDOVER_MS = 1_000;

/** After the grace period, how long closing the listeners may take before they are cut. */
const CLOSE_TIMEOUT_MS = 1_000;

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

type Phase =
  | { kind: "running" }
  /** No new requests or agents; `stopped` settles once everything is closed. */
  | { kind: "draining"; stopped: Promise<void> };

/** One gateway from start to stop: its listeners, the session registry and the liveness timer. */
export class Gateway {
  readonly registry = new SessionRegistry();
  readonly httpPort: number;
  readonly wsPort: number;
  /** Undefined when the admin listener is off (or its default address was taken). */
  readonly adminPort: number | undefined;
  readonly #config: GatewayConfig;
  readonly #metrics: GatewayMetrics;
  readonly #authenticator: ObservedAuthenticator;
  readonly #agents: AgentListener;
  readonly #ingress: ReturnType<typeof startIngress>;
  readonly #admin: ReturnType<typeof startAdmin>;
  readonly #liveness: Timer;
  readonly #holds: HeldRequests;
  /** Set unless --inspect 0. */
  readonly #inspector: Inspector | undefined;
  readonly #adminAuth: AdminAuth;
  /** Set when the gateway is one of a cluster. */
  readonly #directory: ClusterDirectory | undefined;
  /** The [[tcp]] ports; rebound on reload. */
  readonly #tcp: TcpPorts;
  /** The table in force, so that a reload can tell which sessions lost their token. */
  #tokens: TokenEntry[];
  /** Custom host names; replaced on reload. */
  #hosts: HostTable;
  /** Per-agent access rules; replaced on reload. */
  readonly #access: AccessControl;
  /** What both ports serve over TLS; undefined for plain HTTP. */
  readonly #certificates: TlsCertificates | undefined;
  #lastPing: number;
  #phase: Phase = { kind: "running" };

  constructor(config: GatewayConfig) {
    this.#config = config;
    this.#metrics = new GatewayMetrics(this.registry, () => !this.#accepting);
    this.#authenticator = new ObservedAuthenticator(config.tokens, (code) =>
      this.#metrics.authFailures.inc(1, ConnectError_Code[code]?.toLowerCase() ?? String(code)),
    );
    this.#tokens = config.tokens;
    this.#hosts = new HostTable(config.hosts);
    this.#access = new AccessControl(config.access, new CidrList(config.trustedProxies), (code) =>
      this.#metrics.accessRefused.inc(1, code),
    );
    this.#holds = new HeldRequests(config.holdMs, (id) =>
      this.#tokens.some((entry) => agentIdAllowed(entry.agents, id)),
    );
    this.registry.observe(this.#holds);
    if (config.cluster) {
      this.#directory = new ClusterDirectory(config.cluster.redis, config.holdMs, () =>
        this.registry.agentIds(),
      );
      this.registry.observe(this.#directory);
    }
    this.#metrics.watchHolds(this.#holds, this.#directory);
    this.#inspector =
      config.inspect > 0 ? new Inspector(config.inspect, config.inspectBody, config.inspectOff) : undefined;
    this.#adminAuth = new AdminAuth(config.adminToken);
    this.#certificates = TlsCertificates.create({
      fallback: config.tls,
      acme: config.acme,
      stateDir: config.stateDir,
      domain: config.domain,
      hosts: config.hosts,
      bind: config.bind,
      acmeHttpPort: config.acmeHttpPort,
      httpsPort: () => this.#ingress.port,
      agentConnected: (id) => this.registry.sessionsFor(id).length > 0,
      metrics: this.#metrics.registry,
    });
    const httpScheme = this.#certificates ? "https" : "http";
    this.#agents = this.#listenForAgents(httpScheme);
    const locator = new Locator(this.registry, this.#holds, this.#directory);
    this.#ingress = this.#listenForRequests(locator);
    this.#tcp = this.#listenForTcp(locator);
    if (this.#certificates) {
      this.registry.observe({ arrived: (id) => this.#certificates?.agentArrived(id), left: () => {} });
      this.#certificates.start({
        ingress: (tls) => this.#ingress.rotate(tls),
        agents: (tls) => this.#agents.rotate(tls),
      });
    }
    this.#lastPing = Date.now();
    this.#liveness = setInterval(() => this.#checkLiveness(), LIVENESS_TICK_MS);

    log.info(
      `ingress listening on ${httpScheme}://${config.bind}:${this.#ingress.port} for *.${config.domain}`,
    );
    log.info(`agents connect to ${this.#certificates ? "wss" : "ws"}://${config.bind}:${this.#agents.port}`);
    this.#directory?.start(
      config.cluster?.advertise ?? `${httpScheme}://${hostForUrl(config.bind)}:${this.#ingress.port}`,
    );

    this.#admin =
      config.admin === "off"
        ? null
        : startAdmin({
            address: config.admin,
            healthy: () => this.#accepting,
            metrics: this.#metrics.registry,
            json: {
              "/api/agents": () => agentList(this.registry, this.#directory?.gatewayId),
              "/api/cluster": () => clusterView(this.#directory),
            },
            handle: (req, path) => answerInspector(this.#inspectorApi(httpScheme), req, path),
            routes: { "/": inspectorPage },
            reusePort: true,
          });
    this.httpPort = this.#ingress.port ?? config.httpPort;
    this.wsPort = this.#agents.port ?? config.wsPort;
    this.adminPort = this.#admin?.port;
  }

  get #accepting(): boolean {
    return this.#phase.kind === "running";
  }

  /**
   * Stops taking requests and agents, tells the agents (GoAway), waits for the requests in flight
   * up to the grace period, then closes everything. Resolves when the gateway is down.
   */
  stop(): Promise<void> {
    if (this.#phase.kind === "running") this.#phase = { kind: "draining", stopped: this.#drain() };
    return this.#phase.stopped;
  }

  /**
   * Re-reads the config (SIGHUP): the tokens, the host names and the access rules apply at once,
   * other settings at the next start. A config that does not load is reported and the running one stays in force.
   */
  reload(load: () => GatewayConfig): void {
    let next: GatewayConfig;
    try {
      next = load();
    } catch (error) {
      this.#metrics.reloads.inc(1, "error");
      log.error(`reload failed, the running config stays: ${error instanceof Error ? error.message : error}`);
      return;
    }
    const before = new Map(this.#tokens.map((entry) => [entry.token, entry]));
    this.#tokens = next.tokens;
    this.#authenticator.setTokens(this.#tokens);
    this.#hosts = new HostTable(next.hosts);
    this.#access.replace(next.access);
    this.#tcp.apply(next.tcp);
    this.#certificates?.reload(next.tls, next.hosts);
    if (!this.#certificates && next.tls) log.warn("reload: TLS was turned on; restart to serve it");
    const after = new Map(this.#tokens.map((entry) => [entry.token, entry]));
    for (const session of this.registry.all()) {
      const why = revocation(
        before.get(session.info.token),
        after.get(session.info.token),
        session.info.agentId,
      );
      if (!why) continue;
      log.info(`agent ${session.info.agentId}: ${why}, closing session ${session.id}`);
      session.close(4004, why);
    }
    for (const key of changedSettings(this.#config, next)) {
      log.warn(`reload: ${key} changed; restart to apply it`);
    }
    for (const warning of next.warnings) log.warn(warning);
    this.#metrics.reloads.inc(1, "ok");
    log.info(
      `config reloaded: ${this.#tokens.length} token(s), ${this.#hosts.size} host name(s), ${this.#access.size} access table(s)`,
    );
  }

  /** Connections on [[tcp]] ports wait for their agent as requests do, here only (never forwarded). */
  #listenForTcp(locator: Locator): TcpPorts {
    const config = this.#config;
    const ports = new TcpPorts({
      bind: config.bind,
      locator,
      maxStreamsPerAgent: config.maxStreamsPerAgent,
      accepting: () => this.#accepting,
      admits: (agentId, clientIp) => this.#access.admitsConnection(agentId, clientIp),
      observe: (exchange) => {
        metrics.exchange(exchange);
        logTcp(exchange);
      },
    });
    const metrics = new TcpMetrics(this.#metrics.registry, ports);
    ports.apply(config.tcp);
    return ports;
  }

  #listenForAgents(httpScheme: string): AgentListener {
    const config = this.#config;
    return new AgentListener({
      tls: this.#certificates?.agentTls(),
      rotates: this.#certificates !== undefined,
      hostname: config.bind,
      port: config.wsPort,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      publicUrl: (agentId) => publicUrl(httpScheme, `${agentId}.${config.domain}`, this.#ingress.port),
      authenticator: () => this.#authenticator,
      registry: this.registry,
      accepting: () => this.#accepting,
    });
  }

  #listenForRequests(locator: Locator): ReturnType<typeof startIngress> {
    const config = this.#config;
    const directory = this.#directory;
    return startIngress({
      tls: this.#certificates?.tls(),
      rotates: this.#certificates !== undefined,
      trustedProxies: new CidrList(config.trustedProxies),
      access: this.#access,
      hostname: config.bind,
      port: config.httpPort,
      domain: config.domain,
      requestTimeoutMs: config.requestTimeoutMs,
      idleTimeoutMs: config.idleTimeoutMs,
      maxStreamsPerAgent: config.maxStreamsPerAgent,
      maxRequestBodyBytes: config.maxRequestBodyBytes,
      registry: this.registry,
      locator,
      inspector: this.#inspector,
      hop:
        directory && config.cluster
          ? { secret: config.cluster.secret, gatewayId: directory.gatewayId }
          : undefined,
      peerUnreachable: (peerId) => directory?.suspect(peerId),
      peerStale: (agentId) => directory?.forget(agentId),
      // `<id>.<domain>` first, as fast as ever; the custom names only when that fails.
      route: (host) => matchHostToAgentId(host, config.domain) ?? this.#hosts.lookup(host),
      accepting: () => this.#accepting,
      observe: (exchange) => {
        this.#metrics.exchange(exchange);
        logExchange(exchange);
      },
    });
  }

  /** What the admin listener's inspector routes need; replays go to this gateway's own ingress. */
  #inspectorApi(httpScheme: string): InspectorApi {
    const inspector = this.#inspector;
    const origin = `${httpScheme}://${hostForUrl(loopbackFor(this.#config.bind))}:${this.#ingress.port}`;
    return {
      inspector,
      auth: this.#adminAuth,
      replay: (exchange, changes) =>
        replayThroughIngress(origin, inspector?.replayHeader(exchange.id) ?? "", exchange, changes),
    };
  }

  #checkLiveness(): void {
    const now = Date.now();
    const { heartbeatIntervalMs } = this.#config;
    this.registry.expire(now, heartbeatIntervalMs * MISSED_HEARTBEATS);
    this.#holds.prune(now);
    if (now - this.#lastPing < heartbeatIntervalMs) return;
    this.#lastPing = now;
    for (const session of this.registry.all()) session.ping();
  }

  // Requests still running: those whose stream is open, and those the ingress has not finished
  // answering (a response body still being written counts).
  #inFlight(): number {
    let streams = 0;
    for (const session of this.registry.all()) streams += session.httpStreams;
    return Math.max(streams, this.#ingress.pendingRequests);
  }

  // A restart starts the new process on the same ports first. The agent port closes at once, so
  // agents dialling again reach the successor. The ingress keeps its listener for a moment, and
  // answers every request with `Connection: close`, so clients leave their kept-alive connections
  // after an answer instead of sending into a socket being closed. Then it closes, the agents are
  // told to move (GoAway), and the requests already here finish on the sessions that remain.
  async #drain(): Promise<void> {
    const graceMs = this.#config.shutdownGraceMs;
    const started = Date.now();
    log.info(`draining: ${this.#inFlight()} request(s) in flight, waiting up to ${graceMs / 1000} s`);
    const agentsClosed = this.#agents.stop();
    this.#tcp.stop();
    const certificatesStopped = this.#certificates?.stop();
    await Bun.sleep(Math.min(HANDOVER_MS, graceMs));
    const listenersClosed = Promise.all([
      agentsClosed,
      this.#ingress.stop(),
      this.#admin?.stop(),
      certificatesStopped,
    ]);
    for (const session of this.registry.all()) session.sendGoAway("gateway shutting down");
    const deadline = started + graceMs;
    while (this.#inFlight() > 0 && Date.now() < deadline) await Bun.sleep(DRAIN_POLL_MS);
    const left = this.#inFlight();
    if (left > 0) log.warn(`grace period over: cutting ${left} request(s) still in flight`);
    clearInterval(this.#liveness);
    await this.#directory?.stop();
    for (const session of this.registry.all()) session.close(1001, "gateway shutting down");
    if ((await Promise.race([listenersClosed, Bun.sleep(CLOSE_TIMEOUT_MS).then(() => "late")])) === "late") {
      await Promise.all([this.#ingress.stop(true), this.#agents.stop(true), this.#admin?.stop(true)]);
    }
    log.info("stopped");
  }
}

export async function startGateway(config: GatewayConfig): Promise<Gateway> {
  return new Gateway(config);
}

/** The URL an agent's service is reached at; the scheme's own port goes unsaid. */
function publicUrl(scheme: string, host: string, port: number): string {
  const usual = (scheme === "https" && port === 443) || (scheme === "http" && port === 80);
  return `${scheme}://${host}${usual ? "" : `:${port}`}/`;
}

/** An address this process can reach its own listener at: a wildcard means loopback. */
function loopbackFor(bind: string): string {
  if (bind === "0.0.0.0") return "127.0.0.1";
  if (bind === "::") return "::1";
  return bind;
}

/** A listen address as the host part of a URL (the config refuses a wildcard in a cluster). */
function hostForUrl(bind: string): string {
  return bind.includes(":") ? `[${bind}]` : bind;
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
  const ignored = new Set([
    "tokens",
    "tls",
    "hosts",
    "access",
    "tcp",
    "warnings",
    "dev",
    "devCredentials",
    "configPath",
  ]);
  return Object.keys(next).filter(
    (key) =>
      !ignored.has(key) &&
      JSON.stringify(running[key as keyof GatewayConfig]) !==
        JSON.stringify(next[key as keyof GatewayConfig]),
  );
}
