// One stream on the agent: the request written to a local connection as HTTP/1.1, the response
// parsed and sent back to the gateway, both bodies under the peer's credit.

import { encodeResponse } from "../shared/codec.ts";
import { ReceiveWindow, SendWindow, type WindowBudget } from "../shared/flow.ts";
import {
  type Header,
  TunnelClose_Reason,
  type TunnelData,
  type TunnelRequest,
} from "../shared/gen/tunnel_pb.ts";
import { endToEndPairs } from "../shared/headers.ts";
import {
  encodeClose,
  encodeEnvelope,
  INITIAL_WINDOW,
  keepable,
  MAX_FRAME_PAYLOAD,
} from "../shared/protocol.ts";
import { isReplayable } from "../shared/replay.ts";
import { streamStats } from "../shared/stream-stats.ts";
import { Http1Error, type ResponseHead, ResponseParser, type ResponseSink } from "./http1.ts";
import {
  type LocalConnection,
  type LocalConnectionOwner,
  type LocalPool,
  LocalUnreachableError,
} from "./local-pool.ts";
import { encodeChunk, LAST_CHUNK, type RequestHead, requestHead } from "./request-head.ts";

/** What an exchange needs from the tunnel connection that carries it. */
export interface ExchangeCarrier {
  send(frame: Uint8Array): boolean;
  /** Sends response-body bytes (encoded when the turn's frames are written). */
  sendData(streamId: number, payload: Uint8Array, endStream: boolean): boolean;
  /** Returns credit to the gateway (merged with other streams' in one frame). */
  sendCredit(streamId: number, increment: number): void;
  /** What the connection's streams share to grow their receive windows. */
  readonly budget: WindowBudget;
  /** True while the WebSocket holds more unsent bytes than it should: data waits. */
  readonly congested: boolean;
  /** Calls `wake` once the connection is no longer congested. */
  onWritable(wake: () => void): void;
  forget(exchange: LocalExchange): void;
}

type Framing = { contentLength: number } | "chunked" | "none";

export class LocalExchange implements LocalConnectionOwner, ResponseSink {
  readonly streamId: number;
  readonly #carrier: ExchangeCarrier;
  readonly #pool: LocalPool;
  readonly #request: TunnelRequest;
  readonly #framing: Framing;
  readonly #requestHead: RequestHead;
  /** One per attempt: a retried request must not inherit the state of the dropped one. */
  #parser = new ResponseParser(this);
  readonly #sendWindow: SendWindow;
  readonly #requestWindow: ReceiveWindow;

  #conn: LocalConnection | null = null;
  /** Request bytes waiting for the local socket; `bodyBytes` counts the body part for credit. */
  #writes: { bytes: Uint8Array; bodyBytes: number }[] = [];
  #requestComplete: boolean;
  #responseStarted = false;
  #pendingHead: { status: number; headers: Header[] } | null = null;
  #inline: Uint8Array[] = [];
  #inlineBytes = 0;
  #outgoing: Uint8Array[] = [];
  #outgoingBytes = 0;
  #responseEnded = false;
  #reusable = false;
  #paused = false;
  #done = false;
  #retried = false;
  /** Body bytes still owed when the request declared its length: more or fewer is a broken stream. */
  #bodyLeft: number;

