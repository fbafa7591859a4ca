import { describe, expect, test } from "bun:test";
import { HeldRequests } from "./hold.ts";

const STARTED = 1_000_000;
const allowed = (id: string) => id.startsWith("pi-");

describe("which requests are held", () => {
  test("any allowed id while the gateway is younger than the hold, then only ids that just left", () => {
    const holds = new HeldRequests(5_000, allowed, STARTED);
    expect(holds.shouldHold("pi-new", STARTED + 1_000)).toBe(true);
    expect(holds.shouldHold("other", STARTED + 1_000)).toBe(false);
    expect(holds.shouldHold("pi-new", STARTED + 6_000)).toBe(false);
    holds.left("pi-gone", STARTED + 6_000);
    expect(holds.shouldHold("pi-gone", STARTED + 10_000)).toBe(true);
    expect(holds.shouldHold("pi-gone", STARTED + 11_000)).toBe(false);
  });

  test("the cluster's answer replaces the start-up guess, but not what this gateway saw", () => {
    const holds = new HeldRequests(5_000, allowed, STARTED);
    expect(holds.shouldHold("pi-new", STARTED + 1_000, { seenElsewhere: false })).toBe(false);
    expect(holds.shouldHold("pi-new", STARTED + 9_000, { seenElsewhere: true })).toBe(true);
    holds.left("pi-here", STARTED + 9_000);
    expect(holds.shouldHold("pi-here", STARTED + 9_500, { seenElsewhere: false })).toBe(true);
  });

  test("nothing is held with --hold 0, nor for an id no token allows any more", () => {
    expect(new HeldRequests(0, allowed, STARTED).shouldHold("pi-new", STARTED)).toBe(false);
    const holds = new HeldRequests(5_000, () => false, STARTED);
    holds.left("pi-revoked", STARTED);
    expect(holds.shouldHold("pi-revoked", STARTED + 1)).toBe(false);
  });

  test("an arrival wakes the waiters for its id only; an abort and a timeout end a wait", async () => {
    const holds = new HeldRequests(5_000, allowed, STARTED);
    const never = new AbortController().signal;
    const waiting = holds.wait("pi-a", 10_000, never);
    const other = holds.wait("pi-b", 50, never);
    expect(holds.held).toBe(2);
    holds.arrived("pi-a");
    expect(await waiting).toBe("woken");
    expect(await other).toBe("timeout");
    const aborted = new AbortController();
    const cut = holds.wait("pi-a", 10_000, aborted.signal);
    aborted.abort();
    expect(await cut).toBe("aborted");
    expect(holds.held).toBe(0);
  });

  test("the memory of departures is pruned once older than the hold", () => {
    const holds = new HeldRequests(5_000, allowed, STARTED);
    holds.left("pi-a", STARTED + 10_000);
    holds.prune(STARTED + 16_000);
    expect(holds.shouldHold("pi-a", STARTED + 14_000)).toBe(false);
  });
});
