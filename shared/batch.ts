// Several Envelopes in one WebSocket message (protocol version 2): a 0x00 marker, then each
// encoded Envelope behind its length as a varint. An Envelope's first byte is a field tag, never
// 0x00, so a receiver tells a batch from a lone Envelope by that byte alone.
import { MAX_ENVELOPE_BYTES, ProtocolError } from "./protocol.ts";

export const BATCH_MARKER = 0x00;

/** Frames at least this large go out as a message of their own: copying them buys nothing. */
export const BATCH_FRAME_LIMIT = 16 * 1024;

/** A batch is closed at this size; the next frame starts another message. */
export const MAX_BATCH_BYTES = 256 * 1024;

/** Largest WebSocket message either side accepts: a batch, or one Envelope at its limit. */
export const MAX_MESSAGE_BYTES = Math.max(MAX_BATCH_BYTES, MAX_ENVELOPE_BYTES);

/** The encoded size of `frames` as one batch. */
export function batchSize(frames: readonly Uint8Array[]): number {
  let size = 1;
  for (const frame of frames) size += varintSize(frame.byteLength) + frame.byteLength;
  return size;
}

/** One message holding `frames` in order, in one exact allocation. */
export function encodeBatch(frames: readonly Uint8Array[], size = batchSize(frames)): Uint8Array {
  const out = new Uint8Array(size);
  out[0] = BATCH_MARKER;
  let at = 1;
  for (const frame of frames) {
    let n = frame.byteLength;
    while (n >= 0x80) {
      out[at++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    out[at++] = n;
    out.set(frame, at);
    at += frame.byteLength;
  }
  return out;
}

/**
 * Calls `each` with every Envelope in `message` (a batch or a lone Envelope). A lone Envelope is
 * `message` itself; each Envelope of a batch gets a buffer of its own, because whoever keeps a
 * decoded payload may transfer its buffer (a byte stream's `enqueue` does), which would detach
 * every other Envelope of the batch. Batched Envelopes are small, so the copy is cheap.
 * A batch whose lengths do not add up is a protocol error.
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
    each(message.slice(at, at + length));
    at += length;
  }
}

function varintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4;
}
