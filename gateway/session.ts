// One authenticated agent connection: the streams multiplexed over it, its liveness, and the
// WebSocket's own backpressure.
import type { ServerWebSocket } from "bun";
import { logFault } from "../shared/fault.ts";
import { type ControlMessage, TunnelClose_Reason } from "../shared/gen/tunnel_pb.ts";
import { log } from "../shared/log.ts";
import {
  type ControlInit,
  decodeEnvelope,
  encodeClose,
  encodeControl,
  envelopeStreamId,
  ProtocolError,
} from "../shared/protocol.ts";
import { ingressError } from "./errors.ts";
import { GatewayStream, type StreamCarrier, type StreamInit } from "./inflight.ts";
import { type BridgeCarrier, WebSocketBridge } from "./websocket-bridge.ts";

export interface SessionInfo {
  agentId: string;
  token: string;
  remoteAddress: string;
  agentVersion: string;
}

/** The WebSocket with whatever per-connection state the listener keeps on it. */
export type AgentSocket = ServerWebSocket<unknown>;

export class AgentSession implements StreamCarrier, BridgeCarrier {
  readonly id = crypto.randomUUID();
  readonly info: SessionInfo;
  readonly connectedAt = Date.now();
  lastSeen = Date.now();
  bytesIn = 0;
  bytesOut = 0;
  /** Set while a newer session for the same id waits to hear whether this one is still alive. */
  probeDeadline = 0;
  readonly streams = new Map<number, GatewayStream>();
  /** WebSocket streams, apart from HTTP ones: they share the stream ids, not the lifecycle. */
  readonly websockets = new Map<number, WebSocketBridge>();

  readonly #ws: AgentSocket;
  #nextStreamId = 1;
  #pingSeq = 0;
  #closed = false;
  #congested = false;
  #drainWaiters: (() => void)[] = [];
  #onClosed: (session: AgentSession) => void;

  constructor(ws: AgentSocket, info: SessionInfo, onClosed: (session: AgentSession) => void) {
    this.#ws = ws;
    this.info = info;
    this.#onClosed = onClosed;
  }

  get closed(): boolean {
    return this.#closed;
  }

  openStream(init: Omit<StreamInit, "streamId">): GatewayStream {
    const streamId = this.#allocateStreamId();
    const stream = new GatewayStream(this, { ...init, streamId });
    this.streams.set(streamId, stream);
    return stream;
  }

