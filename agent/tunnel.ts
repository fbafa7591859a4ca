// One authenticated WebSocket to the gateway: it dispatches frames to the exchanges it carries,
// keeps the heartbeat, and watches the socket's buffered bytes (the client WebSocket has no drain
// event).

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
import { type ExchangeCarrier, LocalExchange } from "./exchange.ts";
import type { LocalPool } from "./local-pool.ts";
import { LocalWebSocket, type WebSocketCarrier } from "./websocket-bridge.ts";
import { WritableWatch } from "./writable-watch.ts";

/** A gateway silent for this many heartbeat intervals is considered gone (DESIGN §5). */
const MISSED_HEARTBEATS = 3;

export class TunnelConnection implements ExchangeCarrier, WebSocketCarrier {
  readonly exchanges = new Map<number, LocalExchange>();
  /** WebSocket streams: long-lived, so a graceful stop does not wait for them. */
  readonly websockets = new Map<number, LocalWebSocket>();
  readonly #ws: WebSocket;
  readonly #pool: LocalPool;
  /** Data frames wait while the socket is congested; control frames never do. */
  readonly #writable: WritableWatch;
  #heartbeat: Timer | undefined;
  #lastSeen = Date.now();
  #pingSeq = 0;
  #goingAway = false;
  #draining = false;
  #idleWaiters: (() => void)[] = [];
  /** Called once when the gateway announces it is going away (GoAway). */
  onGoAway: (() => void) | undefined;

  constructor(ws: WebSocket, pool: LocalPool) {
    this.#ws = ws;
    this.#pool = pool;
    this.#writable = new WritableWatch(() => ws);
  }

  get congested(): boolean {
    return this.#writable.congested;
  }

  get goingAway(): boolean {
    return this.#goingAway;
  }

  startHeartbeat(intervalMs: number): void {
    this.#heartbeat = setInterval(() => {
      const silence = Date.now() - this.#lastSeen;
      if (silence > intervalMs * MISSED_HEARTBEATS) {
        log.warn(`gateway silent for ${Math.round(silence / 1000)} s, reconnecting`);
        this.#ws.terminate();
        return;
      }
      this.#sendControl({ case: "ping", value: { seq: ++this.#pingSeq } });
    }, intervalMs);
  }

  send(frame: Uint8Array): boolean {
    if (this.#ws.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(frame);
    return true;
  }

  onWritable(wake: () => void): void {
    this.#writable.onWritable(wake);
  }

  whenWritable(): Promise<void> {
    return this.#writable.whenWritable();
  }

  forgetWebSocket(bridge: LocalWebSocket): void {
    this.websockets.delete(bridge.streamId);
  }

  forget(exchange: LocalExchange): void {
    this.exchanges.delete(exchange.streamId);
    if (this.exchanges.size === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  receive(frame: Uint8Array): void {
    this.#lastSeen = Date.now();
    let message: ReturnType<typeof decodeEnvelope> | undefined;
    try {
      message = decodeEnvelope(frame);
      this.#dispatch(message);
    } catch (error) {
      // A bad frame costs this connection; the agent reconnects rather than exiting.
      if (error instanceof ProtocolError) {
        log.error(`protocol error from the gateway, reconnecting: ${error.message}`);
        return this.#ws.close(1002, error.message.slice(0, 120));
      }
      // A bug met by one stream costs that stream; the others on this connection carry on.
      const streamId = message && envelopeStreamId(message);
      if (streamId !== undefined && this.#failStream(streamId, error)) return;
      logFault("gateway connection, reconnecting", error);
      this.#ws.close(1011, "internal error");
    }
  }

  #failStream(streamId: number, error: unknown): boolean {
    const exchange = this.exchanges.get(streamId);
    const bridge = this.websockets.get(streamId);
    if (exchange === undefined && bridge === undefined) return false;
    logFault(`stream ${streamId}`, error);
    this.send(encodeClose(streamId, TunnelClose_Reason.LOCAL_ERROR, "agent error"));
    exchange?.cancel();
    bridge?.cancel(1011, "agent error");
    return true;
  }

  /** Resolves once no exchange is left (for a graceful stop or a GOAWAY). */
  whenIdle(): Promise<void> {
    if (this.exchanges.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** The agent is stopping: new requests are refused (503 at the gateway), running ones go on. */
  drain(): void {
    this.#draining = true;
  }

  /** The socket closed: every exchange still running is dropped. */
  dispose(): void {
    clearInterval(this.#heartbeat);
    for (const exchange of [...this.exchanges.values()]) exchange.cancel();
    for (const bridge of [...this.websockets.values()]) bridge.cancel(1001, "tunnel closed");
    this.#writable.wakeAll();
  }

  #dispatch(message: ReturnType<typeof decodeEnvelope>): void {
    switch (message.case) {
      case "request": {
        if (this.#draining) {
          this.send(encodeClose(message.value.streamId, TunnelClose_Reason.SHUTTING_DOWN, "agent stopping"));
          return;
        }
        if (message.value.websocket) {
          const bridge = new LocalWebSocket(this, this.#pool.authority, message.value);
          this.websockets.set(bridge.streamId, bridge);
          bridge.start();
          return;
        }
        const exchange = new LocalExchange(this, this.#pool, message.value);
        this.exchanges.set(exchange.streamId, exchange);
        exchange.start().catch((error: unknown) => this.#failStream(exchange.streamId, error));
        return;
      }
      case "data":
        this.exchanges.get(message.value.streamId)?.onData(message.value);
        return;
      case "close":
        this.exchanges.get(message.value.streamId)?.cancel();
        this.websockets.get(message.value.streamId)?.cancel();
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
        throw new ProtocolError(`unexpected ${message.case} from the gateway`);
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
        this.exchanges.get(kind.value.streamId)?.onWindowUpdate(kind.value.increment);
        this.websockets.get(kind.value.streamId)?.onWindowUpdate(kind.value.increment);
        return;
      case "goAway":
        log.info(`gateway is going away: ${kind.value.message}`);
        this.#goingAway = true;
        this.onGoAway?.();
        return;
      default:
        throw new ProtocolError(`unexpected control ${kind.case ?? "message"} from the gateway`);
    }
  }

  #sendControl(kind: ControlInit): void {
    this.send(encodeControl(kind));
  }
}
