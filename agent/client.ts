// The agent's life: hold `--connections` connections to the gateways, each dialling,
// authenticating, serving streams until it ends, then backing off and dialling again on its own.
// Only a refused credential or an untrusted certificate ends it for good.
import { startAdmin } from "../shared/admin.ts";
import { MIN_PROTOCOL_VERSION, newNonce, PROTOCOL_VERSION, signConnect } from "../shared/auth.ts";
import { ConnectError_Code as Code, type ConnectError, type Connected } from "../shared/gen/tunnel_pb.ts";
import { log } from "../shared/log.ts";
import { decodeEnvelope, encodeEnvelope, ProtocolError } from "../shared/protocol.ts";
import { VERSION } from "../shared/version.ts";
import { backoffDelay } from "./backoff.ts";
import type { AgentConfig } from "./config.ts";
import { LocalPool } from "./local-pool.ts";
import { AgentMetrics } from "./metrics.ts";
import { TunnelConnection } from "./tunnel.ts";

/** Each dial gets this long to open and authenticate: a black-holed SYN would otherwise wait minutes. */
export const CONNECT_TIMEOUT_MS = 10_000;

/** Refusals that retrying cannot fix: the agent reports them and exits non-zero. */
const PERMANENT = new Set<Code>([
  Code.UNKNOWN_TOKEN,
  Code.BAD_SIGNATURE,
  Code.ID_NOT_ALLOWED,
  Code.INVALID_ID,
  Code.INCOMPATIBLE_VERSION,
]);

type Outcome =
  | { kind: "refused"; error: ConnectError }
  | { kind: "lost"; served: boolean; why: string }
  | { kind: "untrusted"; why: string }
  | { kind: "goaway" }
  | { kind: "stopped" };

/** What every connection of one agent run shares. */
interface Run {
  config: AgentConfig;
  pool: LocalPool;
  metrics: AgentMetrics;
  /**
   * Aborted on SIGTERM or SIGINT, or when one connection meets what retrying cannot fix.
   * Listeners are removed with their connection, so none pile up.
   */
  stop: AbortSignal;
  /** Ready connections, older ones finishing their streams after a GoAway included. */
  tunnels: Set<TunnelConnection>;
  /** One per socket not yet closed; resolves when it is. */
  sockets: Set<Promise<void>>;
}

/** After the grace period, how long a socket may take to close before the agent exits anyway. */
const CLOSE_TIMEOUT_MS = 1_000;

export interface AgentHandle {
  /** Resolves with the process exit code. */
  done: Promise<number>;
  stop(): void;
}

export async function runAgent(config: AgentConfig): Promise<number> {
  const handle = startAgent(config);
  const stop = () => handle.stop();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return handle.done;
}

export function startAgent(config: AgentConfig): AgentHandle {
  const stopped = new AbortController();
  const tunnels = new Set<TunnelConnection>();
  const run: Run = {
    config,
    pool: new LocalPool(config.to.host, config.to.port),
    metrics: new AgentMetrics(tunnels, () => stopped.signal.aborted),
    stop: stopped.signal,
    tunnels,
    sockets: new Set(),
  };
  const admin =
    config.admin === "off"
      ? null
      : startAdmin({
          address: config.admin,
          healthy: () => !stopped.signal.aborted && tunnels.size > 0,
          metrics: run.metrics.registry,
        });
  const loops = Array.from({ length: config.connections }, async (_, index) => {
    const code = await new ConnectionLoop(run, index).run();
    // A refused credential or an untrusted certificate is the same for every connection.
    if (code !== 0) stopped.abort();
    return code;
  });

  const finish = async (): Promise<number> => {
    const codes = await Promise.all(loops);
    // Older connections may still be finishing their streams (each within its own grace period).
    const closing = Promise.all(run.sockets);
    await Promise.race([closing, Bun.sleep(config.shutdownGraceMs + CLOSE_TIMEOUT_MS)]);
    run.pool.closeAll();
    await admin?.stop(true);
    return Math.max(...codes);
  };

  return {
    done: finish(),
    stop() {
      stopped.abort();
    },
  };
}

