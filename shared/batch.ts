// Several Envelopes in one WebSocket message (protocol version 2): a 0x00 marker, then each
// encoded Envelope behind its length as a varint. An Envelope's first byte is a field tag, never
// 0x00, so a receiver tells a batch from a lone Envelope by that byte alone.
import { dataFrameSize, MAX_ENVELOPE_BYTES, ProtocolError, writeDataFrame } from "./protocol.ts";
import { varintSize, writeVarint } from "./varint.ts";

export const BATCH_MARKER = 0x00;

/** A batch is closed at this size; the next frame starts another message. */
export const MAX_BATCH_BYTES = 256 * 1024;

/** Largest WebSocket message either side accepts: a batch, or one Envelope at its limit. */
export const MAX_MESSAGE_BYTES = Math.max(MAX_BATCH_BYTES, MAX_ENVELOPE_BYTES);

/** Body bytes queued for a stream, encoded only when the message they leave in is built. */
export interface DataFrame {
  streamId: number;
  payload: Uint8Array;
  endStream: boolean;
}

/** What a connection queues: an Envelope already encoded, or body bytes to encode. */
export type Outgoing = Uint8Array | DataFrame;

/**
 * Every message is built in this one buffer and written before the next is built: both Bun
 * WebSockets copy what they cannot send at once, so nothing outlives the write. Body bytes are
 * therefore copied once, from the socket that produced them into the message, and no message
 * allocates (fresh buffers per frame showed up as page faults in profiles).
 */
const scratch = new Uint8Array(MAX_BATCH_BYTES);
let scratchBusy = false;

/**
 * Writes `frames` in order, each Envelope its own message (`batching` false: protocol
 * version 1) or as few batches as fit in `MAX_BATCH_BYTES`. A batch of one is sent as a lone
 * Envelope. Stops and returns false at the first message `write` refused.
 */
export function writeFrames(
  frames: readonly Outgoing[],
  batching: boolean,
  write: (message: Uint8Array) => boolean,
): boolean {
  // A write that re-enters (a socket closing under it) gets a buffer of its own.
  const buffer = scratchBusy ? new Uint8Array(MAX_BATCH_BYTES) : scratch;
  const owner = !scratchBusy;
  scratchBusy = true;
  try {
    return batching ? writeBatches(buffer, frames, write) : writeEach(buffer, frames, write);
  } finally {
    if (owner) scratchBusy = false;
  }
}

function writeEach(
  buffer: Uint8Array,
  frames: readonly Outgoing[],
  write: (m: Uint8Array) => boolean,
): boolean {
  for (const frame of frames) {
    if (frame instanceof Uint8Array) {
      if (!write(frame)) return false;
      continue;
    }
    const end = writeDataFrame(buffer, 0, frame.streamId, frame.payload, frame.endStream);
    if (!write(buffer.subarray(0, end))) return false;
  }
  return true;
}

function writeBatches(
  buffer: Uint8Array,
  frames: readonly Outgoing[],
  write: (m: Uint8Array) => boolean,
): boolean {
  buffer[0] = BATCH_MARKER;
  let at = 1;
  let count = 0;
  // Where the first Envelope of the message starts, to send a batch of one without its framing.
  let firstStart = 0;
  const emit = (): boolean => {
    const message = count === 1 ? buffer.subarray(firstStart, at) : buffer.subarray(0, at);
    at = 1;
    count = 0;
    return write(message);
  };
  for (const frame of frames) {
    const size = frame instanceof Uint8Array ? frame.byteLength : frameSize(frame);
    if (at + varintSize(size) + size > MAX_BATCH_BYTES && count > 0 && !emit()) return false;
    at = writeVarint(buffer, at, size);
    if (count === 0) firstStart = at;
    if (frame instanceof Uint8Array) {
      buffer.set(frame, at);
      at += size;
    } else {
      at = writeDataFrame(buffer, at, frame.streamId, frame.payload, frame.endStream);
    }
    count++;
  }
  return count === 0 || emit();
}

function frameSize(frame: DataFrame): number {
  return dataFrameSize(frame.streamId, frame.payload.byteLength, frame.endStream);
}

/**
 * Calls `each` with every Envelope in `message` (a batch or a lone Envelope), as views into it.
 * Whoever keeps a decoded payload past the call keeps the whole message alive, so a small
 * payload that waits is copied (`keepable` in protocol.ts). A batch whose lengths do not add up
 * is a protocol error.
 */
export function forEachFrame(message: Uint8Array, each: (frame: Uint8Array) => void): void {
  if (message.byteLength === 0 || message[0] !== BATCH_MARKER) return each(message);
  let at = 1;
  while (at < message.byteLength) {
    let length = 0;
    let shift = 0;
    for (;;) {
      if (at >= message.byteLength || shift > 28) throw new ProtocolError("truncated length in a batch");
      const byte = message[at++] as number;
      length += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) break;
      shift += 7;
    }
    if (length === 0 || at + length > message.byteLength) {
      throw new ProtocolError(`batch entry of ${length} bytes overruns its message`);
    }
    each(message.subarray(at, at + length));
    at += length;
  }
}
