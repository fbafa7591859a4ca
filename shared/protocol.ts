// Encode and decode the one message type that crosses the tunnel: an Envelope per binary
// WebSocket message. Every frame size limit lives here so both sides agree on it.
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { decodeHot } from "./codec.ts";
import {
  ControlMessageSchema,
  type Envelope,
  EnvelopeSchema,
  type Header,
  type TunnelClose_Reason,
} from "./gen/tunnel_pb.ts";
import { varintSize, writeVarint } from "./varint.ts";

/** Body bytes carried by one TunnelData (or inline in a request/response head). */
export const MAX_FRAME_PAYLOAD = 64 * 1024;

/**
 * Largest encoded Envelope either side accepts: one payload plus a head of up to 64 KiB of
 * headers (the agent's response parser allows 64 KiB heads; Bun's ingress caps requests at 16 KiB).
 */
export const MAX_ENVELOPE_BYTES = MAX_FRAME_PAYLOAD + 64 * 1024 + 1024;

/**
 * Initial per-stream credit in each direction. 256 KiB keeps a single stream near line rate on
 * loopback while bounding what one slow client can pin in memory.
 */
export const INITIAL_WINDOW = 256 * 1024;

/**
 * Largest WebSocket message either side relays (Bun's own default `maxPayloadLength`): a message
 * is reassembled whole before it is handed to a socket, so this bounds that buffer.
 */
export const MAX_WEBSOCKET_MESSAGE = 16 * 1024 * 1024;

/** The peer broke the wire protocol; the connection that carried the frame is closed. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

export type EnvelopeMessage = Envelope["message"];
export type EnvelopeInit = MessageInitShape<typeof EnvelopeSchema>["message"];

export type ControlInit = MessageInitShape<typeof ControlMessageSchema>["kind"];

export function encodeEnvelope(message: EnvelopeInit): Uint8Array {
  return toBinary(EnvelopeSchema, create(EnvelopeSchema, { message }));
}

export function encodeControl(kind: ControlInit): Uint8Array {
  return encodeEnvelope({ case: "control", value: create(ControlMessageSchema, { kind }) });
}

/** Returns `increment` bytes of credit for one stream to the peer. */
export function encodeWindowUpdate(streamId: number, increment: number): Uint8Array {
  return encodeControl({ case: "windowUpdate", value: { streamId, increment } });
}

/**
 * `Envelope { data: TunnelData { stream_id, payload, end_stream } }`, encoded by hand: body bytes
 * are most of the traffic, and the generic encoder grows its buffer by doubling and copies it again
 * at the end (three copies of every payload). This writes the same bytes with one exact allocation
 * and one copy; `protocol.test.ts` checks it against the generic encoder.
 */
export function encodeData(streamId: number, payload: Uint8Array, endStream: boolean): Uint8Array {
  const out = new Uint8Array(dataFrameSize(streamId, payload.byteLength, endStream));
  writeDataFrame(out, 0, streamId, payload, endStream);
  return out;
}

/** The encoded size of a TunnelData Envelope. */
export function dataFrameSize(streamId: number, payloadBytes: number, endStream: boolean): number {
  const inner = dataInnerSize(streamId, payloadBytes, endStream);
  return 1 + varintSize(inner) + inner;
}

/** Writes a TunnelData Envelope into `out` at `at`; returns where it ends. */
export function writeDataFrame(
  out: Uint8Array,
  at: number,
  streamId: number,
  payload: Uint8Array,
  endStream: boolean,
): number {
  out[at++] = (5 << 3) | 2; // Envelope.data, length-delimited
  at = writeVarint(out, at, dataInnerSize(streamId, payload.byteLength, endStream));
  // proto3 leaves out fields at their default value.
  if (streamId !== 0) {
    out[at++] = (1 << 3) | 0; // stream_id, varint
    at = writeVarint(out, at, streamId);
  }
  if (payload.byteLength > 0) {
    out[at++] = (2 << 3) | 2; // payload, length-delimited
    at = writeVarint(out, at, payload.byteLength);
    out.set(payload, at);
    at += payload.byteLength;
  }
  if (endStream) {
    out[at++] = (3 << 3) | 0; // end_stream, varint
    out[at++] = 1;
  }
  return at;
}

function dataInnerSize(streamId: number, payloadBytes: number, endStream: boolean): number {
  const idSize = streamId === 0 ? 0 : 1 + varintSize(streamId);
  const payloadSize = payloadBytes === 0 ? 0 : 1 + varintSize(payloadBytes) + payloadBytes;
  return idSize + payloadSize + (endStream ? 2 : 0);
}

export function encodeClose(streamId: number, reason: TunnelClose_Reason, message: string): Uint8Array {
  return encodeEnvelope({ case: "close", value: { streamId, reason, message } });
}

/** One WebSocket message or fragment of it (`fin` on the last). */
export function encodeWebSocketMessage(
  streamId: number,
  payload: Uint8Array,
  text: boolean,
  fin: boolean,
): Uint8Array {
  return encodeEnvelope({ case: "websocketMessage", value: { streamId, payload, text, fin } });
}

export function encodeWebSocketClose(streamId: number, code: number, reason: string): Uint8Array {
  return encodeEnvelope({ case: "websocketClose", value: { streamId, code, reason } });
}

/**
 * Decodes one frame. `bytes` fields of the result are views into `frame`: copy them before the
 * frame's buffer can be reused.
 */
export function decodeEnvelope(frame: Uint8Array): Exclude<EnvelopeMessage, { case: undefined }> {
  if (frame.byteLength > MAX_ENVELOPE_BYTES) {
    throw new ProtocolError(`frame of ${frame.byteLength} bytes exceeds ${MAX_ENVELOPE_BYTES}`);
  }
  let envelope: Envelope;
  try {
    const hot = decodeHot(frame);
    if (hot !== undefined) return hot;
    envelope = fromBinary(EnvelopeSchema, frame);
  } catch (error) {
    throw new ProtocolError(`undecodable frame: ${(error as Error).message}`);
  }
  const message = envelope.message;
  if (message.case === undefined) throw new ProtocolError("frame carries no known message");
  return message;
}

/**
 * A decoded payload to keep beyond this turn. It is a view into the message it came in; when it
 * is a small part of a larger message (a batch), it is copied, so that a stream that waits holds
 * its own bytes and not every other stream's batch. A full 64 KiB frame is at least a quarter of
 * any batch (256 KiB at most) and is kept as it is: copying those cost an upload 13% of the
 * agent's CPU, and what it pins is at most four times its size.
 */
export function keepable(payload: Uint8Array): Uint8Array {
  return payload.byteLength * 4 < payload.buffer.byteLength ? payload.slice() : payload;
}

/** The stream a decoded message belongs to, or undefined for connection-level messages. */
export function envelopeStreamId(message: EnvelopeMessage): number | undefined {
  if (message.case === undefined || message.case === "connect" || message.case === "connectError") return;
  if (message.case === "control") {
    const kind = message.value.kind;
    return kind.case === "windowUpdate" ? kind.value.streamId : undefined;
  }
  return message.value.streamId;
}

/** Converts repeated protobuf headers into pairs, keeping order and repeats. */
export function headerPairs(headers: Header[]): [string, string][] {
  return headers.map((h) => [h.name, h.value]);
}
