// One WebSocket carried through the tunnel, as seen from either end: messages from the local
// socket go out as WebSocketMessage fragments under the peer's credit; fragments from the peer are
// reassembled and handed to the local socket, and credit goes back once the socket took them.
// The gateway (client's socket) and the agent (socket to the local service) differ only in the
// LocalSocket they plug in.

import { ReceiveWindow, SendWindow } from "./flow.ts";
import { TunnelClose_Reason, type WebSocketClose, type WebSocketMessage } from "./gen/tunnel_pb.ts";
import {
  encodeClose,
  encodeWebSocketClose,
  encodeWebSocketMessage,
  INITIAL_WINDOW,
  MAX_FRAME_PAYLOAD,
  MAX_WEBSOCKET_MESSAGE,
} from "./protocol.ts";

/** The WebSocket on this side of the tunnel. */
export interface LocalSocket {
  /** Sends one whole message; false when the socket is backed up and the next must wait. */
  send(message: string | Uint8Array): boolean;
  /** Resolves once the socket takes messages again (or is gone). */
  whenWritable(): Promise<void>;
  /** Stop and start reading the socket: the source is paused, not buffered. */
  pause(): void;
  resume(): void;
  /** Closes the socket with the code and reason the other end closed with. */
  close(code: number, reason: string): void;
}

/** The tunnel connection that carries the stream. */
export interface RelayCarrier {
  send(frame: Uint8Array): boolean;
  /** Returns credit to the peer (merged with other streams' in one frame). */
  sendCredit(streamId: number, increment: number): void;
  /** Resolves when the connection accepts more data frames (its own backpressure). */
  whenWritable(): Promise<void>;
}

export interface RelayInit {
  streamId: number;
  /** Message bytes the peer accepts before its first window update. */
  sendWindow: number;
  /** Message bytes this side accepts before it returns credit. */
  receiveWindow: number;
  /** Called once when the stream is over, however it ended. */
  onFinished: () => void;
}

/** A WebSocket close code for "the tunnel failed", as opposed to either end closing. */
export const TUNNEL_FAILURE_CODE = 1011;

/** Close code for a message above MAX_WEBSOCKET_MESSAGE (RFC 6455 "message too big"). */
const TOO_BIG_CODE = 1009;

/**
 * Above this many bytes of messages waiting for credit the local socket stops being read; it
 * resumes below a quarter of it. One window: what the peer could take at once anyway.
 */
const OUTBOX_HIGH_WATER = INITIAL_WINDOW;

