// One WebSocket stream on the agent: for a client's upgrade, a WebSocket opened to the local
// service; 101 goes back once it is open, then messages are relayed both ways
// (shared/websocket-relay.ts).
import {
  TunnelClose_Reason,
  type TunnelRequest,
  type WebSocketClose,
  type WebSocketMessage,
} from "../shared/gen/tunnel_pb.ts";
import { endToEndHeaders } from "../shared/headers.ts";
import { encodeClose, encodeEnvelope, headerPairs, INITIAL_WINDOW } from "../shared/protocol.ts";
import {
  type LocalSocket,
  type RelayCarrier,
  TUNNEL_FAILURE_CODE,
  WebSocketRelay,
} from "../shared/websocket-relay.ts";
import { LOCAL_CONNECT_TIMEOUT_MS } from "./local-pool.ts";
import { validateRequest } from "./request-head.ts";
import { WritableWatch } from "./writable-watch.ts";

/** What a WebSocket stream needs from the tunnel connection that carries it. */
export interface WebSocketCarrier extends RelayCarrier {
  forget(bridge: LocalWebSocket): void;
}

/** Bun's client sets these itself (key, version, extensions; protocols as an option). */
const HANDSHAKE_HEADER = /^sec-websocket-/;

/** Bun's error text for a refused upgrade carries the service's status, nothing else does. */
const REFUSED_STATUS = /Expected 101 status code: (\d{3})/;

export class LocalWebSocket implements LocalSocket {
  readonly streamId: number;
  readonly #carrier: WebSocketCarrier;
  readonly #relayCarrier: RelayCarrier;
  readonly #request: TunnelRequest;
  readonly #origin: string;
  #ws: WebSocket | null = null;
  #relay: WebSocketRelay | null = null;
  #connectTimer: Timer | undefined;
  #error = "";
  /** While the local socket is backed up, messages from the gateway wait, and so does their credit. */
  readonly #writable = new WritableWatch(() => this.#ws);
  #finished = false;

