// A WebSocket upgrade on the ingress: the agent opens a WebSocket to the local service first; once
// it answers 101 the client is upgraded with the subprotocol the service accepted, and the two
// sockets are relayed message by message over one stream (shared/websocket-relay.ts).
import type { Server, ServerWebSocket, WebSocketHandler } from "bun";
import {
  type TunnelClose,
  TunnelClose_Reason,
  type TunnelResponse,
  type WebSocketClose,
  type WebSocketMessage,
} from "../shared/gen/tunnel_pb.ts";
import { encodeClose, encodeEnvelope, INITIAL_WINDOW, MAX_WEBSOCKET_MESSAGE } from "../shared/protocol.ts";
import {
  type LocalSocket,
  type RelayCarrier,
  TUNNEL_FAILURE_CODE,
  WebSocketRelay,
} from "../shared/websocket-relay.ts";
import { DrainGate } from "./drain-gate.ts";
import { type IngressError, ingressError } from "./errors.ts";
import { CLOSE_STATUS } from "./inflight.ts";

/** What a bridge needs from the agent connection that carries it. */
export interface BridgeCarrier extends RelayCarrier {
  /** Called once when the bridge is over, however it ended. */
  forget(bridge: WebSocketBridge): void;
}

/** What an ingress WebSocket relays to: a stream to a local agent, or another gateway. */
export interface IngressSocketData {
  attach(ws: IngressSocket): void;
  forward(message: string | Uint8Array): void;
  drained(): void;
  closedByClient(code: number, reason: string): void;
}

export type IngressSocket = ServerWebSocket<IngressSocketData>;

export interface UpgradeInit {
  requestId: string;
  /** End-to-end request headers, Sec-WebSocket-Protocol included. */
  headers: { name: string; value: string }[];
}

/** What the session offers to open a bridge on it. */
export interface BridgeSession {
  openWebSocket(requestId: string, handshakeTimeoutMs: number): WebSocketBridge;
  send(frame: Uint8Array): boolean;
}

export function wantsWebSocket(req: Request): boolean {
  return req.headers.get("upgrade")?.toLowerCase() === "websocket";
}

/**
 * Asks the agent to open the local WebSocket, then upgrades the client. Resolves undefined once
 * upgraded (Bun answers 101 itself), or with the answer to give instead: the service's refusal,
 * or the tunnel's error.
 */
export async function upgradeThroughTunnel(
  req: Request,
  server: Server<IngressSocketData>,
  session: BridgeSession,
  init: UpgradeInit,
  handshakeTimeoutMs: number,
): Promise<Response | undefined> {
  const bridge = session.openWebSocket(init.requestId, handshakeTimeoutMs);
  req.signal.addEventListener("abort", () => bridge.cancel(), { once: true });
  session.send(
    encodeEnvelope({
      case: "request",
      value: {
        streamId: bridge.streamId,
        requestId: init.requestId,
        method: req.method,
        path: pathAndQuery(req.url),
        headers: init.headers,
        endStream: true,
        window: INITIAL_WINDOW,
        websocket: true,
      },
    }),
  );
  const refusal = await bridge.answered;
  if (refusal !== null) return refusal;
  const headers: Record<string, string> = { "x-request-id": init.requestId };
  if (bridge.protocol !== "") headers["sec-websocket-protocol"] = bridge.protocol;
  if (server.upgrade(req, { data: bridge, headers })) return undefined;
  bridge.cancel();
  return ingressError("bad_request", "not a valid WebSocket upgrade").toResponse(init.requestId);
}

/** The ingress server's `websocket` handler: every event goes to the socket's bridge. */
export const websocketHandler: WebSocketHandler<IngressSocketData> = {
  // The peer's relay reassembles up to this much per message; so does Bun for the client.
  maxPayloadLength: MAX_WEBSOCKET_MESSAGE,
  open: (ws) => ws.data.attach(ws),
  message: (ws, message) => ws.data.forward(message),
  drain: (ws) => ws.data.drained(),
  close: (ws, code, reason) => ws.data.closedByClient(code, reason),
};

/** One client WebSocket on the ingress and its stream to the agent. */
export class WebSocketBridge implements LocalSocket, IngressSocketData {
  readonly streamId: number;
  readonly requestId: string;
  readonly startedAt = performance.now();
  /** The subprotocol the local service accepted; "" for none. */
  protocol = "";

  readonly #carrier: BridgeCarrier;
  readonly #answer = Promise.withResolvers<Response | null>();
  #handshakeTimer: Timer | undefined;
  #relay: WebSocketRelay | null = null;
  #ws: IngressSocket | null = null;
  readonly #gate = new DrainGate();
  #finished = false;

