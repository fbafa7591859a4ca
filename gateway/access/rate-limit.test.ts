import { describe, expect, test } from "bun:test";
import { RateLimiter } from "./rate-limit.ts";

describe("the token bucket", () => {
  test("lets a burst through, then one request per interval, and says how long to wait", () => {
    const limiter = new RateLimiter({ perSecond: 2, burst: 3 });
    expect([0, 0, 0].map(() => limiter.take("a", 0))).toEqual([0, 0, 0]);
    expect(limiter.take("a", 0)).toBe(1);
    expect(limiter.take("a", 499)).toBe(1);
    expect(limiter.take("a", 500)).toBe(0);
    expect(limiter.take("a", 500)).toBe(1);
  });

  test("a slow rate asks for a longer wait", () => {
    const limiter = new RateLimiter({ perSecond: 1 / 60, burst: 1 });
    expect(limiter.take("a", 0)).toBe(0);
    expect(limiter.take("a", 0)).toBe(60);
    expect(limiter.take("a", 30_000)).toBe(30);
  });

  test("each key has its own bucket", () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 1 });
    expect(limiter.take("a", 0)).toBe(0);
    expect(limiter.take("b", 0)).toBe(0);
    expect(limiter.take("a", 0)).toBe(1);
  });

  test("refills no further than the burst", () => {
    const limiter = new RateLimiter({ perSecond: 10, burst: 2 });
    limiter.take("a", 0);
    limiter.take("a", 0);
    expect([0, 0, 0].map(() => limiter.take("a", 60_000))).toEqual([0, 0, 1]);
  });

  test("drops buckets that have filled up again, and never tracks more than its cap", () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 1 }, 100);
    for (let i = 0; i < 1000; i++) limiter.take(`ip-${i}`, 0);
    expect(limiter.tracked).toBe(100);
    // The least recently seen made room: the latest keys are still limited.
    expect(limiter.take("ip-999", 0)).toBe(1);
    for (let i = 0; i < 100; i++) limiter.take(`later-${i % 3}`, 10_000 + i);
    expect(limiter.tracked).toBeLessThan(10);
  });
});