  constructor(carrier: ExchangeCarrier, pool: LocalPool, request: TunnelRequest) {
    this.#carrier = carrier;
    this.#pool = pool;
    this.#request = request;
    this.streamId = request.streamId;
    this.#sendWindow = new SendWindow(request.window);
    this.#requestWindow = new ReceiveWindow(
      INITIAL_WINDOW,
      (increment) => carrier.sendCredit(this.streamId, increment),
      carrier.budget,
    );
    this.#requestComplete = request.endStream;
    this.#framing = framingFor(request);
    this.#requestHead = outgoingHead(request, this.#framing);
    this.#bodyLeft =
      typeof this.#framing === "object" ? this.#framing.contentLength - request.body.byteLength : 0;
    streamStats.opened();
  }

  /** Validates the request and starts writing it; never writes anything that failed validation. */
  async start(): Promise<void> {
    const head = this.#requestHead;
    if ("invalid" in head) return this.#answerBadRequest(head.invalid);
    const miscount = this.#countBody(0, this.#request.endStream);
    if (miscount !== null) return this.#abort(TunnelClose_Reason.PROTOCOL_ERROR, miscount);
    this.#queueRequestHead(head.bytes);
    await this.#connect();
  }

  /** A request-body frame from the gateway. */
  onData(message: TunnelData): void {
    if (this.#done) return;
    const size = message.payload.byteLength;
    if (!this.#requestWindow.receive(size)) {
      return this.#abort(TunnelClose_Reason.PROTOCOL_ERROR, "request body beyond the granted window");
    }
    streamStats.buffered(this.#requestWindow.buffered);
    const miscount = this.#countBody(size, message.endStream);
    if (miscount !== null) return this.#abort(TunnelClose_Reason.PROTOCOL_ERROR, miscount);
    if (size > 0) {
      if (this.#framing === "chunked") {
        const [line, data, crlf] = encodeChunk(message.payload);
        this.#write(line as Uint8Array, 0);
        this.#write(data as Uint8Array, size);
        this.#write(crlf as Uint8Array, 0);
      } else {
        this.#write(message.payload, size);
      }
    }
    if (message.endStream) {
      this.#requestComplete = true;
      if (this.#framing === "chunked") this.#write(LAST_CHUNK, 0);
    }
  }

  onWindowUpdate(increment: number): void {
    this.#sendWindow.grant(increment);
  }

  /** The gateway ended the stream (client gone, timeout). */
  onClose(): void {
    this.cancel();
  }

  /** This side's code failed on the stream. */
  fault(): void {
    this.cancel();
  }

  /** Drops the local exchange at once. */
  cancel(): void {
    if (this.#done) return;
    this.#done = true;
    streamStats.closed();
    this.#requestWindow.dispose();
    this.#sendWindow.close();
    if (this.#conn) this.#pool.destroy(this.#conn);
    this.#carrier.forget(this);
  }

  // --- local connection events -----------------------------------------------------------

  data(bytes: Uint8Array): void {
    this.#responseStarted = true;
    try {
      this.#parser.feed(bytes);
    } catch (error) {
      if (!(error instanceof Http1Error)) throw error;
      // Bytes after a whole response cost only the connection (end() said it is not reusable);
      // the response itself still goes to the client.
      if (!this.#responseEnded) {
        return this.#abort(TunnelClose_Reason.LOCAL_ERROR, `invalid response: ${error.message}`);
      }
    }
    this.#flushHead();
    this.#pump();
  }

  drain(): void {
    this.#flushWrites();
  }

  closed(error: Error | undefined): void {
    const conn = this.#conn;
    this.#conn = null;
    if (this.#done) return;
    const head = this.#requestHead;
    if (!this.#responseStarted && conn?.reused && this.#canRetry() && "bytes" in head) {
      // The server closed an idle keep-alive connection just as we reused it: it answered
      // nothing, so a request that is safe to repeat goes out again on a fresh connection.
      this.#retried = true;
      this.#parser = new ResponseParser(this);
      this.#writes = [];
      this.#queueRequestHead(head.bytes);
      void this.#connect();
      return;
    }
    try {
      this.#parser.finish();
    } catch (finishError) {
      if (!(finishError instanceof Http1Error)) throw finishError;
      const why = error?.message ?? finishError.message;
      return this.#abort(TunnelClose_Reason.LOCAL_ERROR, `local service closed the connection: ${why}`);
    }
    this.#flushHead();
    this.#pump();
  }

  // --- response parser events ------------------------------------------------------------

  head(head: ResponseHead, forward: Header[]): void {
    this.#pendingHead = { status: head.status, headers: forward };
  }

  body(chunk: Uint8Array): void {
    if (this.#pendingHead !== null && this.#inlineBytes + chunk.byteLength <= MAX_FRAME_PAYLOAD) {
      this.#inline.push(chunk.slice());
      this.#inlineBytes += chunk.byteLength;
      return;
    }
    this.#flushHead();
    if (this.#outgoing.length === 0) chunk = this.#sendNow(chunk);
    if (chunk.byteLength > 0) {
      this.#outgoing.push(chunk.slice());
      this.#outgoingBytes += chunk.byteLength;
      streamStats.buffered(this.#outgoingBytes);
    }
  }

  end(reusable: boolean): void {
    this.#responseEnded = true;
    this.#reusable = reusable;
  }

  // --- internals ---------------------------------------------------------------------------

  async #connect(): Promise<void> {
    try {
      this.#conn = await this.#pool.acquire(this, this.#canRetry() ? undefined : FRESH_FOR_UNSAFE_MS);
    } catch (error) {
      const reason = error instanceof LocalUnreachableError ? error.message : String(error);
      return this.#abort(TunnelClose_Reason.LOCAL_UNREACHABLE, reason);
    }
    if (this.#done) return this.#pool.destroy(this.#conn);
    this.#parser.expect(this.#request.method);
    this.#flushWrites();
  }

  #queueRequestHead(head: Uint8Array): void {
    this.#writes.push({ bytes: head, bodyBytes: 0 });
    const body = this.#request.body;
    if (body.byteLength > 0) {
      if (this.#framing === "chunked") {
        for (const part of encodeChunk(body)) this.#writes.push({ bytes: part, bodyBytes: 0 });
      } else {
        this.#writes.push({ bytes: body, bodyBytes: 0 });
      }
    }
    if (this.#request.endStream && this.#framing === "chunked")
      this.#writes.push({ bytes: LAST_CHUNK, bodyBytes: 0 });
  }

  #write(bytes: Uint8Array, bodyBytes: number): void {
    const waits = this.#writes.length > 0 || this.#conn === null;
    this.#writes.push({ bytes: waits ? keepable(bytes) : bytes, bodyBytes });
    if (this.#writes.length === 1) this.#flushWrites();
  }

  // Bun's socket.write() may take only part of the buffer and keeps none of the rest: what is
  // left waits here for `drain`. Credit for body bytes goes back only once they are written.
  #flushWrites(): void {
    const conn = this.#conn;
    if (conn === null) return;
    while (this.#writes.length > 0) {
      const next = this.#writes[0] as { bytes: Uint8Array; bodyBytes: number };
      const written = conn.socket.write(next.bytes);
      if (written < next.bytes.byteLength) {
        next.bytes = keepable(next.bytes.subarray(Math.max(written, 0)));
        return;
      }
      this.#writes.shift();
      if (next.bodyBytes > 0) this.#requestWindow.handedOn(next.bodyBytes);
    }
  }

  #flushHead(): void {
    const head = this.#pendingHead;
    if (head === null) return;
    this.#pendingHead = null;
    const body = concat(this.#inline, this.#inlineBytes);
    this.#inline = [];
    this.#sendWindow.spend(body.byteLength);
    const endStream = this.#responseEnded && this.#outgoing.length === 0;
    const response = {
      streamId: this.streamId,
      status: head.status,
      headers: head.headers,
      body,
      endStream,
      window: 0,
    };
    this.#carrier.send(encodeResponse(response));
    if (endStream) this.#complete(this.#reusable);
  }

  /** Sends as much of `chunk` as credit and the connection allow; returns the rest. */
  #sendNow(chunk: Uint8Array): Uint8Array {
    while (chunk.byteLength > 0 && !this.#carrier.congested) {
      const n = Math.min(chunk.byteLength, this.#sendWindow.available, MAX_FRAME_PAYLOAD);
      if (n <= 0) break;
      this.#sendWindow.spend(n);
      this.#sendData(chunk.subarray(0, n), false);
      chunk = chunk.subarray(n);
    }
    return chunk;
  }

  // Moves queued response bytes out; when credit or the connection runs dry, the local socket
  // is paused so the service's bytes wait in the kernel, not in this process.
  #pump(): void {
    if (this.#done || this.#pendingHead !== null) return;
    while (this.#outgoing.length > 0) {
      const next = this.#outgoing[0] as Uint8Array;
      const rest = this.#sendNow(next);
      this.#outgoingBytes -= next.byteLength - rest.byteLength;
      if (rest.byteLength > 0) {
        this.#outgoing[0] = rest;
        return this.#waitToPump();
      }
      this.#outgoing.shift();
    }
    if (this.#paused) {
      this.#paused = false;
      this.#conn?.socket.resume();
    }
    if (this.#responseEnded) {
      this.#sendData(new Uint8Array(0), true);
      this.#complete(this.#reusable);
    }
  }

  #waitToPump(): void {
    if (!this.#paused) {
      this.#paused = true;
      this.#conn?.socket.pause();
    }
    if (this.#carrier.congested) this.#carrier.onWritable(() => this.#pump());
    else this.#sendWindow.onOpen(() => this.#pump());
  }

  #sendData(payload: Uint8Array, endStream: boolean): void {
    this.#carrier.sendData(this.streamId, payload, endStream);
  }

  #complete(reusable: boolean): void {
    if (this.#done) return;
    this.#done = true;
    streamStats.closed();
    this.#requestWindow.dispose();
    const conn = this.#conn;
    this.#conn = null;
    if (conn) {
      if (reusable && this.#requestComplete && this.#writes.length === 0) this.#pool.release(conn);
      else this.#pool.destroy(conn);
    }
    this.#carrier.forget(this);
  }

  #abort(reason: TunnelClose_Reason, message: string): void {
    if (this.#done) return;
    this.#carrier.send(encodeClose(this.streamId, reason, message));
    this.cancel();
  }

  #answerBadRequest(why: string): void {
    const body = new TextEncoder().encode(`400 bad request: ${why}\n`);
    this.#carrier.send(
      encodeEnvelope({
        case: "response",
        value: {
          streamId: this.streamId,
          status: 400,
          headers: [
            { name: "content-type", value: "text/plain; charset=utf-8" },
            { name: "x-tunnel-error", value: "bad_request" },
          ],
          body,
          endStream: true,
        },
      }),
    );
    this.cancel();
  }

  /** Whether a request dropped unanswered may be sent again: its whole body is here to resend,
   *  and repeating it cannot do harm twice (RFC 9110 §9.2.2, as Go's HTTP client decides). */
  #canRetry(): boolean {
    return !this.#retried && this.#request.endStream && replayable(this.#request);
  }

  /** Why a streamed body breaks its declared Content-Length, or null while it keeps it. Extra
   *  bytes would reach the service as the start of a second, unvalidated request. */
  #countBody(size: number, endStream: boolean): string | null {
    if (typeof this.#framing !== "object") return null;
    this.#bodyLeft -= size;
    if (this.#bodyLeft < 0)
      return `request body longer than its content-length ${this.#framing.contentLength}`;
    if (endStream && this.#bodyLeft > 0) {
      return `request body ended ${this.#bodyLeft} bytes short of its content-length ${this.#framing.contentLength}`;
    }
    return null;
  }
}

/**
 * A request that cannot be retried only goes out on a connection that was idle for less than
 * this: servers' keep-alive timeouts are 5 s or more, so one that recent is not being closed.
 */
const FRESH_FOR_UNSAFE_MS = 1_000;

function replayable(request: TunnelRequest): boolean {
  return isReplayable(request.method, (name) => request.headers.some((h) => h.name === name));
}

const FRAMING_HEADERS = new Set(["content-length", "transfer-encoding"]);

/** The head for the local hop: the client's end-to-end headers minus framing, which the agent sets. */
function outgoingHead(request: TunnelRequest, framing: Framing): RequestHead {
  const headers = endToEndPairs(request.headers, FRAMING_HEADERS);
  return requestHead(request.method, request.path, headers, framing);
}

function framingFor(request: TunnelRequest): Framing {
  const declared = request.headers.find((h) => h.name === "content-length")?.value;
  if (request.endStream) {
    const length = request.body.byteLength;
    return length > 0 || declared !== undefined ? { contentLength: length } : "none";
  }
  if (declared !== undefined && /^\d+$/.test(declared)) return { contentLength: Number(declared) };
  return "chunked";
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
