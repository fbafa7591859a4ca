import { describe, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { EnvelopeSchema } from "./gen/tunnel_pb.ts";
import { decodeEnvelope, encodeData, MAX_FRAME_PAYLOAD } from "./protocol.ts";

function generic(streamId: number, payload: Uint8Array, endStream: boolean): Uint8Array {
  return toBinary(
    EnvelopeSchema,
    create(EnvelopeSchema, { message: { case: "data", value: { streamId, payload, endStream } } }),
  );
}

describe("the hand-written TunnelData encoder", () => {
  test("writes exactly the bytes of the generic protobuf encoder", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constantFrom(0, 1, 127, 128, 16_383, 16_384, 0xffffffff), fc.nat({ max: 0xffffffff })),
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.constantFrom(127, 128, 16_383, 16_384, MAX_FRAME_PAYLOAD).map((n) => new Uint8Array(n).fill(7)),
        ),
        fc.boolean(),
        (streamId, payload, endStream) => {
          expect(encodeData(streamId, payload, endStream)).toEqual(generic(streamId, payload, endStream));
        },
      ),
      { numRuns: 500 },
    );
  });

  test("decodes back to what was encoded", () => {
    const payload = new Uint8Array(MAX_FRAME_PAYLOAD).map((_, i) => i & 0xff);
    const message = decodeEnvelope(encodeData(0xfffffffe, payload, true));
    expect(message.case).toBe("data");
    if (message.case !== "data") return;
    expect(message.value.streamId).toBe(0xfffffffe);
    expect(message.value.endStream).toBe(true);
    expect(new Uint8Array(message.value.payload)).toEqual(payload);
  });
});
