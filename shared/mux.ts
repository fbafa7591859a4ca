// One tunnel connection, the same on both ends: the stream table, each frame dispatched to its
// stream, heartbeat and round-trip time, credit, and one outgoing queue that leaves once per
// event-loop turn in as few system calls as the socket allows. The gateway and the agent add
// only what differs: who opens streams and what a stream does (gateway/session.ts,
// agent/tunnel.ts).
import { forEachFrame, type Outgoing, writeFrames } from "./batch.ts";
import { logFault } from "./fault.ts";
import { WindowBudget } from "./flow.ts";
import type {
  ControlMessage,
  TunnelClose,
  TunnelData,
  WebSocketClose,
  WebSocketMessage,
} from "./gen/tunnel_pb.ts";
import { log } from "./log.ts";
import {
  type ControlInit,
  decodeEnvelope,
  type EnvelopeMessage,
  encodeControl,
  encodeWindowUpdate,
  envelopeStreamId,
  ProtocolError,
} from "./protocol.ts";

/** The first version that batches frames and merges window updates (proto/tunnel.proto). */
export const BATCHING_VERSION = 2;

/**
 * What all the grown windows of one connection's streams may hold together, beyond their
 * initial windows: memory stays bounded by this, whatever the number of streams.
 */
export const CONNECTION_WINDOW_BUDGET = 64 * 1024 * 1024;

/** Above this many bytes queued in one turn, data waits for the next: control frames do not. */
const QUEUE_HIGH_WATER = 1024 * 1024;

/** Pings whose pong has not come back yet that are remembered for the round-trip time. */
const MAX_PINGS_IN_FLIGHT = 4;

/** A message the decoder accepted, with its oneof case set. */
export type Frame = Exclude<EnvelopeMessage, { case: undefined }>;

/** One stream as the connection sees it: HTTP or WebSocket, on either end. */
export interface MuxStream {
  readonly streamId: number;
  onData?(message: TunnelData): void;
  onClose(message: TunnelClose): void;
  onWindowUpdate(increment: number): void;
  onWebSocketMessage?(message: WebSocketMessage): void;
  onWebSocketClose?(message: WebSocketClose): void;
  /** This side's own code failed on the stream: end it (the peer is told by the connection). */
  fault(): void;
  /** Names the stream in a log line beyond its id (the request id on the gateway). */
  readonly logName?: string;
}

/** The WebSocket under a connection, server or client. */
export interface MuxTransport {
  /** Writes one message; false when the socket lost it for good (the connection must close). */
  write(message: Uint8Array): boolean;
  /** Runs `writes` so that the messages they write share system calls where the socket can. */
  cork(writes: () => void): void;
  /** True while the socket holds more unsent bytes than it should: data waits. */
  readonly congested: boolean;
  /** Calls `wake` once the socket is no longer congested, or has closed. */
  onWritable(wake: () => void): void;
  close(code: number, reason: string): void;
}

export abstract class Multiplexer<S extends MuxStream> {
  readonly streams = new Map<number, S>();
  /** Shared by the receive windows of this connection's streams, so they can grow. */
  readonly budget = new WindowBudget(CONNECTION_WINDOW_BUDGET);
  lastSeen = Date.now();
  bytesIn = 0;
  bytesOut = 0;
  protected readonly transport: MuxTransport;
  /** The protocol version both ends speak on this connection. */
  readonly version: number;

  #queue: Outgoing[] = [];
  #queuedBytes = 0;
  #credit = new Map<number, number>();
  #flushScheduled = false;
  #writers: (() => void)[] = [];
  #closed = false;
  /** The close code the peer sent, once it closed the connection (undefined when this side did). */
  protected peerCloseCode: number | undefined;
  #pingSeq = 0;
  #pingsInFlight = new Map<number, number>();

