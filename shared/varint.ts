// Protobuf's base-128 varints, for the hand-written encoders (codec.ts, protocol.ts, batch.ts).
// Division rather than bit shifts: lengths and ids go past 2^31, where `>>` turns negative.

/** Bytes the varint of `value` takes. */
export function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/** Writes the varint of `value` at `at`; returns where it ends. */
export function writeVarint(out: Uint8Array, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  out[at++] = value;
  return at;
}
