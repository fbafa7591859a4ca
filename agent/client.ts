// The agent's life: dial the gateway, authenticate, serve streams until the connection ends,
// then back off and dial again. Only a refused credential ends it for good.
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
  /** Aborted on SIGTERM or SIGINT. Listeners are removed with their connection, so none pile up. */
  stop: AbortSignal;
  /** Ready connections, older ones finishing their streams after a GoAway included. */
  tunnels: Set<TunnelConnection>;
  /** One per socket not yet closed; resolves when it is. */
  sockets: Set<Promise<void>>;
  /**
   * The protocol version this agent offers: its own, or the oldest it speaks once a gateway
   * refused its own as too new (a gateway not upgraded yet). Back to its own after a connection
   * that served, so that an upgraded gateway is spoken to at its best at the next dial.
   */
  protocolVersion: number;
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
  const pool = new LocalPool(config.to.host, config.to.port);
  const stopped = new AbortController();
  const run: Run = {
    config,
    pool,
    stop: stopped.signal,
    tunnels: new Set(),
    sockets: new Set(),
    protocolVersion: PROTOCOL_VERSION,
  };
  const metrics = new AgentMetrics(run.tunnels, () => stopped.signal.aborted);
  const admin =
    config.admin === "off"
      ? null
      : startAdmin({
          address: config.admin,
          healthy: () => !stopped.signal.aborted && run.tunnels.size > 0,
          metrics: metrics.registry,
        });

  const loop = async (): Promise<number> => {
    let failures = 0;
    let gatewayIndex = 0;
    while (!stopped.signal.aborted) {
      const gateway = config.gateways[gatewayIndex % config.gateways.length] as string;
      metrics.dials.inc();
      const outcome = await new Dial(run, gateway).outcome;
      if (outcome.kind === "stopped") break;
      if (outcome.kind === "untrusted") {
        log.error(`${gateway}: ${outcome.why}`);
        pool.closeAll();
        return 1;
      }
      if (outcome.kind === "refused") {
        const { code, message } = outcome.error;
        if (code === Code.INCOMPATIBLE_VERSION && run.protocolVersion > MIN_PROTOCOL_VERSION) {
          log.warn(`${message}; speaking protocol version ${MIN_PROTOCOL_VERSION} to it instead`);
          run.protocolVersion = MIN_PROTOCOL_VERSION;
          continue;
        }
        if (PERMANENT.has(code)) {
          log.error(`gateway refused this agent (${Code[code]}): ${message}`);
          pool.closeAll();
          return 1;
        }
        log.warn(`gateway refused the connection for now (${Code[code]}): ${message}`);
      } else if (outcome.kind === "goaway") {
        log.info("dialling again while the streams in flight finish on the old connection");
      } else {
        log.warn(`connection to ${gateway} lost: ${outcome.why}`);
      }
      const served = outcome.kind === "goaway" || (outcome.kind === "lost" && outcome.served);
      failures = served ? 0 : failures + 1;
      if (served) run.protocolVersion = PROTOCOL_VERSION;
      gatewayIndex++;
      const delay = backoffDelay(failures);
      log.info(`reconnecting in ${(delay / 1000).toFixed(1)} s`);
      await sleepUnlessStopped(delay, stopped.signal);
    }
    // Older connections may still be finishing their streams (each within its own grace period).
    const closing = Promise.all(run.sockets);
    await Promise.race([closing, Bun.sleep(config.shutdownGraceMs + CLOSE_TIMEOUT_MS)]);
    pool.closeAll();
    await admin?.stop(true);
    return 0;
  };

  return {
    done: loop(),
    stop() {
      stopped.abort();
    },
  };
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
  readonly #socketClosed = Promise.withResolvers<void>();
  readonly #ws: WebSocket;
  readonly #timer: Timer;
  #phase: Phase = { kind: "dialing" };
  // One function, so that the listener removed at close is the one added.
  readonly #onStop = () => this.#stop();

  constructor(run: Run, gateway: string) {
    const outcome = Promise.withResolvers<Outcome>();
    this.outcome = outcome.promise;
    this.#settle = outcome.resolve;
    this.#run = run;
    this.#gateway = gateway;
    run.sockets.add(this.#socketClosed.promise);
    log.info(`connecting to ${gateway} as '${run.config.agentId}'`);
    const ws = new WebSocket(gateway, {
      perMessageDeflate: false,
      ...(run.config.ca ? { tls: { ca: run.config.ca } } : {}),
    } satisfies Bun.WebSocketOptions);
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    this.#timer = setTimeout(() => this.#giveUp(), CONNECT_TIMEOUT_MS);
    run.stop.addEventListener("abort", this.#onStop, { once: true });
    ws.addEventListener("open", () => {
      ws.send(connectFrame(run.config, run.protocolVersion));
    });
    ws.addEventListener("message", (event) => this.#onMessage(new Uint8Array(event.data as ArrayBuffer)));
    ws.addEventListener("close", (event) => this.#onClose(event));
    ws.addEventListener("error", (event) => this.#onError(event));
  }

  #giveUp(): void {
    log.warn(`no answer from ${this.#gateway} within ${CONNECT_TIMEOUT_MS / 1000} s`);
    this.#ws.terminate();
  }

  async #stop(): Promise<void> {
    if (this.#phase.kind === "ready") {
      const { tunnel } = this.#phase;
      await finishStreams(tunnel, this.#run.config.shutdownGraceMs);
      // Through the connection, so that the last frames of this turn leave before the close.
      tunnel.close(1000, "agent stopping");
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
      log.error(`protocol error from the gateway: ${error.message}`);
      return this.#ws.close(1002, "protocol error");
    }
    if (first.kind === "refused") this.#phase = first;
    else this.#ready(first.connected);
  }

  #ready(connected: Connected): void {
    const { config, pool, tunnels } = this.#run;
    clearTimeout(this.#timer);
    // Gateways before version 2 leave the field out: they read and send one frame per message.
    const tunnel = new TunnelConnection(this.#ws, pool, connected.protocolVersion || 1);
    this.#phase = { kind: "ready", tunnel };
    tunnels.add(tunnel);
    tunnel.onGoAway = () => {
      this.#settle({ kind: "goaway" });
      void tunnel.whenIdle().then(() => tunnel.close(1000, "finished after the gateway's GoAway"));
    };
    tunnel.startHeartbeat(connected.heartbeatIntervalMs);
    log.success(`tunnel ready: ${connected.url} → http://${config.to.host}:${config.to.port}`);
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

/** Stopping: refuse new streams and give those in flight up to `graceMs` to finish. */
async function finishStreams(tunnel: TunnelConnection, graceMs: number): Promise<void> {
  tunnel.drain();
  const busy = tunnel.httpStreams;
  if (busy === 0) return;
  log.info(`finishing ${busy} stream(s) in flight, up to ${graceMs / 1000} s`);
  const idle = tunnel.whenIdle().then(() => true);
  if (!(await Promise.race([idle, Bun.sleep(graceMs).then(() => false)]))) {
    log.warn(`grace period over: cutting ${tunnel.httpStreams} stream(s) still in flight`);
  }
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
    value: { ...fields, signature: signConnect(config.secret, fields), agentVersion: VERSION },
  });
}