  constructor(transport: MuxTransport, version: number) {
    this.transport = transport;
    this.version = version;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True while data should wait: the socket is backed up, or this turn already queued plenty. */
  get congested(): boolean {
    return this.#queuedBytes > QUEUE_HIGH_WATER || this.transport.congested;
  }

  /** Queues one encoded Envelope for the end of this turn; false once the connection is gone. */
  send(frame: Uint8Array): boolean {
    if (this.#closed) return false;
    this.#queue.push(frame);
    this.#queuedBytes += frame.byteLength;
    this.#scheduleFlush();
    return true;
  }

  /**
   * Queues body bytes for a stream, encoded straight into the message they leave in. `payload`
   * must not change until then: socket reads and request-body chunks are fresh buffers.
   */
  sendData(streamId: number, payload: Uint8Array, endStream: boolean): boolean {
    if (this.#closed) return false;
    this.#queue.push({ streamId, payload, endStream });
    this.#queuedBytes += payload.byteLength;
    this.#scheduleFlush();
    return true;
  }

  /** Returns credit for a stream; the credit of one turn leaves in one control frame. */
  sendCredit(streamId: number, increment: number): void {
    if (this.#closed) return;
    if (this.version < BATCHING_VERSION) return void this.send(encodeWindowUpdate(streamId, increment));
    this.#credit.set(streamId, (this.#credit.get(streamId) ?? 0) + increment);
    this.#scheduleFlush();
  }

  /** Calls `wake` once data may be sent again. */
  onWritable(wake: () => void): void {
    this.#writers.push(wake);
    if (this.#queue.length > 0) this.#scheduleFlush();
    else this.#afterFlush();
  }

  whenWritable(): Promise<void> {
    if (!this.congested || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.onWritable(resolve));
  }

  /** Writes everything queued now, instead of at the end of the turn. */
  flush(): void {
    this.#flushScheduled = false;
    if (this.#closed) return;
    if (this.#credit.size > 0) this.#queueCredit();
    const frames = this.#queue;
    if (frames.length > 0) {
      this.#queue = [];
      this.#queuedBytes = 0;
      let written = true;
      this.transport.cork(() => {
        written = this.#writeFrames(frames);
      });
      if (!written) return this.close(1011, "send buffer overflow");
    }
    this.#afterFlush();
  }

  ping(): void {
    const seq = ++this.#pingSeq;
    this.#pingsInFlight.set(seq, performance.now());
    if (this.#pingsInFlight.size > MAX_PINGS_IN_FLIGHT) {
      this.#pingsInFlight.delete(this.#pingsInFlight.keys().next().value as number);
    }
    this.sendControl({ case: "ping", value: { seq } });
  }

  /** Called for each binary message of the connection. */
  receive(message: Uint8Array): void {
    this.lastSeen = Date.now();
    this.bytesIn += message.byteLength;
    try {
      forEachFrame(message, (frame) => this.#receiveFrame(frame));
    } catch (error) {
      // Only the batch framing itself throws here; each frame's errors are handled below.
      this.#protocolError(error as ProtocolError);
    }
  }

  /** Ends the connection: the socket is closed and every stream still open is ended. */
  close(code: number, reason: string): void {
    if (this.#closed) return;
    // What this turn queued (a last TunnelClose, a GoAway) still goes out ahead of the close.
    this.flush();
    this.transport.close(code, reason);
    this.closedByPeer();
  }

  /** The socket is gone (either side closed it), with the peer's close code when it closed it. */
  closedByPeer(code?: number): void {
    if (this.#closed) return;
    this.#closed = true;
    this.peerCloseCode = code;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#credit.clear();
    this.#wakeWriters();
    this.onClosed();
  }

  /** A bug met by one stream: logged with its context, the stream ended, the peer told. */
  protected faultStream(stream: S, error: unknown): void {
    const name = stream.logName ? ` (${stream.logName})` : "";
    logFault(`${this.logName} stream ${stream.streamId}${name}`, error);
    this.sendStreamFault(stream.streamId);
    stream.fault();
  }

  protected sendControl(kind: ControlInit): void {
    this.send(encodeControl(kind));
  }

  /** What this end does with the frames only it receives: false when the peer may not send it. */
  protected abstract dispatchRole(frame: Frame): boolean;

  /** The connection ended: end the streams, tell whoever keeps it. */
  protected abstract onClosed(): void;

  /** Tells the peer that this side's code failed on `streamId`. */
  protected abstract sendStreamFault(streamId: number): void;

  /** Names the connection in log lines. */
  protected abstract get logName(): string;

  /** Called once for each control message the base does not handle (GoAway on the agent). */
  protected onControl(control: ControlMessage): boolean {
    void control;
    return false;
  }

  #receiveFrame(bytes: Uint8Array): void {
    if (this.#closed) return;
    let frame: Frame | undefined;
    try {
      frame = decodeEnvelope(bytes);
      this.#dispatch(frame);
    } catch (error) {
      // Whatever one peer's frames trigger costs that connection, never the process.
      if (error instanceof ProtocolError) return this.#protocolError(error);
      // A bug met by one stream costs that stream; the connection's other streams carry on.
      const streamId = frame && envelopeStreamId(frame);
      const stream = streamId === undefined ? undefined : this.streams.get(streamId);
      if (stream !== undefined) return this.faultStream(stream, error);
      logFault(`${this.logName}, closing it`, error);
      this.close(1011, "internal error");
    }
  }

  #protocolError(error: ProtocolError): void {
    log.warn(`${this.logName}: protocol error, closing: ${error.message}`);
    this.close(1002, error.message.slice(0, 120));
  }

  #dispatch(frame: Frame): void {
    switch (frame.case) {
      case "data":
        return this.streams.get(frame.value.streamId)?.onData?.(frame.value);
      case "close":
        return this.streams.get(frame.value.streamId)?.onClose(frame.value);
      case "websocketMessage":
        return this.streams.get(frame.value.streamId)?.onWebSocketMessage?.(frame.value);
      case "websocketClose":
        return this.streams.get(frame.value.streamId)?.onWebSocketClose?.(frame.value);
      case "control":
        return this.#dispatchControl(frame.value);
      default:
        if (!this.dispatchRole(frame)) throw new ProtocolError(`unexpected ${frame.case} from the peer`);
    }
  }

  #dispatchControl(control: ControlMessage): void {
    const kind = control.kind;
    switch (kind.case) {
      case "ping":
        return this.sendControl({ case: "pong", value: { seq: kind.value.seq } });
      case "pong":
        return this.#pong(kind.value.seq);
      case "windowUpdate":
        return this.streams.get(kind.value.streamId)?.onWindowUpdate(kind.value.increment);
      case "windowUpdates":
        for (const update of kind.value.updates)
          this.streams.get(update.streamId)?.onWindowUpdate(update.increment);
        return;
      default:
        if (!this.onControl(control)) {
          throw new ProtocolError(`unexpected control ${kind.case ?? "message"} from the peer`);
        }
    }
  }

  #pong(seq: number): void {
    const sentAt = this.#pingsInFlight.get(seq);
    if (sentAt === undefined) return;
    this.#pingsInFlight.delete(seq);
    this.budget.sample(performance.now() - sentAt);
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // After the turn's other callbacks, so that the frames of every stream they touched leave
    // together.
    setImmediate(() => this.flush());
  }

  #queueCredit(): void {
    const updates = [...this.#credit].map(([streamId, increment]) => ({ streamId, increment }));
    this.#credit.clear();
    const frame =
      updates.length === 1
        ? encodeWindowUpdate(updates[0]?.streamId as number, updates[0]?.increment as number)
        : encodeControl({ case: "windowUpdates", value: { updates } });
    // Credit goes first: it unblocks the peer's senders, and its order against data is free.
    this.#queue.unshift(frame);
  }

  // Before version 2 each frame is its own message (corked on the server); from 2 the frames
  // of a turn share as few messages as fit.
  #writeFrames(frames: Outgoing[]): boolean {
    return writeFrames(frames, this.version >= BATCHING_VERSION, (message) => {
      this.bytesOut += message.byteLength;
      return this.transport.write(message);
    });
  }

  #afterFlush(): void {
    if (this.#writers.length === 0) return;
    if (this.transport.congested) this.transport.onWritable(() => this.#wakeWriters());
    else this.#wakeWriters();
  }

  #wakeWriters(): void {
    const writers = this.#writers;
    this.#writers = [];
    for (const wake of writers) wake();
  }
}