  constructor(carrier: BridgeCarrier, streamId: number, requestId: string, handshakeTimeoutMs: number) {
    this.#carrier = carrier;
    this.streamId = streamId;
    this.requestId = requestId;
    this.#handshakeTimer = setTimeout(() => {
      this.#sendClose(TunnelClose_Reason.TIMEOUT, "no WebSocket handshake in time");
      this.#refuse(ingressError("timeout"));
    }, handshakeTimeoutMs);
  }

  /** Resolves null once the agent's WebSocket is open, or with the answer to give instead. */
  get answered(): Promise<Response | null> {
    return this.#answer.promise;
  }

  // --- frames from the agent -----------------------------------------------------------------

  onResponse(message: TunnelResponse): void {
    if (this.#finished) return;
    clearTimeout(this.#handshakeTimer);
    if (this.#relay !== null)
      return this.#relay.fail(TunnelClose_Reason.PROTOCOL_ERROR, "second response head");
    if (message.status !== 101) return this.#refuse(passThrough(message, this.requestId));
    this.protocol = message.headers.find((h) => h.name === "sec-websocket-protocol")?.value ?? "";
    this.#relay = new WebSocketRelay(this.#carrier, {
      streamId: this.streamId,
      sendWindow: INITIAL_WINDOW + message.window,
      receiveWindow: INITIAL_WINDOW,
      onFinished: () => this.#finish(),
    });
    this.#answer.resolve(null);
  }

  get logName(): string {
    return `request ${this.requestId}`;
  }

  onWebSocketMessage(message: WebSocketMessage): void {
    this.#relay?.onMessage(message);
  }

  onWebSocketClose(message: WebSocketClose): void {
    this.#relay?.onClose(message);
  }

  onWindowUpdate(increment: number): void {
    this.#relay?.sendWindow.grant(increment);
  }

  /** The agent ended the stream abnormally (local socket failed, protocol error). */
  onClose(message: TunnelClose): void {
    const error = ingressError(CLOSE_STATUS[message.reason] ?? "agent_error", message.message);
    if (this.#relay === null) return this.#refuse(error);
    this.#relay.abort(TUNNEL_FAILURE_CODE, closeReason(error));
  }

  /** The gateway's own code failed on this stream. */
  fault(): void {
    this.fail(ingressError("gateway_error"));
  }

  /** The session is gone: a 502 before the upgrade, a 1011 close after it. */
  fail(error: IngressError): void {
    if (this.#relay === null) return this.#refuse(error);
    this.#relay.abort(TUNNEL_FAILURE_CODE, closeReason(error));
  }

  /** The client went away before its socket was upgraded: the agent drops the local socket. */
  cancel(): void {
    if (this.#finished || this.#ws !== null) return;
    if (this.#relay !== null) return this.#relay.fail(TunnelClose_Reason.CANCELLED, "client went away");
    this.#sendClose(TunnelClose_Reason.CANCELLED, "client went away");
    // nginx's "client closed request", for the log: nobody is left to read it.
    this.#refuse(new Response(null, { status: 499 }));
  }

  // --- events of the client's socket ---------------------------------------------------------

  attach(ws: IngressSocket): void {
    this.#ws = ws;
    const relay = this.#relay;
    if (relay === null || relay.finished) return ws.close(TUNNEL_FAILURE_CODE, "the tunnel stream ended");
    relay.attach(this);
  }

  forward(message: string | Uint8Array): void {
    this.#relay?.forward(message);
  }

  drained(): void {
    this.#gate.drained();
  }

  closedByClient(code: number, reason: string): void {
    this.#ws = null;
    this.#relay?.localClosed(code, reason);
    this.drained();
  }

  // --- LocalSocket, for the relay ------------------------------------------------------------

  // send() returns -1 when Bun queued the message (wait for drain) and 0 when it dropped it: a
  // lost message would corrupt the conversation, so the socket and the stream go.
  send(message: string | Uint8Array): boolean {
    const ws = this.#ws;
    if (ws === null) return true;
    const result = typeof message === "string" ? ws.sendText(message) : ws.sendBinary(message);
    if (result === 0) {
      this.#relay?.fail(TunnelClose_Reason.CANCELLED, "client send buffer overflow");
      return true;
    }
    this.#gate.sent(result);
    return result !== -1;
  }

  whenWritable(): Promise<void> {
    if (!this.#gate.full || this.#ws === null) return Promise.resolve();
    return new Promise((resolve) => this.#gate.onDrain(resolve));
  }

  pause(): void {
    this.#ws?.pause();
  }

  resume(): void {
    this.#ws?.resume();
  }

  // 1006 means the other end vanished without a close frame: the client sees the same.
  close(code: number, reason: string): void {
    if (code === 1006) this.#ws?.terminate();
    else this.#ws?.close(code, reason);
  }

  // --- ending --------------------------------------------------------------------------------

  #refuse(answer: Response | IngressError): void {
    if (this.#finished) return;
    this.#answer.resolve(answer instanceof Response ? answer : answer.toResponse(this.requestId));
    this.#finish();
  }

  #sendClose(reason: TunnelClose_Reason, message: string): void {
    this.#carrier.send(encodeClose(this.streamId, reason, message));
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#handshakeTimer);
    this.drained();
    this.#carrier.forget(this);
  }
}

/** A close reason is at most 123 bytes: the error's code says enough ("agent disconnected"). */
function closeReason(error: IngressError): string {
  return error.code.replaceAll("_", " ");
}

function pathAndQuery(href: string): string {
  const url = new URL(href);
  return url.pathname + url.search;
}

/** The local service refused the upgrade: the client sees its status (the body stays behind). */
function passThrough(message: TunnelResponse, requestId: string): Response | IngressError {
  if (message.status < 200 || message.status > 599) {
    return ingressError("agent_error", `status ${message.status} for a WebSocket upgrade`);
  }
  const headers = new Headers();
  for (const h of message.headers) headers.append(h.name, h.value);
  headers.set("x-request-id", requestId);
  const empty = message.status === 204 || message.status === 304;
  return new Response(empty ? null : message.body.slice(), { status: message.status, headers });
}
