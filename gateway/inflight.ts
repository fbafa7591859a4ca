// One HTTP exchange in flight on the gateway: the request body going to the agent under the
// agent's credit, and the response coming back as a Response whose body is written straight to
// the client's socket as it arrives.

import { ReceiveWindow, SendWindow, type WindowBudget } from "../shared/flow.ts";
import {
  type TunnelClose,
  TunnelClose_Reason,
  type TunnelData,
  type TunnelResponse,
} from "../shared/gen/tunnel_pb.ts";
import { endToEndHeaders } from "../shared/headers.ts";
import { encodeClose, keepable, MAX_FRAME_PAYLOAD } from "../shared/protocol.ts";
import { streamStats } from "../shared/stream-stats.ts";
import { type IngressError, ingressError } from "./errors.ts";
import type { Capture } from "./inspect/capture.ts";

/** What a stream needs from the agent connection that carries it. */
export interface StreamCarrier {
  /** Sends one encoded Envelope; false when the connection is gone. */
  send(frame: Uint8Array): boolean;
  /** Sends request-body bytes (encoded when the turn's frames are written). */
  sendData(streamId: number, payload: Uint8Array, endStream: boolean): boolean;
  /** Returns credit to the agent (merged with other streams' in one frame). */
  sendCredit(streamId: number, increment: number): void;
  /** What the connection's streams share to grow their receive windows. */
  readonly budget: WindowBudget;
  /** Resolves when the connection accepts more data frames (WebSocket backpressure). */
  whenWritable(): Promise<void>;
  /** Called once when the stream is finished, however it ended. */
  forget(stream: GatewayStream): void;
  /** The agent refused a request because it is stopping: it takes no more. */
  agentStopping(): void;
}

export interface StreamInit {
  streamId: number;
  requestId: string;
  /** Credit the agent grants for request-body bytes before its first window update. */
  sendWindow: number;
  /** Credit this side grants for response-body bytes. */
  receiveWindow: number;
  /** The service's silence allowed once it has the whole request (or stops taking its body). */
  headTimeoutMs: number;
  /** A stream with no body bytes either way for this long is cut; 0 never. */
  idleTimeoutMs: number;
}

/** How the agent's TunnelClose reasons reach the client (WebSocket upgrades use it too). */
export const CLOSE_STATUS: Record<number, IngressError["code"]> = {
  [TunnelClose_Reason.LOCAL_UNREACHABLE]: "local_unreachable",
  [TunnelClose_Reason.LOCAL_ERROR]: "local_error",
  [TunnelClose_Reason.BAD_REQUEST]: "bad_request",
  [TunnelClose_Reason.TIMEOUT]: "local_timeout",
  [TunnelClose_Reason.SHUTTING_DOWN]: "agent_shutting_down",
};

export class GatewayStream {
  readonly streamId: number;
  readonly requestId: string;
  readonly startedAt = performance.now();
  readonly sendWindow: SendWindow;
  readonly receiveWindow: ReceiveWindow;
  /** Response-body bytes delivered to the client, for the access log. */
  bytesOut = 0;
  status = 0;
  /**
   * Set when the agent declined the request, stopping, before it ran it: another session may
   * take it (the ingress sends it again when it still has the body).
   */
  declined = false;
  /** The gateway's own error code when it ended the stream, else "". */
  error = "";
  /** Set when the inspector records this exchange. */
  capture: Capture | undefined;
  /** Called once when the stream is over, body included (the access log and metrics). */
  onFinished: ((stream: GatewayStream) => void) | undefined;

  readonly #carrier: StreamCarrier;
  readonly #head = Promise.withResolvers<Response>();
  #headTimer: Timer | undefined;
  readonly #headTimeoutMs: number;
  #idleTimer: Timer | undefined;
  readonly #idleTimeoutMs: number;
  #chunks: Uint8Array[] = [];
  #ended = false;
  /** The client's socket as Bun gives it to a direct stream, once it wants the body. */
  #sink: ReadableStreamDirectController | null = null;
  /** Set while the client's socket is full: a write is waiting for it to drain. */
  #sinkFull = false;
  /** Why the body was cut, once it was. */
  #cutBy: IngressError | null = null;
  #finished = false;

  constructor(carrier: StreamCarrier, init: StreamInit) {
    this.#carrier = carrier;
    this.streamId = init.streamId;
    this.requestId = init.requestId;
    this.sendWindow = new SendWindow(init.sendWindow);
    this.receiveWindow = new ReceiveWindow(
      init.receiveWindow,
      (increment) => this.#carrier.sendCredit(this.streamId, increment),
      carrier.budget,
    );
    this.#headTimeoutMs = init.headTimeoutMs;
    this.#idleTimeoutMs = init.idleTimeoutMs;
    streamStats.opened();
    // A client that opens a request and then sends nothing is cut like any other quiet stream.
    this.#touch();
  }

  /** Resolves with the client's Response: the agent's, or an error answer from the gateway. */
  get response(): Promise<Response> {
    return this.#head.promise;
  }

  get finished(): boolean {
    return this.#finished;
  }

