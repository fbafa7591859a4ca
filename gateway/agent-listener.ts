// The WebSocket port agents dial: authentication first, then each connection becomes an
// AgentSession in the registry.

import type { Server, ServerWebSocket, TLSOptions } from "bun";
import { FailureRateLimiter, PROTOCOL_VERSION } from "../shared/auth.ts";
import { MAX_MESSAGE_BYTES } from "../shared/batch.ts";
import {
  ConnectError_Code as Code,
  type ConnectError,
  type ConnectRequest,
} from "../shared/gen/tunnel_pb.ts";
import { log } from "../shared/log.ts";
import {
  decodeEnvelope,
  encodeEnvelope,
  INITIAL_WINDOW,
  MAX_FRAME_PAYLOAD,
  ProtocolError,
} from "../shared/protocol.ts";
import type { Authenticator } from "./authenticate.ts";
import { RotatingServer } from "./rotating-server.ts";
import { AgentSession } from "./session.ts";
import type { SessionRegistry } from "./sessions.ts";

/** An agent that has not authenticated within this time is disconnected. */
export const AUTH_TIMEOUT_MS = 5_000;

/**
 * Sockets upgraded but not yet authenticated. Past this, the OLDEST is refused to make room: a
 * real agent authenticates within one round trip, so a flood would have to replace the whole
 * set faster than that to keep one out, while refusing the newest would let a flood that merely
 * holds its sockets lock every agent out.
 */
export const MAX_UNAUTHENTICATED = 1_024;

/** Sessions one agent id may hold at once (several connections for HA; stale ones are probed). */
export const MAX_SESSIONS_PER_ID = 8;

/** Sessions all the ids of one token may hold at once. */
export const MAX_SESSIONS_PER_TOKEN = 4_096;

/** Bun's timer for a TCP connection that has not finished its upgrade request. */
const HANDSHAKE_IDLE_TIMEOUT_S = 10;

/** Where an agent's socket stands: it has one chance, its first frame, to become a session. */
type Stage =
  /** The timer is unset only between the upgrade and Bun's open callback. */
  | { kind: "authenticating"; timer: Timer | undefined }
  | { kind: "refused" }
  | { kind: "admitted"; session: AgentSession };

interface SocketState {
  remoteAddress: string;
  stage: Stage;
}

type AgentSocket = ServerWebSocket<SocketState>;

type Refusal = Pick<ConnectError, "code" | "message">;

export interface AgentListenerOptions {
  /** Serve wss:// with these certificates (by SNI); undefined for plain ws://. */
  tls: TLSOptions[] | undefined;
  /** The certificates may change while the gateway runs (rotate). */
  rotates: boolean;
  hostname: string;
  port: number;
  heartbeatIntervalMs: number;
  publicUrl: (agentId: string) => string;
  authenticator: () => Authenticator;
  registry: SessionRegistry;
  /** False once the gateway is shutting down: new agents are refused. */
  accepting: () => boolean;
}

export class AgentListener {
  readonly #options: AgentListenerOptions;
  readonly #limiter = new FailureRateLimiter();
  /** Insertion-ordered, so the first is the oldest. */
  readonly #unauthenticated = new Set<AgentSocket>();
  readonly #server: RotatingServer<SocketState>;

