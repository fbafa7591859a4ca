import { describe, expect, test } from "bun:test";
import { BufferPool, Capture, type CapturedExchange } from "./capture.ts";
import { ExchangeRing } from "./ring.ts";

const start = {
  id: "a",
  agent: "pi",
  method: "GET",
  path: "/",
  clientIp: "",
  requestHeaders: [],
  replayOf: null,
};

function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
}

function captured(limit: number, pool: BufferPool, chunks: Uint8Array[]): CapturedExchange {
  let result: CapturedExchange | undefined;
  const capture = new Capture(start, limit, pool, (exchange) => (result = exchange));
  for (const chunk of chunks) capture.responseBody(chunk);
  capture.finish(200, "");
  return result as CapturedExchange;
}

describe("body capture", () => {
  test("keeps exactly the first `limit` bytes across chunks, small bodies as plain copies", () => {
    const pool = new BufferPool(20_000, 4);
    const small = captured(20_000, pool, [bytes(3, 1), bytes(4, 2)]);
    expect(small.responseBody).toEqual({
      size: 7,
      bytes: Uint8Array.from([...bytes(3, 1), ...bytes(4, 2)]),
      pooled: null,
    });
    const chunks = [bytes(6_000, 3), bytes(6_000, 4), bytes(12_000, 5)];
    const large = captured(20_000, pool, chunks);
    const all = Uint8Array.from(chunks.flatMap((c) => [...c]));
    expect(large.responseBody.size).toBe(24_000);
    expect(large.responseBody.bytes).toEqual(all.subarray(0, 20_000));
    expect(large.responseBody.pooled).not.toBeNull();
  });

  test("the chunks are copied: changing them afterwards changes nothing kept", () => {
    const chunk = bytes(10_000, 9);
    const kept = captured(64, new BufferPool(64, 1), [chunk]);
    chunk.fill(0);
    expect(kept.responseBody.bytes).toEqual(bytes(10_000, 9).subarray(0, 64));
  });

  test("a buffer goes back to the pool when its exchange leaves the ring, and is used again", () => {
    const pool = new BufferPool(16_384, 4);
    const ring = new ExchangeRing(1, (gone) => pool.give(gone.responseBody.pooled));
    const first = captured(16_384, pool, [bytes(16_384, 1)]);
    ring.add(first);
    ring.add({ ...captured(16_384, pool, [bytes(9_000, 2)]), id: "b" });
    const third = captured(16_384, pool, [bytes(10_000, 3)]);
    expect(third.responseBody.pooled).toBe(first.responseBody.pooled);
    expect(third.responseBody.bytes).toEqual(bytes(10_000, 3));
  });
});
