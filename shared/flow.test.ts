import { describe, expect, test } from "bun:test";
import { MAX_STREAM_WINDOW, ReceiveWindow, WindowBudget } from "./flow.ts";
import { INITIAL_WINDOW } from "./protocol.ts";

/** `bytes` arrive and are handed on at once, in chunks of 16 KiB. */
function pass(window: ReceiveWindow, bytes: number): void {
  for (let sent = 0; sent < bytes; sent += 16 * 1024) {
    expect(window.receive(16 * 1024)).toBe(true);
    window.handedOn(16 * 1024);
  }
}

describe("receive windows that grow", () => {
  test("a stream that empties its window far faster than a long round trip grows at once, within the budget", () => {
    const budget = new WindowBudget(64 * 1024 * 1024);
    budget.sample(100);
    const credits: number[] = [];
    const window = new ReceiveWindow(INITIAL_WINDOW, (n) => credits.push(n), budget);
    pass(window, 2 * INITIAL_WINDOW);
    // Not merely doubled: the rate seen over a 100 ms round trip asks for the largest window.
    expect(window.window).toBe(MAX_STREAM_WINDOW);
    expect(budget.left).toBe(64 * 1024 * 1024 - (MAX_STREAM_WINDOW - INITIAL_WINDOW));
    // The growth reached the peer as credit, on top of the bytes handed on.
    window.flush();
    expect(credits.reduce((a, b) => a + b, 0)).toBe(2 * INITIAL_WINDOW + MAX_STREAM_WINDOW - INITIAL_WINDOW);
    window.dispose();
    expect(budget.left).toBe(64 * 1024 * 1024);
  });

  test("no stream grows past what the connection's budget has left", () => {
    const budget = new WindowBudget(INITIAL_WINDOW);
    budget.sample(100);
    const first = new ReceiveWindow(INITIAL_WINDOW, () => {}, budget);
    const second = new ReceiveWindow(INITIAL_WINDOW, () => {}, budget);
    pass(first, 2 * INITIAL_WINDOW);
    pass(second, 2 * INITIAL_WINDOW);
    expect(first.window + second.window).toBe(3 * INITIAL_WINDOW);
    expect(budget.left).toBe(0);
  });

  test("a stream whose reader is the limit keeps its window", async () => {
    const budget = new WindowBudget(64 * 1024 * 1024);
    budget.sample(0.01);
    const window = new ReceiveWindow(INITIAL_WINDOW, () => {}, budget);
    for (let i = 0; i < 8; i++) {
      pass(window, INITIAL_WINDOW / 2);
      // A reader far slower than the round trip: each half window takes 500 round trips.
      await Bun.sleep(5);
    }
    expect(window.window).toBe(INITIAL_WINDOW);
  });

  test("without a budget a window never grows", () => {
    const window = new ReceiveWindow(INITIAL_WINDOW, () => {});
    pass(window, 8 * INITIAL_WINDOW);
    expect(window.window).toBe(INITIAL_WINDOW);
  });
});
