// One TCP connection carried through the tunnel, as seen from either end: bytes read from the
// socket go out as TunnelData under the peer's credit, bytes from the peer are written to the
// socket and credited once it took them. `end_stream` is a half-close: a socket that reached its
// end sends it, and one received shuts the socket's write side once every earlier byte is in.
// The stream is over when both directions ended. The gateway (client's connection) and the agent
// (connection to the local service) differ only in where the socket comes from.
import { ReceiveWindow, SendWindow, type WindowBudget } from "./flow.ts";
import { type TunnelClose, TunnelClose_Reason, type TunnelData } from "./gen/tunnel_pb.ts";
import { encodeClose, keepable, MAX_FRAME_PAYLOAD } from "./protocol.ts";
import { streamStats } from "./stream-stats.ts";

/** What the relay uses of a Bun TCP socket (Bun.listen or Bun.connect). */
export interface ByteSocket {
  /** Takes what fits in the kernel's buffer and returns how much; Bun keeps nothing. */
  write(data: Uint8Array): number;
  /** Sends FIN: the write side is done, reading goes on. */
  shutdown(): void;
  end(): void;
  terminate(): void;
  pause(): void;
  resume(): void;
}

/** The tunnel connection that carries the stream (shared/mux.ts). */
export interface TcpCarrier {
  send(frame: Uint8Array): boolean;
  sendData(streamId: number, payload: Uint8Array, endStream: boolean): boolean;
  sendCredit(streamId: number, increment: number): void;
  readonly congested: boolean;
  onWritable(wake: () => void): void;
  readonly budget: WindowBudget;
}

export interface TcpRelayInit {
  streamId: number;
  /** Bytes the peer accepts before its first window update (0 until it said it is ready). */
  sendWindow: number;
  /** Bytes this side accepts before it returns credit. */
  receiveWindow: number;
  /** Called once when the stream is over; `error` is set when it did not end with both halves. */
  onFinished: (error?: string) => void;
}

type Direction = "open" | "ending" | "ended";

export class TcpRelay {
  readonly streamId: number;
  readonly sendWindow: SendWindow;
  /** Bytes read from the socket and sent to the peer. */
  bytesOut = 0;
  /** Bytes from the peer the socket took. */
  bytesIn = 0;
  readonly #receiveWindow: ReceiveWindow;
  readonly #carrier: TcpCarrier;
  readonly #onFinished: (error?: string) => void;
  #socket: ByteSocket | null = null;

  /** Socket → peer: read and not yet sent for want of credit. */
  #pending: Uint8Array[] = [];
  #out: Direction = "open";
  #readPaused = false;
  #waitingForCarrier = false;

  /** Peer → socket: received and not yet taken by the socket. */
  #unwritten: Uint8Array[] = [];
  #unwrittenBytes = 0;
  #in: Direction = "open";

  /** The socket closed: nothing more can be written to it. */
  #socketGone = false;
  #finished = false;

