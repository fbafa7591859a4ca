import { describe, expect, test } from "bun:test";
import { backoffDelay, MAX_DELAY_MS } from "./backoff.ts";

describe("reconnect backoff", () => {
  test("grows with each failure and never exceeds the cap", () => {
    const high = () => 1;
    expect(backoffDelay(0, high)).toBe(500);
    expect(backoffDelay(1, high)).toBe(1000);
    expect(backoffDelay(3, high)).toBe(4000);
    expect(backoffDelay(50, high)).toBe(MAX_DELAY_MS);
  });

  test("spreads agents over the upper half of the interval", () => {
    expect(backoffDelay(4, () => 0)).toBe(4000);
    expect(backoffDelay(4, () => 1)).toBe(8000);
  });
});