type Close = { code: number; reason: string };
type Outgoing = { bytes: Uint8Array; text: boolean } | Close;
type Incoming = { message: string | Uint8Array; bytes: number } | Close;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class WebSocketRelay {
  readonly streamId: number;
  readonly sendWindow: SendWindow;
  readonly #receiveWindow: ReceiveWindow;
  readonly #carrier: RelayCarrier;
  readonly #onFinished: () => void;
  #socket: LocalSocket | null = null;

  #outbox: Outgoing[] = [];
  #outboxBytes = 0;
  #pumping = false;
  #paused = false;

  #fragments: Uint8Array[] = [];
  #fragmentBytes = 0;
  /** Bytes of the message being reassembled whose credit has not gone back yet. */
  #fragmentsUncredited = 0;
  #inbox: Incoming[] = [];
  #blocked = false;

  /** The local socket closed: nothing more is delivered to it. */
  #localClosed = false;
  /** The peer's close arrived: the local socket is closing because of it. */
  #peerClosed = false;
  #finished = false;

  constructor(carrier: RelayCarrier, init: RelayInit) {
    this.#carrier = carrier;
    this.streamId = init.streamId;
    this.sendWindow = new SendWindow(init.sendWindow);
    this.#receiveWindow = new ReceiveWindow(init.receiveWindow, (increment) =>
      carrier.sendCredit(this.streamId, increment),
    );
    this.#onFinished = init.onFinished;
  }

  get finished(): boolean {
    return this.#finished;
  }

  /** Plugs in the local socket; messages from the peer wait until then. */
  attach(socket: LocalSocket): void {
    this.#socket = socket;
    if (this.#paused) socket.pause();
    this.#deliver();
  }

  // --- local socket → peer -----------------------------------------------------------------

  /** A message the local socket received. */
  forward(message: string | Uint8Array): void {
    if (this.#finished || this.#localClosed) return;
    const text = typeof message === "string";
    const bytes = text ? encoder.encode(message) : message;
    if (bytes.byteLength > MAX_WEBSOCKET_MESSAGE) {
      // The peer would refuse to reassemble it; the local end learns why.
      this.#socket?.close(TOO_BIG_CODE, "message too big for the tunnel");
      return;
    }
    this.#outbox.push({ bytes, text });
    this.#outboxBytes += bytes.byteLength;
    // A fast sender fills its own TCP buffers, not this process's memory.
    if (!this.#paused && this.#outboxBytes > OUTBOX_HIGH_WATER) {
      this.#paused = true;
      this.#socket?.pause();
    }
    void this.#pump();
  }

  /** The local socket closed: the peer closes with the same code after every earlier message. */
  localClosed(code: number, reason: string): void {
    if (this.#finished || this.#localClosed) return;
    this.#localClosed = true;
    this.#inbox = [];
    if (this.#peerClosed) return this.#finish();
    this.#outbox.push({ code, reason });
    void this.#pump();
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#outbox.length > 0 && !this.#finished) {
        const item = this.#outbox[0] as Outgoing;
        if ("code" in item) {
          await this.#carrier.whenWritable();
          if (this.#finished) return;
          this.#carrier.send(encodeWebSocketClose(this.streamId, item.code, item.reason));
          return this.#finish();
        }
        await this.#sendMessage(item.bytes, item.text);
        this.#outbox.shift();
        this.#outboxBytes -= item.bytes.byteLength;
        if (this.#paused && this.#outboxBytes <= OUTBOX_HIGH_WATER / 4) {
          this.#paused = false;
          this.#socket?.resume();
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  async #sendMessage(bytes: Uint8Array, text: boolean): Promise<void> {
    let offset = 0;
    do {
      // An empty message (or its empty last fragment) costs no credit.
      if (offset < bytes.byteLength) await this.sendWindow.whenOpen();
      await this.#carrier.whenWritable();
      if (this.#finished) return;
      const n = Math.min(bytes.byteLength - offset, this.sendWindow.available, MAX_FRAME_PAYLOAD);
      if (n === 0 && offset < bytes.byteLength) continue;
      this.sendWindow.spend(n);
      const fin = offset + n === bytes.byteLength;
      this.#carrier.send(
        encodeWebSocketMessage(this.streamId, bytes.subarray(offset, offset + n), text, fin),
      );
      offset += n;
    } while (offset < bytes.byteLength);
  }

  // --- peer → local socket -----------------------------------------------------------------

  /** A message fragment from the peer. */
  onMessage(message: WebSocketMessage): void {
    if (this.#finished) return;
    const size = message.payload.byteLength;
    if (!this.#receiveWindow.receive(size)) {
      return this.#violation(TUNNEL_FAILURE_CODE, "message beyond the granted window");
    }
    // Our socket is closing: what the peer sent meanwhile has nowhere to go.
    if (this.#localClosed) return this.#receiveWindow.handedOn(size);
    if (this.#fragmentBytes + size > MAX_WEBSOCKET_MESSAGE) {
      return this.#violation(TOO_BIG_CODE, "message too big for the tunnel");
    }
    // The payload is a view into the frame's buffer: keep a copy.
    this.#fragments.push(message.payload.slice());
    this.#fragmentBytes += size;
    this.#fragmentsUncredited += size;
    if (message.fin) {
      const bytes = join(this.#fragments, this.#fragmentBytes);
      this.#inbox.push({
        message: message.text ? decoder.decode(bytes) : bytes,
        bytes: this.#fragmentsUncredited,
      });
      this.#fragments = [];
      this.#fragmentBytes = 0;
      this.#fragmentsUncredited = 0;
    }
    this.#deliver();
  }

  /** The peer's socket closed: ours closes the same way once every earlier message is in. */
  onClose(message: WebSocketClose): void {
    if (this.#finished || this.#peerClosed) return;
    this.#peerClosed = true;
    if (this.#localClosed) return this.#finish();
    this.#inbox.push({ code: message.code, reason: message.reason });
    this.#deliver();
  }

  // A message larger than the window could never complete if its fragments waited for delivery,
  // so the fragments of the message being reassembled are credited as they arrive, unless the
  // socket is backed up. Memory stays bounded by the window plus one message.
  #deliver(): void {
    const socket = this.#socket;
    if (socket === null || this.#blocked || this.#finished) return;
    while (this.#inbox.length > 0) {
      const item = this.#inbox.shift() as Incoming;
      if ("code" in item) return socket.close(item.code, item.reason);
      if (socket.send(item.message)) {
        this.#receiveWindow.handedOn(item.bytes);
        continue;
      }
      this.#blocked = true;
      void socket.whenWritable().then(() => {
        this.#blocked = false;
        if (this.#finished) return;
        this.#receiveWindow.handedOn(item.bytes);
        this.#deliver();
      });
      return;
    }
    if (this.#fragmentsUncredited > 0 && !this.#finished) {
      this.#receiveWindow.handedOn(this.#fragmentsUncredited);
      this.#fragmentsUncredited = 0;
    }
  }

  // --- ending --------------------------------------------------------------------------------

  /**
   * Ends the stream at once, without the closing handshake: the tunnel failed (agent lost,
   * TunnelClose from the peer). The local socket closes with `code`.
   */
  abort(code: number, reason: string): void {
    if (this.#finished) return;
    if (!this.#localClosed) this.#socket?.close(code, reason);
    this.#finish();
  }

  /** Ends the stream and tells the peer to drop its side too. */
  fail(reason: TunnelClose_Reason, message: string, code = TUNNEL_FAILURE_CODE): void {
    if (this.#finished) return;
    this.#carrier.send(encodeClose(this.streamId, reason, message));
    this.abort(code, message);
  }

  #violation(code: number, what: string): void {
    this.fail(TunnelClose_Reason.PROTOCOL_ERROR, what, code);
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.sendWindow.close();
    this.#outbox = [];
    this.#inbox = [];
    this.#fragments = [];
    this.#onFinished();
  }
}

function join(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
