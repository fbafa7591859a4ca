// The WebSocket port agents dial: authentication first, then each connection becomes an
// AgentSession in the registry.
import type { Server, ServerWebSocket } from "bun";
import { FailureRateLimiter, PROTOCOL_VERSION } from "../shared/auth.ts";
import { MAX_MESSAGE_BYTES } from "../shared/batch.ts";
import {
  ConnectError_Code as Code,
  type ConnectError_Code,
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
import { AgentSession } from "./session.ts";
import type { SessionRegistry } from "./sessions.ts";
import type { TlsPair } from "./tls.ts";

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

interface SocketState {
  remoteAddress: string;
  session: AgentSession | null;
  authTimer: Timer | undefined;
}

export interface AgentListenerOptions {
  /** Serve wss:// with this certificate and key. */
  tls: TlsPair | undefined;
  hostname: string;
  port: number;
  heartbeatIntervalMs: number;
  publicUrl: (agentId: string) => string;
  authenticator: () => Authenticator;
  registry: SessionRegistry;
  /** False once the gateway is shutting down: new agents are refused. */
  accepting: () => boolean;
}

export function startAgentListener(options: AgentListenerOptions): Server<SocketState> {
  const limiter = new FailureRateLimiter();
  const { registry } = options;
  /** Insertion-ordered, so the first is the oldest. */
  const unauthenticated = new Set<ServerWebSocket<SocketState>>();

  const refuse = (ws: ServerWebSocket<SocketState>, code: ConnectError_Code, message: string) => {
    unauthenticated.delete(ws);
    clearTimeout(ws.data.authTimer);
    ws.send(encodeEnvelope({ case: "connectError", value: { code, message } }));
    ws.close(4003, message.slice(0, 120));
  };

  const admit = (ws: ServerWebSocket<SocketState>, request: ConnectRequest) => {
    const now = Date.now();
    const remote = ws.data.remoteAddress;
    if (!options.accepting()) return refuse(ws, Code.SHUTTING_DOWN, "the gateway is shutting down");
    if (limiter.blocked(remote, now)) {
      return refuse(ws, Code.RATE_LIMITED, "too many failed attempts from this address; wait a minute");
    }
    const result = options.authenticator().authenticate(request, now);
    if (!result.ok) {
      limiter.recordFailure(remote, now);
      log.warn(`agent auth refused from ${remote} (id '${request.agentId}'): ${result.message}`);
      return refuse(ws, result.code, result.message);
    }
    const holder = registry.holderToken(request.agentId);
    if (holder !== undefined && holder !== request.token) {
      return refuse(
        ws,
        Code.ID_HELD_BY_OTHER_TOKEN,
        `agent id '${request.agentId}' is held by another token`,
      );
    }
    const full = sessionLimit(registry, request);
    if (full !== null) return refuse(ws, Code.TOO_MANY_SESSIONS, full);
    const version = Math.min(request.protocolVersion, PROTOCOL_VERSION);
    const session = new AgentSession(
      ws as ServerWebSocket<unknown>,
      {
        agentId: request.agentId,
        token: request.token,
        remoteAddress: remote,
        agentVersion: request.agentVersion,
      },
      version,
      (closed) => {
        registry.remove(closed);
        log.info(`agent ${closed.info.agentId} disconnected (session ${closed.id})`);
      },
    );
    ws.data.session = session;
    const url = options.publicUrl(request.agentId);
    const sent = session.send(
      encodeEnvelope({
        case: "control",
        value: {
          kind: {
            case: "connected",
            value: {
              sessionId: session.id,
              url,
              heartbeatIntervalMs: options.heartbeatIntervalMs,
              initialWindow: INITIAL_WINDOW,
              maxFramePayload: MAX_FRAME_PAYLOAD,
              protocolVersion: version,
            },
          },
        },
      }),
    );
    // Connected goes alone, before any stream's frame can join it: the agent reads it unbatched.
    session.flush();
    // A socket that could not take the first frame is already closed: never register it.
    if (!sent || session.closed) return;
    registry.add(session);
    // A first round-trip time, so that windows can grow before the first heartbeat.
    session.ping();
    log.info(`agent ${request.agentId} connected from ${remote} (session ${session.id}) → ${url}`);
  };

  const onFirstFrame = (ws: ServerWebSocket<SocketState>, frame: Uint8Array) => {
    clearTimeout(ws.data.authTimer);
    unauthenticated.delete(ws);
    let message: ReturnType<typeof decodeEnvelope>;
    try {
      message = decodeEnvelope(frame);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      return refuse(ws, Code.PROTOCOL_ERROR, error.message);
    }
    if (message.case !== "connect") {
      return refuse(ws, Code.PROTOCOL_ERROR, `expected a ConnectRequest first, got ${message.case}`);
    }
    admit(ws, message.value);
  };

  return Bun.serve<SocketState>({
    ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}),
    hostname: options.hostname,
    port: options.port,
    idleTimeout: HANDSHAKE_IDLE_TIMEOUT_S,
    fetch(req, server) {
      if (new URL(req.url).pathname !== "/") return new Response("not found\n", { status: 404 });
      const remoteAddress = server.requestIP(req)?.address ?? "unknown";
      if (server.upgrade(req, { data: { remoteAddress, session: null, authTimer: undefined } })) return;
      return new Response("this port accepts indraNet agents over WebSocket\n", { status: 426 });
    },
    websocket: {
      maxPayloadLength: MAX_MESSAGE_BYTES,
      perMessageDeflate: false,
      // Liveness is the tunnel's own heartbeat; Bun's idle timer would cut quiet agents.
      idleTimeout: 0,
      sendPings: false,
      open(ws) {
        if (unauthenticated.size >= MAX_UNAUTHENTICATED) {
          const oldest = unauthenticated.values().next().value;
          if (oldest) refuse(oldest, Code.RATE_LIMITED, "too many unauthenticated connections");
        }
        unauthenticated.add(ws);
        ws.data.authTimer = setTimeout(() => {
          refuse(ws, Code.PROTOCOL_ERROR, `no ConnectRequest within ${AUTH_TIMEOUT_MS} ms`);
        }, AUTH_TIMEOUT_MS);
      },
      message(ws, message) {
        if (typeof message === "string") {
          if (ws.data.session) return ws.data.session.close(1003, "text frames are not part of the protocol");
          return refuse(ws, Code.PROTOCOL_ERROR, "text frames are not part of the protocol");
        }
        if (ws.data.session) ws.data.session.receive(message);
        else onFirstFrame(ws, message);
      },
      drain(ws) {
        ws.data.session?.drained();
      },
      close(ws) {
        clearTimeout(ws.data.authTimer);
        unauthenticated.delete(ws);
        ws.data.session?.closedByPeer();
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
