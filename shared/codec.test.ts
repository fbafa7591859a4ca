import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { decodeHot, encodeRequest, encodeResponse } from "./codec.ts";
import { EnvelopeSchema } from "./gen/tunnel_pb.ts";
import { encodeData } from "./protocol.ts";

const RUNS = 500;
// Any UTF-16, lone surrogates included: both encoders must turn them into the same bytes.
const text = fc.oneof(fc.string({ maxLength: 30 }), fc.string({ unit: "binary", maxLength: 30 }));
const u32 = fc.oneof(fc.constantFrom(0, 1, 127, 128, 16_384, 0xffffffff), fc.nat({ max: 0xffffffff }));
const bytes = fc.uint8Array({ maxLength: 200 });
const headers = fc.array(fc.record({ name: text, value: text }), { maxLength: 6 });

const request = fc.record({
  streamId: u32,
  requestId: text,
  method: text,
  path: text,
  headers,
  body: bytes,
  endStream: fc.boolean(),
  window: u32,
  websocket: fc.boolean(),
  tcpService: text,
});
const response = fc.record({
  streamId: u32,
  status: u32,
  headers,
  body: bytes,
  endStream: fc.boolean(),
  window: u32,
});

function generic(message: Parameters<typeof create<typeof EnvelopeSchema>>[1]): Uint8Array {
  return toBinary(EnvelopeSchema, create(EnvelopeSchema, message));
}

/** What protobuf-es decodes, without the bookkeeping a hand-decoded message does not carry. */
function decodedByLibrary(frame: Uint8Array): unknown {
  return JSON.parse(JSON.stringify(fromBinary(EnvelopeSchema, frame).message, replacer));
}

function decodedByHand(frame: Uint8Array): unknown {
  return JSON.parse(JSON.stringify(decodeHot(frame), replacer));
}

function replacer(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? [...value] : value;
}

describe("the hand-written codec for requests, responses and data", () => {
  test("encodes a request exactly as protobuf-es does, and decodes it back", () => {
    fc.assert(
      fc.property(request, (value) => {
        const frame = encodeRequest(value);
        expect(frame).toEqual(generic({ message: { case: "request", value } }));
        expect(decodedByHand(frame)).toEqual(decodedByLibrary(frame));
      }),
      { numRuns: RUNS },
    );
  });

  test("encodes a response exactly as protobuf-es does, and decodes it back", () => {
    fc.assert(
      fc.property(response, (value) => {
        const frame = encodeResponse(value);
        expect(frame).toEqual(generic({ message: { case: "response", value } }));
        expect(decodedByHand(frame)).toEqual(decodedByLibrary(frame));
      }),
      { numRuns: RUNS },
    );
  });

  test("decodes data frames as protobuf-es does", () => {
    fc.assert(
      fc.property(u32, bytes, fc.boolean(), (streamId, payload, endStream) => {
        const frame = encodeData(streamId, payload, endStream);
        expect(decodedByHand(frame)).toEqual(decodedByLibrary(frame));
      }),
      { numRuns: RUNS },
    );
  });

  test("skips fields it does not know, as a newer peer may send them", () => {
    const known = encodeResponse({ streamId: 7, status: 200, endStream: true });
    // Field 15 (varint 5) appended inside the response.
    const inner = [...known.subarray(2), 15 << 3, 5];
    const frame = new Uint8Array([known[0] as number, inner.length, ...inner]);
    const decoded = decodeHot(frame);
    expect(decoded?.case).toBe("response");
    expect(decoded?.case === "response" && decoded.value.status).toBe(200);
    expect(decoded?.case === "response" && decoded.value.endStream).toBe(true);
  });

  test("leaves every other Envelope, and anything after the first field, to the generic decoder", () => {
    const close = generic({ message: { case: "close", value: { streamId: 1, message: "x" } } });
    expect(decodeHot(close)).toBeUndefined();
    const data = encodeData(1, new Uint8Array([1, 2]), false);
    expect(decodeHot(new Uint8Array([...data, ...data]))).toBeUndefined();
  });
});