  // Server send() returns -1 when Bun queued the frame (wait for drain) and 0 when it dropped
  // it for good: a dropped frame would corrupt a stream, so the connection goes.
  send(frame: Uint8Array): boolean {
    if (this.#closed) return false;
    const result = this.#ws.send(frame);
    if (result === 0) {
      this.close(1011, "send buffer overflow");
      return false;
    }
    if (result === -1) this.#congested = true;
    this.bytesOut += frame.byteLength;
    return true;
  }

  whenWritable(): Promise<void> {
    if (!this.#congested || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  openWebSocket(requestId: string, handshakeTimeoutMs: number): WebSocketBridge {
    const streamId = this.#allocateStreamId();
    const bridge = new WebSocketBridge(this, streamId, requestId, handshakeTimeoutMs);
    this.websockets.set(streamId, bridge);
    return bridge;
  }

  forgetWebSocket(bridge: WebSocketBridge): void {
    this.websockets.delete(bridge.streamId);
  }

  forget(stream: GatewayStream): void {
    this.streams.delete(stream.streamId);
  }

  /** Called by the listener for each binary message of this connection. */
  receive(frame: Uint8Array): void {
    this.lastSeen = Date.now();
    this.probeDeadline = 0;
    this.bytesIn += frame.byteLength;
    let message: ReturnType<typeof decodeEnvelope> | undefined;
    try {
      message = decodeEnvelope(frame);
      this.#dispatch(message);
    } catch (error) {
      // Whatever one agent's frames trigger costs that agent its connection, never the gateway.
      if (error instanceof ProtocolError) {
        log.warn(`agent ${this.info.agentId}: protocol error, closing: ${error.message}`);
        return this.close(1002, error.message.slice(0, 120));
      }
      // A bug met by one stream costs that stream; the session's other streams carry on.
      const streamId = message && envelopeStreamId(message);
      if (streamId !== undefined && this.#failStream(streamId, error)) return;
      logFault(`agent ${this.info.agentId} session ${this.id}, closing it`, error);
      this.close(1011, "internal error");
    }
  }

  #failStream(streamId: number, error: unknown): boolean {
    const stream = this.streams.get(streamId) ?? this.websockets.get(streamId);
    if (stream === undefined) return false;
    logFault(
      `agent ${this.info.agentId} session ${this.id} stream ${streamId} (request ${stream.requestId})`,
      error,
    );
    this.send(encodeClose(streamId, TunnelClose_Reason.PROTOCOL_ERROR, "gateway error"));
    stream.fail(ingressError("gateway_error"));
    return true;
  }

  drained(): void {
    this.#congested = false;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const wake of waiters) wake();
  }

  ping(): void {
    this.#sendControl({ case: "ping", value: { seq: ++this.#pingSeq } });
  }

  sendGoAway(message: string): void {
    this.#sendControl({ case: "goAway", value: { message } });
  }

  close(code: number, reason: string): void {
    if (this.#closed) return;
    this.#ws.close(code, reason);
    this.closedByPeer();
  }

  /** The socket is gone (either side closed it): every stream still open ends with 502. */
  closedByPeer(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.drained();
    for (const stream of [...this.streams.values()]) stream.fail(ingressError("agent_disconnected"));
    for (const bridge of [...this.websockets.values()]) bridge.fail(ingressError("agent_disconnected"));
    this.websockets.clear();
    this.streams.clear();
    this.#onClosed(this);
  }

  #dispatch(message: ReturnType<typeof decodeEnvelope>): void {
    switch (message.case) {
      case "response":
        this.streams.get(message.value.streamId)?.onResponse(message.value);
        this.websockets.get(message.value.streamId)?.onResponse(message.value);
        return;
      case "data":
        this.streams.get(message.value.streamId)?.onData(message.value);
        return;
      case "close":
        this.streams.get(message.value.streamId)?.onClose(message.value);
        this.websockets.get(message.value.streamId)?.onClose(message.value);
        return;
      case "websocketMessage":
        this.websockets.get(message.value.streamId)?.onMessage(message.value);
        return;
      case "websocketClose":
        this.websockets.get(message.value.streamId)?.onWebSocketClose(message.value);
        return;
      case "control":
        return this.#onControl(message.value);
      default:
        throw new ProtocolError(`unexpected ${message.case} from an agent`);
    }
  }

  #onControl(control: ControlMessage): void {
    const kind = control.kind;
    switch (kind.case) {
      case "ping":
        return this.#sendControl({ case: "pong", value: { seq: kind.value.seq } });
      case "pong":
        return;
      case "windowUpdate":
        this.streams.get(kind.value.streamId)?.sendWindow.grant(kind.value.increment);
        this.websockets.get(kind.value.streamId)?.onWindowUpdate(kind.value.increment);
        return;
      default:
        throw new ProtocolError(`unexpected control ${kind.case ?? "message"} from an agent`);
    }
  }

  #sendControl(kind: ControlInit): void {
    this.send(encodeControl(kind));
  }

  // Stream ids wrap within uint32 and skip ids still in use, so a long-lived session never
  // runs out and never reuses a live id.
  #allocateStreamId(): number {
    let id = this.#nextStreamId;
    while (this.streams.has(id) || this.websockets.has(id)) id = id >= 0xffffffff ? 1 : id + 1;
    this.#nextStreamId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }
}
