// The agent's life: dial the gateway, authenticate, serve streams until the connection ends,
// then back off and dial again. Only a refused credential ends it for good.
import { newNonce, PROTOCOL_VERSION, signConnect } from "../shared/auth.ts";
import { ConnectError_Code as Code, type ConnectError, type Connected } from "../shared/gen/tunnel_pb.ts";
import { log } from "../shared/log.ts";
import { decodeEnvelope, encodeEnvelope, ProtocolError } from "../shared/protocol.ts";
import { VERSION } from "../shared/version.ts";
import { backoffDelay } from "./backoff.ts";
import type { AgentConfig } from "./config.ts";
import { LocalPool } from "./local-pool.ts";
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
  | { kind: "stopped" };

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
  const stopped = Promise.withResolvers<void>();
  let stopping = false;

  const loop = async (): Promise<number> => {
    let failures = 0;
    let gatewayIndex = 0;
    while (!stopping) {
      const gateway = config.gateways[gatewayIndex % config.gateways.length] as string;
      const outcome = await dialOnce(config, gateway, pool, stopped.promise);
      if (outcome.kind === "stopped") break;
      if (outcome.kind === "refused") {
        const { code, message } = outcome.error;
        if (PERMANENT.has(code)) {
          log.error(`gateway refused this agent (${Code[code]}): ${message}`);
          pool.closeAll();
          return 1;
        }
        log.warn(`gateway refused the connection for now (${Code[code]}): ${message}`);
      } else {
        log.warn(`connection to ${gateway} lost: ${outcome.why}`);
      }
      failures = outcome.kind === "lost" && outcome.served ? 0 : failures + 1;
      gatewayIndex++;
      const delay = backoffDelay(failures);
      log.info(`reconnecting in ${(delay / 1000).toFixed(1)} s`);
      await Promise.race([Bun.sleep(delay), stopped.promise]);
    }
    pool.closeAll();
    return 0;
  };

  return {
    done: loop(),
    stop() {
      stopping = true;
      stopped.resolve();
    },
  };
}

/** One connection, from dial to close. */
function dialOnce(
  config: AgentConfig,
  gateway: string,
  pool: LocalPool,
  stop: Promise<void>,
): Promise<Outcome> {
  const { promise, resolve } = Promise.withResolvers<Outcome>();
  log.info(`connecting to ${gateway} as '${config.agentId}'`);
  const ws = new WebSocket(gateway, {
    perMessageDeflate: false,
    ...(config.ca ? { tls: { ca: config.ca } } : {}),
  } satisfies Bun.WebSocketOptions);
  ws.binaryType = "arraybuffer";
  let tunnel: TunnelConnection | null = null;
  let refused: ConnectError | null = null;

  const dialTimer = setTimeout(() => {
    log.warn(`no answer from ${gateway} within ${CONNECT_TIMEOUT_MS / 1000} s`);
    ws.terminate();
  }, CONNECT_TIMEOUT_MS);

  void stop.then(() => {
    ws.close(1000, "agent stopping");
    resolve({ kind: "stopped" });
  });

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
    tunnel = new TunnelConnection(ws, pool);
    tunnel.startHeartbeat(first.connected.heartbeatIntervalMs);
    log.success(`tunnel ready: ${first.connected.url} → http://${config.to.host}:${config.to.port}`);
  });

  ws.addEventListener("close", (event) => {
    clearTimeout(dialTimer);
    const served = tunnel !== null;
    tunnel?.dispose();
    if (refused) return resolve({ kind: "refused", error: refused });
    resolve({ kind: "lost", served, why: event.reason || `closed with code ${event.code}` });
  });

  ws.addEventListener("error", () => {
    // A failed dial also emits close, which settles the outcome; nothing else to do here.
  });

  return promise;
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
