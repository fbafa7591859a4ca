// The agent's life: dial the gateway, authenticate, serve streams until the connection ends,
// then back off and dial again. Only a refused credential ends it for good.
import { startAdmin } from "../shared/admin.ts";
import { newNonce, PROTOCOL_VERSION, signConnect } from "../shared/auth.ts";
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
  let stopping = false;
  const run: Run = { config, pool, stop: stopped.signal, tunnels: new Set(), sockets: new Set() };
  const metrics = new AgentMetrics(run.tunnels, () => stopping);
  const admin =
    config.admin === "off"
      ? null
      : startAdmin({
          address: config.admin,
          healthy: () => !stopping && run.tunnels.size > 0,
          metrics: metrics.registry,
        });

  const loop = async (): Promise<number> => {
    let failures = 0;
    let gatewayIndex = 0;
    while (!stopping) {
      const gateway = config.gateways[gatewayIndex % config.gateways.length] as string;
      metrics.dials.inc();
      const outcome = await dialOnce(run, gateway);
      if (outcome.kind === "stopped") break;
      if (outcome.kind === "untrusted") {
        log.error(`${gateway}: ${outcome.why}`);
        pool.closeAll();
        return 1;
      }
      if (outcome.kind === "refused") {
        const { code, message } = outcome.error;
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
      stopping = true;
      stopped.abort();
    },
  };
}

/**
 * One connection, from dial to close; the outcome may come earlier, on a GoAway, while the
 * connection finishes its streams.
 */
function dialOnce(run: Run, gateway: string): Promise<Outcome> {
  const { config, pool } = run;
  const { promise, resolve } = Promise.withResolvers<Outcome>();
  const socketClosed = Promise.withResolvers<void>();
  run.sockets.add(socketClosed.promise);
  log.info(`connecting to ${gateway} as '${config.agentId}'`);
  const ws = new WebSocket(gateway, {
    perMessageDeflate: false,
    ...(config.ca ? { tls: { ca: config.ca } } : {}),
  } satisfies Bun.WebSocketOptions);
  ws.binaryType = "arraybuffer";
  let tunnel: TunnelConnection | null = null;
  let refused: ConnectError | null = null;
  let untrusted: string | null = null;

  const dialTimer = setTimeout(() => {
    log.warn(`no answer from ${gateway} within ${CONNECT_TIMEOUT_MS / 1000} s`);
    ws.terminate();
  }, CONNECT_TIMEOUT_MS);

  const onStop = async () => {
    if (tunnel) await finishStreams(tunnel, config.shutdownGraceMs);
    // Through the connection, so that the last frames of this turn leave before the close.
    if (tunnel) tunnel.close(1000, "agent stopping");
    else ws.close(1000, "agent stopping");
    resolve({ kind: "stopped" });
  };
  run.stop.addEventListener("abort", onStop, { once: true });

  ws.addEventListener("open", () => {
    ws.send(connectFrame(config));
  });

  ws.addEventListener("message", (event) => {
    const frame = new Uint8Array(event.data as ArrayBuffer);
    if (tunnel) return tunnel.receive(frame);
    let first: FirstMessage;
    try {
      first = firstMessage(frame);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      log.error(`protocol error from the gateway: ${error.message}`);
      return ws.close(1002, "protocol error");
    }
    if (first.kind === "refused") {
      refused = first.error;
      return;
    }
    clearTimeout(dialTimer);
    // Gateways before version 2 leave the field out: they read and send one frame per message.
    const ready = new TunnelConnection(ws, pool, first.connected.protocolVersion || 1);
    tunnel = ready;
    run.tunnels.add(ready);
    ready.onGoAway = () => {
      resolve({ kind: "goaway" });
      void ready.whenIdle().then(() => ready.close(1000, "finished after the gateway's GoAway"));
    };
    ready.startHeartbeat(first.connected.heartbeatIntervalMs);
    log.success(`tunnel ready: ${first.connected.url} → http://${config.to.host}:${config.to.port}`);
  });

  ws.addEventListener("close", (event) => {
    clearTimeout(dialTimer);
    run.stop.removeEventListener("abort", onStop);
    const served = tunnel !== null;
    tunnel?.closedByPeer();
    if (tunnel) run.tunnels.delete(tunnel);
    run.sockets.delete(socketClosed.promise);
    socketClosed.resolve();
    if (refused) return resolve({ kind: "refused", error: refused });
    if (untrusted) return resolve({ kind: "untrusted", why: untrusted });
    resolve({ kind: "lost", served, why: event.reason || `closed with code ${event.code}` });
  });

  ws.addEventListener("error", (event) => {
    // A failed dial also emits close, which settles the outcome; a certificate that does not
    // verify is remembered for it, because dialling again cannot fix that.
    untrusted = certificateProblem(event);
  });

  return promise;
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

function connectFrame(config: AgentConfig): Uint8Array {
  const fields = {
    agentId: config.agentId,
    token: config.token,
    timestampMs: BigInt(Date.now()),
    nonce: newNonce(),
    protocolVersion: PROTOCOL_VERSION,
  };
  return encodeEnvelope({
    case: "connect",
    value: { ...fields, signature: signConnect(config.secret, fields), agentVersion: VERSION },
  });
}