/**
 * One of the agent's `--connections`: dial, serve until the connection ends, back off, dial again.
 * Each keeps its own failures and protocol version, and dials only its share of the gateways.
 */
class ConnectionLoop {
  readonly #run: Run;
  /** "connection 2/3: " before each line when the agent holds several, else nothing. */
  readonly #prefix: string;
  readonly #gateways: string[];
  #attempt = 0;
  #failures = 0;
  /**
   * The protocol version offered: the agent's own, or the oldest it speaks once a gateway
   * refused its own as too new (a gateway not upgraded yet). Back to its own after a connection
   * that served, so that an upgraded gateway is spoken to at its best at the next dial.
   */
  #protocolVersion = PROTOCOL_VERSION;

  constructor(run: Run, index: number) {
    const { connections, gateways } = run.config;
    this.#run = run;
    this.#gateways = gatewayShare(gateways, index, connections);
    this.#prefix = connections > 1 ? `connection ${index + 1}/${connections}: ` : "";
  }

  /** Resolves with 0 once the agent stops, or 1 when dialling again cannot help. */
  async run(): Promise<number> {
    const { stop, metrics } = this.#run;
    while (!stop.aborted) {
      const gateway = this.#gateways[this.#attempt % this.#gateways.length] as string;
      metrics.dials.inc();
      const outcome = await new Dial(this.#run, gateway, this.#protocolVersion, this.#prefix).outcome;
      if (outcome.kind === "stopped") break;
      const next = this.#judge(gateway, outcome);
      if (next === "exit") return 1;
      if (next === "again") continue;
      this.#attempt++;
      const delay = backoffDelay(this.#failures);
      log.info(`${this.#prefix}reconnecting in ${(delay / 1000).toFixed(1)} s`);
      await sleepUnlessStopped(delay, stop);
    }
    return 0;
  }

  /** Logs how a connection ended and says what follows: exit, dial again at once, or back off. */
  #judge(gateway: string, outcome: Exclude<Outcome, { kind: "stopped" }>): "exit" | "again" | "backoff" {
    const prefix = this.#prefix;
    if (outcome.kind === "untrusted") {
      log.error(`${prefix}${gateway}: ${outcome.why}`);
      return "exit";
    }
    if (outcome.kind === "refused") {
      const { code, message } = outcome.error;
      if (code === Code.INCOMPATIBLE_VERSION && this.#protocolVersion > MIN_PROTOCOL_VERSION) {
        log.warn(`${prefix}${message}; speaking protocol version ${MIN_PROTOCOL_VERSION} to it instead`);
        this.#protocolVersion = MIN_PROTOCOL_VERSION;
        return "again";
      }
      if (PERMANENT.has(code)) {
        log.error(`${prefix}gateway refused this agent (${Code[code]}): ${message}`);
        return "exit";
      }
      log.warn(`${prefix}gateway refused the connection for now (${Code[code]}): ${message}`);
    } else if (outcome.kind === "goaway") {
      // A gateway going away is usually being restarted, its successor already listening on the
      // same address: dial at once, so requests held there wait as little as possible.
      log.info(`${prefix}dialling again at once while the streams in flight finish on the old connection`);
      this.#failures = 0;
      this.#protocolVersion = PROTOCOL_VERSION;
      return "again";
    } else {
      log.warn(`${prefix}connection to ${gateway} lost: ${outcome.why}`);
    }
    const served = outcome.kind === "lost" && outcome.served;
    this.#failures = served ? 0 : this.#failures + 1;
    if (served) this.#protocolVersion = PROTOCOL_VERSION;
    return "backoff";
  }
}

/**
 * The gateways connection `index` of `connections` fails over among: every `connections`-th one
 * from its own index (all of them for a single connection), or only the one at its index when
 * there are no more gateways than connections. A connection that moved to another's gateway while
 * its own was down would stay there, and its own would have none once back.
 */
export function gatewayShare(gateways: string[], index: number, connections: number): string[] {
  const share = gateways.filter((_, i) => i % connections === index);
  return share.length > 0 ? share : [gateways[index % gateways.length] as string];
}

/** Where one connection stands. Only a dialing one becomes ready, refused or untrusted. */
type Phase =
  | { kind: "dialing" }
  | { kind: "ready"; tunnel: TunnelConnection }
  | { kind: "refused"; error: ConnectError }
  | { kind: "untrusted"; why: string };

/**
 * One connection, from dial to close; the outcome may come earlier, on a GoAway, while the
 * connection finishes its streams.
 */
class Dial {
  readonly outcome: Promise<Outcome>;
  readonly #settle: (outcome: Outcome) => void;
  readonly #run: Run;
  readonly #gateway: string;
  /** Names the connection in log lines when the agent holds several. */
  readonly #prefix: string;
  readonly #socketClosed = Promise.withResolvers<void>();
  readonly #ws: WebSocket;
  readonly #timer: Timer;
  #phase: Phase = { kind: "dialing" };
  // One function, so that the listener removed at close is the one added.
  readonly #onStop = () => this.#stop();