  constructor(options: AgentListenerOptions) {
    this.#options = options;
    this.#server = new RotatingServer({
      name: "agent listener",
      open: (tls, port, reusePort) => this.#listen(tls, port, reusePort),
      tls: options.tls,
      hostname: options.hostname,
      port: options.port,
      rotates: options.rotates,
    });
  }

  #listen(tls: TLSOptions[] | undefined, port: number, reusePort: boolean): Server<SocketState> {
    return Bun.serve<SocketState>({
      ...(tls ? { tls } : {}),
      hostname: this.#options.hostname,
      port,
      reusePort,
      idleTimeout: HANDSHAKE_IDLE_TIMEOUT_S,
      fetch(req, server) {
        if (new URL(req.url).pathname !== "/") return new Response("not found\n", { status: 404 });
        const remoteAddress = server.requestIP(req)?.address ?? "unknown";
        const stage: Stage = { kind: "authenticating", timer: undefined };
        if (server.upgrade(req, { data: { remoteAddress, stage } })) return;
        return new Response("this port accepts indraNet agents over WebSocket\n", { status: 426 });
      },
      websocket: {
        maxPayloadLength: MAX_MESSAGE_BYTES,
        perMessageDeflate: false,
        // Liveness is the tunnel's own heartbeat; Bun's idle timer would cut quiet agents.
        idleTimeout: 0,
        sendPings: false,
        open: (ws) => this.#onOpen(ws),
        message: (ws, message) => this.#onMessage(ws, message),
        drain(ws) {
          if (ws.data.stage.kind === "admitted") ws.data.stage.session.drained();
        },
        close: (ws, code) => {
          this.#stopWaiting(ws);
          if (ws.data.stage.kind === "admitted") ws.data.stage.session.closedByPeer(code);
        },
      },
    });
  }

  get port(): number | undefined {
    return this.#server.port;
  }

  /** New agents get these certificates; connected ones keep their connection. */
  rotate(tls: TLSOptions[]): void {
    this.#server.rotate(tls);
  }

  stop(closeActiveConnections?: boolean): Promise<void> {
    return this.#server.stop(closeActiveConnections);
  }

  #onOpen(ws: AgentSocket): void {
    if (this.#unauthenticated.size >= MAX_UNAUTHENTICATED) {
      const oldest = this.#unauthenticated.values().next().value;
      if (oldest)
        this.#refuse(oldest, { code: Code.RATE_LIMITED, message: "too many unauthenticated connections" });
    }
    this.#unauthenticated.add(ws);
    const timer = setTimeout(() => {
      this.#refuse(ws, {
        code: Code.PROTOCOL_ERROR,
        message: `no ConnectRequest within ${AUTH_TIMEOUT_MS} ms`,
      });
    }, AUTH_TIMEOUT_MS);
    ws.data.stage = { kind: "authenticating", timer };
  }

  #onMessage(ws: AgentSocket, message: string | Uint8Array): void {
    const { stage } = ws.data;
    if (typeof message === "string") {
      const why = "text frames are not part of the protocol";
      if (stage.kind === "admitted") return stage.session.close(1003, why);
      return this.#refuse(ws, { code: Code.PROTOCOL_ERROR, message: why });
    }
    if (stage.kind === "admitted") stage.session.receive(message);
    else this.#onFirstFrame(ws, message);
  }

  /** The socket no longer counts against the unauthenticated limit, nor waits for its timer. */
  #stopWaiting(ws: AgentSocket): void {
    if (ws.data.stage.kind === "authenticating") clearTimeout(ws.data.stage.timer);
    this.#unauthenticated.delete(ws);
  }

  #refuse(ws: AgentSocket, { code, message }: Refusal): void {
    this.#stopWaiting(ws);
    ws.data.stage = { kind: "refused" };
    ws.send(encodeEnvelope({ case: "connectError", value: { code, message } }));
    ws.close(4003, message.slice(0, 120));
  }

  #onFirstFrame(ws: AgentSocket, frame: Uint8Array): void {
    this.#stopWaiting(ws);
    let message: ReturnType<typeof decodeEnvelope>;
    try {
      message = decodeEnvelope(frame);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      return this.#refuse(ws, { code: Code.PROTOCOL_ERROR, message: error.message });
    }
    if (message.case !== "connect") {
      const why = `expected a ConnectRequest first, got ${message.case}`;
      return this.#refuse(ws, { code: Code.PROTOCOL_ERROR, message: why });
    }
    const refusal = this.#refusal(ws.data.remoteAddress, message.value);
    if (refusal) return this.#refuse(ws, refusal);
    this.#admit(ws, message.value);
  }

  /** Why this request may not become a session (a failed credential is counted and logged), or null. */
  #refusal(remote: string, request: ConnectRequest): Refusal | null {
    const now = Date.now();
    if (!this.#options.accepting())
      return { code: Code.SHUTTING_DOWN, message: "the gateway is shutting down" };
    if (this.#limiter.blocked(remote, now)) {
      return {
        code: Code.RATE_LIMITED,
        message: "too many failed attempts from this address; wait a minute",
      };
    }
    const result = this.#options.authenticator().authenticate(request, now);
    if (!result.ok) {
      this.#limiter.recordFailure(remote, now);
      log.warn(`agent auth refused from ${remote} (id '${request.agentId}'): ${result.message}`);
      return { code: result.code, message: result.message };
    }
    const { registry } = this.#options;
    const holder = registry.holderToken(request.agentId);
    if (holder !== undefined && holder !== request.token) {
      return {
        code: Code.ID_HELD_BY_OTHER_TOKEN,
        message: `agent id '${request.agentId}' is held by another token`,
      };
    }
    const full = sessionLimit(registry, request);
    return full === null ? null : { code: Code.TOO_MANY_SESSIONS, message: full };
  }

  #admit(ws: AgentSocket, request: ConnectRequest): void {
    const { registry } = this.#options;
    const remote = ws.data.remoteAddress;
    const version = Math.min(request.protocolVersion, PROTOCOL_VERSION);
    const session = new AgentSession(
      ws as ServerWebSocket<unknown>,
      {
        agentId: request.agentId,
        token: request.token,
        remoteAddress: remote,
        agentVersion: request.agentVersion,
        tcpServices: request.tcpServices,
      },
      version,
      (closed) => {
        registry.remove(closed);
        log.info(`agent ${closed.info.agentId} disconnected (session ${closed.id})`);
      },
    );
    ws.data.stage = { kind: "admitted", session };
    const url = this.#options.publicUrl(request.agentId);
    const sent = session.send(connectedFrame(session.id, url, this.#options.heartbeatIntervalMs, version));
    // Connected goes alone, before any stream's frame can join it: the agent reads it unbatched.
    session.flush();
    // A socket that could not take the first frame is already closed: never register it.
    if (!sent || session.closed) return;
    session.onStopping = (stopping) => registry.stopping(stopping);
    registry.add(session);
    // A first round-trip time, so that windows can grow before the first heartbeat.
    session.ping();
    log.info(`agent ${request.agentId} connected from ${remote} (session ${session.id}) → ${url}`);
  }
}

function connectedFrame(sessionId: string, url: string, heartbeatIntervalMs: number, version: number) {
  return encodeEnvelope({
    case: "control",
    value: {
      kind: {
        case: "connected",
        value: {
          sessionId,
          url,
          heartbeatIntervalMs,
          initialWindow: INITIAL_WINDOW,
          maxFramePayload: MAX_FRAME_PAYLOAD,
          protocolVersion: version,
        },
      },
    },
  });
}

/** Why a new session for this request would exceed a limit, or null when it fits. */
function sessionLimit(registry: SessionRegistry, request: ConnectRequest): string | null {
  if (registry.sessionsFor(request.agentId).length >= MAX_SESSIONS_PER_ID) {
    return `agent id '${request.agentId}' already has ${MAX_SESSIONS_PER_ID} connections`;
  }
  if (registry.countForToken(request.token) >= MAX_SESSIONS_PER_TOKEN) {
    return `this token already has ${MAX_SESSIONS_PER_TOKEN} connections`;
  }
  return null;
}