  constructor(carrier: TcpCarrier, init: TcpRelayInit) {
    this.#carrier = carrier;
    this.streamId = init.streamId;
    this.sendWindow = new SendWindow(init.sendWindow);
    this.#receiveWindow = new ReceiveWindow(
      init.receiveWindow,
      (increment) => carrier.sendCredit(this.streamId, increment),
      carrier.budget,
    );
    this.#onFinished = init.onFinished;
  }

  get finished(): boolean {
    return this.#finished;
  }

  /** Plugs in the socket; bytes from the peer wait until then. */
  attach(socket: ByteSocket): void {
    this.#socket = socket;
    if (this.#readPaused) socket.pause();
    this.drained();
  }

  // --- socket → peer -------------------------------------------------------------------------

  /** Bytes the socket read: a fresh buffer, sent as it is. */
  fromSocket(bytes: Uint8Array): void {
    if (this.#finished || this.#out !== "open") return;
    this.#pending.push(bytes);
    this.#pump();
  }

  /** The socket read its end (FIN): the peer's socket is shut once every earlier byte is in. */
  socketEnded(): void {
    if (this.#finished || this.#out !== "open") return;
    this.#out = "ending";
    this.#pump();
  }

  /** The socket closed; `error` when it broke rather than closed. */
  socketClosed(error?: string): void {
    if (this.#finished) return;
    this.#socketGone = true;
    if (error !== undefined) return this.fail(TunnelClose_Reason.CANCELLED, error);
    // Bun reports a peer that closed both ways as one close, without an end first.
    if (this.#out === "open") this.#out = "ending";
    if (this.#in === "ending") this.#in = "ended";
    this.#unwritten = [];
    this.#unwrittenBytes = 0;
    this.#pump();
    this.#settle();
  }

  // Sends what credit and the connection allow; the socket is paused while anything waits, so a
  // stream without credit holds at most one read here and the rest stays in the kernel.
  #pump(): void {
    const carrier = this.#carrier;
    while (this.#pending.length > 0 && !this.#finished) {
      if (carrier.congested) return this.#waitForCarrier();
      const available = this.sendWindow.available;
      if (available <= 0) {
        this.#pauseReading();
        return this.sendWindow.onOpen(() => this.#pump());
      }
      const chunk = this.#pending[0] as Uint8Array;
      const n = Math.min(chunk.byteLength, available, MAX_FRAME_PAYLOAD);
      this.sendWindow.spend(n);
      this.bytesOut += n;
      if (n === chunk.byteLength) this.#pending.shift();
      else this.#pending[0] = chunk.subarray(n);
      carrier.sendData(this.streamId, n === chunk.byteLength ? chunk : chunk.subarray(0, n), false);
    }
    if (this.#finished) return;
    if (this.#readPaused && this.#out === "open") {
      this.#readPaused = false;
      this.#socket?.resume();
    }
    if (this.#out === "ending") {
      this.#out = "ended";
      carrier.sendData(this.streamId, new Uint8Array(0), true);
      this.#settle();
    }
  }

  #waitForCarrier(): void {
    this.#pauseReading();
    if (this.#waitingForCarrier) return;
    this.#waitingForCarrier = true;
    this.#carrier.onWritable(() => {
      this.#waitingForCarrier = false;
      this.#pump();
    });
  }

  #pauseReading(): void {
    if (this.#readPaused) return;
    this.#readPaused = true;
    this.#socket?.pause();
  }

  // --- peer → socket -------------------------------------------------------------------------

  onData(message: TunnelData): void {
    if (this.#finished) return;
    const size = message.payload.byteLength;
    if (this.#in !== "open") return this.fail(TunnelClose_Reason.PROTOCOL_ERROR, "data after end of stream");
    if (!this.#receiveWindow.receive(size)) {
      return this.fail(TunnelClose_Reason.PROTOCOL_ERROR, "data beyond the granted window");
    }
    if (this.#socketGone) this.#receiveWindow.handedOn(size);
    else if (size > 0) this.#write(message.payload);
    if (message.endStream) {
      this.#in = "ending";
      this.drained();
    }
  }

  // Straight to the socket when nothing waits; only what it did not take is kept, apart from the
  // message it came in (the payload is a view into it).
  #write(payload: Uint8Array): void {
    const socket = this.#socket;
    let rest = payload;
    if (socket !== null && this.#unwritten.length === 0) {
      const n = Math.max(0, socket.write(payload));
      this.bytesIn += n;
      if (n > 0) this.#receiveWindow.handedOn(n);
      if (n === payload.byteLength) return;
      rest = payload.subarray(n);
    }
    this.#unwritten.push(keepable(rest));
    this.#unwrittenBytes += rest.byteLength;
    streamStats.buffered(this.#unwrittenBytes);
  }

  /** The socket takes bytes again (Bun's `drain`): what waits goes on, then a pending half-close. */
  drained(): void {
    const socket = this.#socket;
    if (socket === null || this.#finished) return;
    while (this.#unwritten.length > 0) {
      const chunk = this.#unwritten[0] as Uint8Array;
      const n = Math.max(0, socket.write(chunk));
      this.#unwrittenBytes -= n;
      this.bytesIn += n;
      if (n > 0) this.#receiveWindow.handedOn(n);
      if (n < chunk.byteLength) {
        this.#unwritten[0] = chunk.subarray(n);
        return;
      }
      this.#unwritten.shift();
    }
    if (this.#in !== "ending") return;
    this.#in = "ended";
    if (!this.#socketGone) socket.shutdown();
    this.#settle();
  }

  // --- ending --------------------------------------------------------------------------------

  /**
   * The peer ended the stream abnormally. After its end of stream (its socket closed both ways)
   * what it sent is still delivered and the socket closes cleanly; otherwise it is cut.
   */
  onClose(message: TunnelClose): void {
    if (this.#finished) return;
    if (this.#in === "open") {
      return this.#finish(
        message.message || TunnelClose_Reason[message.reason] || "closed by the peer",
        "cut",
      );
    }
    // Nothing more goes to the peer; the socket gets the rest, then closes.
    this.#out = "ended";
    this.#pending = [];
    this.#pauseReading();
    this.drained();
    this.#settle();
  }

  /** Ends the stream and tells the peer to drop its side too. */
  fail(reason: TunnelClose_Reason, message: string): void {
    if (this.#finished) return;
    this.#carrier.send(encodeClose(this.streamId, reason, message));
    this.#finish(message, "cut");
  }

  /** Ends the stream at once without telling the peer (the tunnel connection is gone). */
  abort(error: string): void {
    this.#finish(error, "cut");
  }

  #settle(): void {
    if (this.#finished || this.#out !== "ended") return;
    if (this.#in === "ended") return this.#finish(undefined, "end");
    // The socket is gone both ways: the peer's bytes have nowhere to go.
    if (this.#socketGone) this.fail(TunnelClose_Reason.CANCELLED, "connection closed");
  }

  #finish(error: string | undefined, how: "end" | "cut"): void {
    if (this.#finished) return;
    this.#finished = true;
    this.sendWindow.close();
    this.#receiveWindow.dispose();
    this.#pending = [];
    this.#unwritten = [];
    this.#unwrittenBytes = 0;
    if (!this.#socketGone) {
      if (how === "end") this.#socket?.end();
      else this.#socket?.terminate();
    }
    this.#onFinished(error);
  }
}