  constructor(run: Run, gateway: string, protocolVersion: number, prefix: string) {
    const outcome = Promise.withResolvers<Outcome>();
    this.outcome = outcome.promise;
    this.#settle = outcome.resolve;
    this.#run = run;
    this.#gateway = gateway;
    this.#prefix = prefix;
    run.sockets.add(this.#socketClosed.promise);
    log.info(`${prefix}connecting to ${gateway} as '${run.config.agentId}'`);
    const ws = new WebSocket(gateway, {
      perMessageDeflate: false,
      ...(run.config.ca ? { tls: { ca: run.config.ca } } : {}),
    } satisfies Bun.WebSocketOptions);
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    this.#timer = setTimeout(() => this.#giveUp(), CONNECT_TIMEOUT_MS);
    run.stop.addEventListener("abort", this.#onStop, { once: true });
    ws.addEventListener("open", () => {
      ws.send(connectFrame(run.config, protocolVersion));
    });
    ws.addEventListener("message", (event) => this.#onMessage(new Uint8Array(event.data as ArrayBuffer)));
    ws.addEventListener("close", (event) => this.#onClose(event));
    ws.addEventListener("error", (event) => this.#onError(event));
  }

  #giveUp(): void {
    log.warn(`${this.#prefix}no answer from ${this.#gateway} within ${CONNECT_TIMEOUT_MS / 1000} s`);
    this.#ws.terminate();
  }

  async #stop(): Promise<void> {
    if (this.#phase.kind === "ready") {
      const { tunnel } = this.#phase;
      const idle = await finishStreams(tunnel, this.#run.config.shutdownGraceMs, this.#prefix);
      // Through the connection, so that the last frames of this turn leave before the close.
      if (idle) tunnel.closeFinished("agent stopping");
      else tunnel.close(1001, "agent stopping");
    } else {
      this.#ws.close(1000, "agent stopping");
    }
    this.#settle({ kind: "stopped" });
  }

  #onMessage(frame: Uint8Array): void {
    if (this.#phase.kind === "ready") return this.#phase.tunnel.receive(frame);
    let first: FirstMessage;
    try {
      first = firstMessage(frame);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      log.error(`${this.#prefix}protocol error from the gateway: ${error.message}`);
      return this.#ws.close(1002, "protocol error");
    }
    if (first.kind === "refused") this.#phase = first;
    else this.#ready(first.connected);
  }

  #ready(connected: Connected): void {
    const { config, pool, tunnels } = this.#run;
    clearTimeout(this.#timer);
    // Gateways before version 2 leave the field out: they read and send one frame per message.
    const tunnel = new TunnelConnection(
      this.#ws,
      pool,
      connected.protocolVersion || 1,
      this.#prefix,
      config.tcp,
    );
    this.#phase = { kind: "ready", tunnel };
    tunnels.add(tunnel);
    tunnel.onGoAway = () => {
      this.#settle({ kind: "goaway" });
      void tunnel.whenIdle().then(() => tunnel.closeFinished("finished after the gateway's GoAway"));
    };
    tunnel.startHeartbeat(connected.heartbeatIntervalMs);
    const tcp = config.tcp.length > 0 ? `; tcp: ${config.tcp.map((s) => s.name).join(", ")}` : "";
    log.success(
      `${this.#prefix}tunnel ready: ${connected.url} → http://${config.to.host}:${config.to.port}${tcp}`,
    );
  }

  #onClose(event: CloseEvent): void {
    const phase = this.#phase;
    clearTimeout(this.#timer);
    this.#run.stop.removeEventListener("abort", this.#onStop);
    if (phase.kind === "ready") {
      phase.tunnel.closedByPeer();
      this.#run.tunnels.delete(phase.tunnel);
    }
    this.#run.sockets.delete(this.#socketClosed.promise);
    this.#socketClosed.resolve();
    if (phase.kind === "refused" || phase.kind === "untrusted") return this.#settle(phase);
    const why = event.reason || `closed with code ${event.code}`;
    this.#settle({ kind: "lost", served: phase.kind === "ready", why });
  }

  #onError(event: Event): void {
    // A failed dial also emits close, which settles the outcome; a certificate that does not
    // verify is remembered for it, because dialling again cannot fix that.
    const why = certificateProblem(event);
    if (why !== null && this.#phase.kind === "dialing") this.#phase = { kind: "untrusted", why };
  }
}

/** Waits `ms`, or less when the agent is told to stop meanwhile. */
function sleepUnlessStopped(ms: number, stop: AbortSignal): Promise<void> {
  if (stop.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stop.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stop.addEventListener("abort", done, { once: true });
  });
}

// OpenSSL's verification failures and the host name check; a reset or a timeout during the
// handshake matches none of these and stays a transient loss.
const CERTIFICATE_ERROR = /CERT|SELF_SIGNED|VERIFY|ISSUER|ALTNAME|HOSTNAME/;

function certificateProblem(event: Event): string | null {
  const error = (event as ErrorEvent).error as { code?: unknown; message?: unknown } | undefined;
  const code = typeof error?.code === "string" ? error.code : "";
  if (!CERTIFICATE_ERROR.test(code)) return null;
  const reason = String(error?.message ?? "").replace(/^.*TLS handshake failed: /, "");
  return (
    `the gateway's TLS certificate does not verify (${code}: ${reason}); ` +
    "pass --ca FILE with the CA that signed it, or fix the certificate on the gateway"
  );
}

/** Stopping: refuse new streams and give those in flight up to `graceMs`; true when all finished. */
async function finishStreams(tunnel: TunnelConnection, graceMs: number, prefix: string): Promise<boolean> {
  tunnel.drain();
  const busy = tunnel.httpStreams;
  if (busy === 0) return true;
  log.info(`${prefix}finishing ${busy} stream(s) in flight, up to ${graceMs / 1000} s`);
  const idle = tunnel.whenIdle().then(() => true);
  if (await Promise.race([idle, Bun.sleep(graceMs).then(() => false)])) return true;
  log.warn(`${prefix}grace period over: cutting ${tunnel.httpStreams} stream(s) still in flight`);
  return false;
}

type FirstMessage = { kind: "connected"; connected: Connected } | { kind: "refused"; error: ConnectError };

function firstMessage(frame: Uint8Array): FirstMessage {
  const message = decodeEnvelope(frame);
  if (message.case === "connectError") return { kind: "refused", error: message.value };
  if (message.case === "control" && message.value.kind.case === "connected") {
    return { kind: "connected", connected: message.value.kind.value };
  }
  throw new ProtocolError(`expected Connected or ConnectError, got ${message.case}`);
}

function connectFrame(config: AgentConfig, protocolVersion: number): Uint8Array {
  const fields = {
    agentId: config.agentId,
    token: config.token,
    timestampMs: BigInt(Date.now()),
    nonce: newNonce(),
    protocolVersion,
  };
  return encodeEnvelope({
    case: "connect",
    value: {
      ...fields,
      signature: signConnect(config.secret, fields),
      agentVersion: VERSION,
      tcpServices: config.tcp.map((service) => service.name),
    },
  });
}
