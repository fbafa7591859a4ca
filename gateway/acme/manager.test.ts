import { describe, expect, test } from "bun:test";
import { renewalTime } from "./manager.ts";

const DAY = 86_400_000;

describe("renewal time", () => {
  test("30 days before expiry for a 90-day certificate", () => {
    expect(renewalTime({ notBefore: 0, notAfter: 90 * DAY })).toBe(60 * DAY);
  });

  test("when a third of a shorter life is left", () => {
    expect(renewalTime({ notBefore: 0, notAfter: 6 * DAY })).toBe(4 * DAY);
    expect(renewalTime({ notBefore: 1_000, notAfter: 16_000 })).toBe(11_000);
  });
});
