import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type DataFrame,
  forEachFrame,
  MAX_BATCH_BYTES,
  MAX_MESSAGE_BYTES,
  type Outgoing,
  writeFrames,
} from "./batch.ts";
import { decodeEnvelope, encodeData, encodeWindowUpdate, MAX_FRAME_PAYLOAD } from "./protocol.ts";

/** What a receiver gets: every message copied as it is written (the writer reuses its buffer). */
function written(frames: Outgoing[], batching: boolean): Uint8Array[] {
  const messages: Uint8Array[] = [];
  expect(writeFrames(frames, batching, (m) => messages.push(m.slice()) > 0)).toBe(true);
  return messages;
}

function expected(frame: Outgoing): Uint8Array {
  return frame instanceof Uint8Array ? frame : encodeData(frame.streamId, frame.payload, frame.endStream);
}

const outgoing: fc.Arbitrary<Outgoing> = fc.oneof(
  fc
    .record({ streamId: fc.nat({ max: 0xffffffff }), increment: fc.nat({ max: 0xffffffff }) })
    .map(({ streamId, increment }) => encodeWindowUpdate(streamId, increment)),
  fc.record({
    streamId: fc.nat({ max: 0xffffffff }),
    payload: fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.integer({ min: 1, max: MAX_FRAME_PAYLOAD }).map((n) => new Uint8Array(n).fill(n & 0xff)),
    ),
    endStream: fc.boolean(),
  }) as fc.Arbitrary<DataFrame>,
);

describe("writing the frames of one turn", () => {
  test("batches hold every frame once, in order, and no message passes the limit", () => {
    fc.assert(
      fc.property(fc.array(outgoing, { maxLength: 40 }), (frames) => {
        const messages = written(frames, true);
        const received: Uint8Array[] = [];
        for (const message of messages) {
          expect(message.byteLength).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
          forEachFrame(message, (frame) => received.push(frame.slice()));
        }
        expect(received).toEqual(frames.map(expected));
        // Every frame decodes on its own, as the receiver's dispatch does.
        for (const frame of received) decodeEnvelope(frame);
      }),
      { numRuns: 200 },
    );
  });

  test("a turn of small frames leaves in one message; a lone frame carries no batch marker", () => {
    const small = Array.from({ length: 50 }, (_, i) => encodeWindowUpdate(i + 1, 1000));
    expect(written(small, true)).toHaveLength(1);
    const [lone] = written([small[0] as Uint8Array], true);
    expect(lone).toEqual(small[0] as Uint8Array);
  });

  test("full frames fill batches up to the limit, then start the next", () => {
    const payload = new Uint8Array(MAX_FRAME_PAYLOAD);
    const frames = Array.from({ length: 8 }, (): DataFrame => ({ streamId: 1, payload, endStream: false }));
    const messages = written(frames, true);
    const perMessage = Math.floor(MAX_BATCH_BYTES / (MAX_FRAME_PAYLOAD + 16));
    expect(messages).toHaveLength(Math.ceil(8 / perMessage));
  });

  test("before protocol version 2 every frame is a message of its own", () => {
    const frames: Outgoing[] = [
      encodeWindowUpdate(1, 5),
      { streamId: 3, payload: new Uint8Array(10), endStream: true },
    ];
    expect(written(frames, false)).toEqual(frames.map(expected));
  });

  test("a refused write stops the rest", () => {
    let calls = 0;
    const frames = [encodeWindowUpdate(1, 5), encodeWindowUpdate(2, 5)];
    expect(writeFrames(frames, false, () => ++calls > 1)).toBe(false);
    expect(calls).toBe(1);
  });
});