  get logName(): string {
    return `request ${this.requestId}`;
  }

  onWindowUpdate(increment: number): void {
    this.sendWindow.grant(increment);
  }

  /** The gateway's own code failed on this stream. */
  fault(): void {
    this.fail(ingressError("gateway_error"));
  }

  /**
   * The whole request is with the agent: from now on the service's silence counts against
   * `--request-timeout`. Before this, a slow upload is the client's time, not the service's.
   */
  requestSent(): void {
    this.capture?.requestSent();
    this.#waitForHead();
  }

  onResponse(message: TunnelResponse): void {
    clearTimeout(this.#headTimer);
    if (this.status !== 0) return this.#protocolViolation("second response head");
    const headers = responseHeaders(message);
    if (typeof headers === "string") return this.#protocolViolation(headers);
    this.status = message.status;
    if (message.window > 0) this.sendWindow.grant(message.window);
    headers.set("x-request-id", this.requestId);
    this.capture?.responseHead(message.headers);
    if (message.body.byteLength > 0) this.capture?.responseBody(message.body);
    if (message.endStream) {
      this.bytesOut = message.body.byteLength;
      this.#head.resolve(
        new Response(nullBodyStatus(message.status) ? null : message.body, {
          status: message.status,
          headers,
        }),
      );
      return this.#finish();
    }
    if (message.body.byteLength > 0) this.#accept(message.body);
    this.#touch();
    this.#head.resolve(new Response(this.#bodyStream(), { status: message.status, headers }));
  }

  onData(message: TunnelData): void {
    if (this.status === 0) return this.#protocolViolation("data before the response head");
    if (message.payload.byteLength > 0) {
      this.capture?.responseBody(message.payload);
      this.#accept(message.payload);
    }
    this.#touch();
    if (message.endStream) {
      this.#ended = true;
      this.#writeToClient();
    }
  }

  onClose(message: TunnelClose): void {
    if (message.reason === TunnelClose_Reason.SHUTTING_DOWN) this.#carrier.agentStopping();
    const code = CLOSE_STATUS[message.reason] ?? "agent_error";
    this.fail(ingressError(code, message.message));
  }