  /** `origin` is the local service's `host:port`. */
  constructor(carrier: WebSocketCarrier, origin: string, request: TunnelRequest) {
    this.#carrier = carrier;
    this.#relayCarrier = {
      send: (frame) => carrier.send(frame),
      sendCredit: (streamId, increment) => carrier.sendCredit(streamId, increment),
      whenWritable: () => carrier.whenWritable(),
    };
    this.#origin = origin;
    this.#request = request;
    this.streamId = request.streamId;
  }

  /** Validates the request and opens the local WebSocket; nothing invalid reaches the service. */
  start(): void {
    const request = this.#request;
    const pairs = endToEndHeaders(headerPairs(request.headers));
    const headers = pairs.filter(([name]) => !HANDSHAKE_HEADER.test(name));
    const invalid = validateRequest(request.method, request.path, pairs);
    if (invalid !== null) return this.#refuse(TunnelClose_Reason.BAD_REQUEST, invalid);
    const protocols = pairs
      .filter(([name]) => name === "sec-websocket-protocol")
      .flatMap(([, value]) => value.split(","))
      .map((p) => p.trim())
      .filter((p) => p !== "");
    let ws: WebSocket;
    try {
      // The origin is fixed and the path starts with "/": the request cannot pick another host.
      ws = new WebSocket(`ws://${this.#origin}${request.path}`, {
        headers,
        protocols,
        perMessageDeflate: false,
      });
    } catch (error) {
      return this.#refuse(TunnelClose_Reason.BAD_REQUEST, (error as Error).message);
    }
    this.#ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.#opened(ws);
    ws.onmessage = (event) => {
      const data = event.data as string | ArrayBuffer;
      this.#relay?.forward(typeof data === "string" ? data : new Uint8Array(data));
    };
    ws.onerror = (event) => {
      this.#error = (event as ErrorEvent).message ?? "";
    };
    ws.onclose = (event) => this.#closed(event.code, event.reason);
    this.#connectTimer = setTimeout(() => {
      this.#refuse(TunnelClose_Reason.TIMEOUT, "the local WebSocket did not open in time");
    }, LOCAL_CONNECT_TIMEOUT_MS);
  }

  // --- frames from the gateway ---------------------------------------------------------------

  onWebSocketMessage(message: WebSocketMessage): void {
    this.#relay?.onMessage(message);
  }

  onWebSocketClose(message: WebSocketClose): void {
    this.#relay?.onClose(message);
  }

  onWindowUpdate(increment: number): void {
    this.#relay?.sendWindow.grant(increment);
  }

  /** The stream ended without a closing handshake (client gone, tunnel lost): drop the socket. */
  /** The gateway ended the stream. */
  onClose(): void {
    this.cancel();
  }

  /** This side's code failed on the stream. */
  fault(): void {
    this.cancel(TUNNEL_FAILURE_CODE, "agent error");
  }

  cancel(code = TUNNEL_FAILURE_CODE, reason = "the tunnel stream ended"): void {
    if (this.#finished) return;
    if (this.#relay !== null) return this.#relay.abort(code, reason);
    this.#ws?.terminate();
    this.#finish();
  }

  // --- LocalSocket, for the relay ------------------------------------------------------------

  send(message: string | Uint8Array): boolean {
    const ws = this.#ws;
    if (ws === null || ws.readyState !== WebSocket.OPEN) return true;
    ws.send(message);
    return !this.#writable.congested;
  }

  whenWritable(): Promise<void> {
    return this.#writable.whenWritable();
  }

  pause(): void {
    this.#ws?.pause();
  }

  resume(): void {
    this.#ws?.resume();
  }

  // 1006 means the client vanished without a close frame: the service sees the same. Codes a
  // client may not send (1005, 1015) and oversized reasons make close() throw: close plainly.
  close(code: number, reason: string): void {
    const ws = this.#ws;
    if (ws === null) return;
    if (code === 1006) return ws.terminate();
    try {
      ws.close(code, reason);
    } catch {
      ws.close();
    }
  }

  // --- local socket events -------------------------------------------------------------------

  #opened(ws: WebSocket): void {
    if (this.#finished) return ws.terminate();
    clearTimeout(this.#connectTimer);
    const headers = ws.protocol === "" ? [] : [{ name: "sec-websocket-protocol", value: ws.protocol }];
    this.#carrier.send(
      encodeEnvelope({
        case: "response",
        value: { streamId: this.streamId, status: 101, headers, endStream: false, window: 0 },
      }),
    );
    this.#relay = new WebSocketRelay(this.#relayCarrier, {
      streamId: this.streamId,
      sendWindow: this.#request.window,
      receiveWindow: INITIAL_WINDOW,
      onFinished: () => this.#finish(),
    });
    this.#relay.attach(this);
  }

  #closed(code: number, reason: string): void {
    this.#writable.wakeAll();
    if (this.#relay !== null) return this.#relay.localClosed(code, reason);
    if (this.#finished) return;
    // Closed before it opened: the upgrade failed.
    const status = REFUSED_STATUS.exec(this.#error)?.[1];
    if (status === undefined) {
      const unreachable = /connect/i.test(this.#error);
      return this.#refuse(
        unreachable ? TunnelClose_Reason.LOCAL_UNREACHABLE : TunnelClose_Reason.LOCAL_ERROR,
        this.#error || `closed with ${code} before the handshake completed`,
      );
    }
    this.#carrier.send(
      encodeEnvelope({
        case: "response",
        value: {
          streamId: this.streamId,
          status: Number(status),
          headers: [{ name: "content-type", value: "text/plain; charset=utf-8" }],
          body: new TextEncoder().encode(`the local service refused the WebSocket upgrade (${status})\n`),
          endStream: true,
        },
      }),
    );
    this.#finish();
  }

  #refuse(reason: TunnelClose_Reason, message: string): void {
    if (this.#finished) return;
    this.#carrier.send(encodeClose(this.streamId, reason, message));
    this.#ws?.terminate();
    this.#finish();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#connectTimer);
    this.#writable.wakeAll();
    this.#carrier.forget(this);
  }
}
