import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { TunnelClose_Reason } from "./gen/tunnel_pb.ts";
import {
  decodeEnvelope,
  encodeClose,
  encodeData,
  encodeEnvelope,
  encodeWindowUpdate,
  MAX_ENVELOPE_BYTES,
  ProtocolError,
} from "./protocol.ts";

// Bounded so the file runs in well under five seconds.
const RUNS = 2000;

/** Decodes a frame; only ProtocolError may escape the decoder, anything else fails the property. */
function decodes(frame: Uint8Array): boolean {
  try {
    decodeEnvelope(frame);
    return true;
  } catch (error) {
    if (error instanceof ProtocolError) return false;
    throw error;
  }
}

const text = fc.string({ maxLength: 40 });
const bytes = fc.uint8Array({ maxLength: 300 });
const u32 = fc.nat({ max: 0xffffffff });

/** One valid frame of each kind either side sends. */
const validFrame: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc
    .record({
      agentId: text,
      token: text,
      nonce: bytes,
      signature: bytes,
      timestampMs: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    })
    .map((value) =>
      encodeEnvelope({ case: "connect", value: { ...value, protocolVersion: 1, agentVersion: "x" } }),
    ),
  fc
    .record({
      streamId: u32,
      method: text,
      path: text,
      headers: fc.array(fc.record({ name: text, value: text }), { maxLength: 5 }),
      body: bytes,
      endStream: fc.boolean(),
    })
    .map((value) => encodeEnvelope({ case: "request", value })),
  fc
    .record({ streamId: u32, status: u32, body: bytes, endStream: fc.boolean(), window: u32 })
    .map((value) => encodeEnvelope({ case: "response", value })),
  fc.tuple(u32, bytes, fc.boolean()).map(([id, payload, end]) => encodeData(id, payload, end)),
  fc.tuple(u32, text).map(([id, message]) => encodeClose(id, TunnelClose_Reason.PROTOCOL_ERROR, message)),
  fc.tuple(u32, u32).map(([id, increment]) => encodeWindowUpdate(id, increment)),
);

type Mutation = { kind: "flip" | "insert" | "delete" | "truncate"; at: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom("flip", "insert", "delete", "truncate"),
  at: fc.nat(),
  value: fc.nat({ max: 255 }),
});

function mutate(frame: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = Uint8Array.from(frame);
  for (const { kind, at, value } of mutations) {
    const i = out.length === 0 ? 0 : at % out.length;
    if (kind === "flip" && out.length > 0) out[i] = (out[i] as number) ^ (value | 1);
    if (kind === "insert") out = Uint8Array.from([...out.subarray(0, i), value, ...out.subarray(i)]);
    if (kind === "delete") out = Uint8Array.from([...out.subarray(0, i), ...out.subarray(i + 1)]);
    if (kind === "truncate") out = out.subarray(0, i);
  }
  return out;
}

describe("envelope decoder under arbitrary input", () => {
  test("random bytes only ever raise ProtocolError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (frame) => {
        decodes(frame);
      }),
      { numRuns: RUNS },
    );
  });

  test("mutated and truncated valid frames only ever raise ProtocolError", () => {
    fc.assert(
      fc.property(validFrame, fc.array(mutation, { minLength: 1, maxLength: 4 }), (frame, mutations) => {
        decodes(mutate(frame, mutations));
      }),
      { numRuns: RUNS },
    );
  });

  test("every valid frame decodes back to a known message", () => {
    fc.assert(
      fc.property(validFrame, (frame) => {
        expect(decodes(frame)).toBe(true);
      }),
      { numRuns: RUNS / 4 },
    );
  });

  test("a frame above the size limit is refused before it is parsed", () => {
    expect(() => decodeEnvelope(new Uint8Array(MAX_ENVELOPE_BYTES + 1))).toThrow(ProtocolError);
  });
});