  /** Ends the stream with an error: an error answer before the head, a broken body after it. */
  fail(error: IngressError): void {
    if (this.#finished) return;
    clearTimeout(this.#headTimer);
    this.sendWindow.close();
    this.error = error.code;
    if (this.status === 0) {
      this.status = error.status;
      this.declined = error.code === "agent_shutting_down";
      const response = error.toResponse(this.requestId);
      this.capture?.responseHead(response.headers);
      this.capture?.responseBody(new TextEncoder().encode(error.text));
      this.#head.resolve(response);
      return this.#finish();
    }
    // The whole body has arrived: the client may still read it to the end.
    if (this.#ended) return;
    this.#cutBody(error);
  }

  // Error the body now rather than at the next write: a client that stopped reading must not
  // keep the stream (and its buffered window) alive.
  #cutBody(error: IngressError): void {
    this.#cutBy = error;
    this.#finish();
    this.#sink?.close(error);
  }

  /** The client went away: tell the agent to drop the local exchange. */
  cancel(): void {
    if (this.#finished) return;
    this.#sendClose(TunnelClose_Reason.CANCELLED, "client went away");
    this.sendWindow.close();
    // Nobody reads this answer, but Bun's handler must settle, and the access log shows why.
    this.error = "client_closed";
    if (this.status === 0) {
      const error = ingressError("client_closed");
      this.status = error.status;
      this.#head.resolve(error.toResponse(this.requestId));
    }
    this.#finish();
  }

  /** Streams the client's request body to the agent, never ahead of the agent's credit. */
  async pumpRequestBody(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    try {
      for (;;) {
        await this.#whenCredit();
        if (this.#finished) break;
        const { value, done } = await reader.read();
        if (done) {
          this.#sendData(new Uint8Array(0), true);
          this.requestSent();
          return;
        }
        this.capture?.requestBody(value);
        if (!(await this.#sendUnderCredit(value))) break;
      }
      await reader.cancel();
    } catch (error) {
      if (this.#finished) return;
      // The client sent a body Bun could not read: the exchange cannot complete, and the agent
      // drops it.
      this.#sendClose(TunnelClose_Reason.CANCELLED, "request body could not be read");
      this.fail(ingressError("client_error", (error as Error)?.message ?? String(error)));
    }
  }

  async #sendUnderCredit(bytes: Uint8Array): Promise<boolean> {
    let offset = 0;
    while (offset < bytes.byteLength) {
      await this.#whenCredit();
      await this.#carrier.whenWritable();
      const credit = this.sendWindow.available;
      if (credit <= 0 || this.#finished) return false;
      const n = Math.min(bytes.byteLength - offset, credit, MAX_FRAME_PAYLOAD);
      this.sendWindow.spend(n);
      this.#sendData(bytes.subarray(offset, offset + n), false);
      this.#touch();
      offset += n;
    }
    return true;
  }

  // While the agent grants no credit, the service is not taking the body: that silence counts
  // as waiting for the head (a service that answers before reading the whole body answers here).
  async #whenCredit(): Promise<void> {
    if (this.sendWindow.available > 0) return;
    this.#waitForHead();
    await this.sendWindow.whenOpen();
    if (this.status === 0 && !this.#finished) {
      clearTimeout(this.#headTimer);
      this.#headTimer = undefined;
    }
  }

  #waitForHead(): void {
    if (this.status !== 0 || this.#finished || this.#headTimer !== undefined) return;
    this.#headTimer = setTimeout(() => this.#timeout(), this.#headTimeoutMs);
  }

  #sendData(payload: Uint8Array, endStream: boolean): void {
    this.#carrier.sendData(this.streamId, payload, endStream);
  }

  #accept(payload: Uint8Array): void {
    if (!this.receiveWindow.receive(payload.byteLength)) {
      return this.#protocolViolation("response body beyond the granted window");
    }
    this.#chunks.push(this.#sink === null || this.#sinkFull ? keepable(payload) : payload);
    streamStats.buffered(this.receiveWindow.buffered);
    this.#writeToClient();
  }

  // A direct stream: Bun calls pull() once and the body is written as frames arrive, with no
  // queue, promise or buffer transfer per chunk.
  #bodyStream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      type: "direct",
      pull: (sink) => {
        this.#sink = sink;
        // Cut before Bun asked for the body: the client must see it broken, not wait on it.
        if (this.#cutBy !== null) return sink.close(this.#cutBy);
        this.#writeToClient();
      },
      cancel: () => this.cancel(),
    });
  }

  // Credit goes back once Bun has taken the bytes. When the client's socket is full, write()
  // answers with a promise and nothing more is written (nor credited) until it drains: a slow
  // client stalls its own stream at one window and nothing more.
  #writeToClient(): void {
    const sink = this.#sink;
    if (sink === null || this.#sinkFull || this.#finished) return;
    for (let chunk = this.#chunks.shift(); chunk !== undefined; chunk = this.#chunks.shift()) {
      const size = chunk.byteLength;
      const written = sink.write(chunk);
      this.bytesOut += size;
      this.receiveWindow.handedOn(size);
      this.#touch();
      if (typeof written !== "number") {
        this.#sinkFull = true;
        written.then(
          () => {
            this.#sinkFull = false;
            this.#writeToClient();
          },
          () => this.cancel(),
        );
        return;
      }
    }
    if (this.#ended) {
      // Finished first: Bun ignores server.timeout() for a request whose response has ended,
      // and the access log's hook restores the send timeout.
      this.#finish();
      sink.close();
    }
  }

  #timeout(): void {
    this.#sendClose(TunnelClose_Reason.TIMEOUT, "no response headers in time");
    this.fail(ingressError("timeout"));
  }

  // Re-arming one timer per frame is cheaper than a sweep over all streams, and a stream that is
  // merely quiet (SSE between events) lives as long as the operator allows, not Bun's 10 s.
  #touch(): void {
    if (this.#idleTimeoutMs === 0 || this.#finished) return;
    if (this.#idleTimer === undefined) {
      this.#idleTimer = setTimeout(() => this.#idle(), this.#idleTimeoutMs);
    } else {
      this.#idleTimer.refresh();
    }
  }

  // Also when the whole body has arrived: a client that stopped reading must not keep it here.
  #idle(): void {
    this.#sendClose(TunnelClose_Reason.TIMEOUT, "stream idle for too long");
    const error = ingressError("timeout", "the stream was idle for too long");
    if (this.status !== 0 && this.#ended) this.#cutBody(error);
    else this.fail(error);
  }

  #protocolViolation(what: string): void {
    this.#sendClose(TunnelClose_Reason.PROTOCOL_ERROR, what);
    this.fail(ingressError("agent_error", what));
  }

  #sendClose(reason: TunnelClose_Reason, message: string): void {
    this.#carrier.send(encodeClose(this.streamId, reason, message));
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    streamStats.closed();
    // A request-body pump waiting for credit must not wait for ever.
    this.sendWindow.close();
    clearTimeout(this.#headTimer);
    clearTimeout(this.#idleTimer);
    this.#chunks = [];
    this.receiveWindow.dispose();
    this.#carrier.forget(this);
    this.onFinished?.(this);
  }
}

/**
 * The agent's response head as the client gets it, or why it cannot be one. The agent already
 * drops hop-by-hop headers; this side does not rely on it, and `new Response` would throw on a
 * status it cannot send or a header that is not valid HTTP.
 */
function responseHeaders(message: TunnelResponse): Headers | string {
  const { status } = message;
  if (status !== 101 && (status < 200 || status > 599)) return `status ${status} is not a final HTTP status`;
  const headers = new Headers();
  const pairs = message.headers.map((h): [string, string] => [h.name.toLowerCase(), h.value]);
  try {
    for (const [name, value] of endToEndHeaders(pairs)) headers.append(name, value);
  } catch (error) {
    return `invalid response header: ${(error as Error).message}`;
  }
  return headers;
}

function nullBodyStatus(status: number): boolean {
  return status === 204 || status === 304 || (status >= 100 && status < 200);
}
