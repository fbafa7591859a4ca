import { describe, expect, test } from "bun:test";
import {
  agentIdAllowed,
  type ConnectFields,
  canonicalConnectBytes,
  DEFAULT_SKEW_MS,
  FailureRateLimiter,
  isValidAgentId,
  newNonce,
  PROTOCOL_VERSION,
  ReplayGuard,
  signConnect,
  verifyConnectSignature,
} from "./auth.ts";

const SECRET = "s3cret-shared-key";
const NOW = 1_700_000_000_000;

function fields(overrides: Partial<ConnectFields> = {}): ConnectFields {
  return {
    agentId: "pi-kitchen",
    token: "tok-1",
    timestampMs: BigInt(NOW),
    nonce: new Uint8Array(16).fill(7),
    protocolVersion: PROTOCOL_VERSION,
    ...overrides,
  };
}

describe("connect signature", () => {
  test("verifies a signature made with the same secret", () => {
    const signature = signConnect(SECRET, fields());
    expect(signature.length).toBe(32);
    expect(verifyConnectSignature(SECRET, fields(), signature)).toBe(true);
  });

  test("refuses a signature made with another secret", () => {
    expect(verifyConnectSignature(SECRET, fields(), signConnect("other", fields()))).toBe(false);
  });

  const changes: [string, Partial<ConnectFields>][] = [
    ["agent id", { agentId: "pi-garage" }],
    ["token", { token: "tok-2" }],
    ["timestamp", { timestampMs: BigInt(NOW + 1) }],
    ["nonce", { nonce: new Uint8Array(16).fill(8) }],
    ["protocol version", { protocolVersion: PROTOCOL_VERSION + 1 }],
  ];
  for (const [name, change] of changes) {
    test(`breaks when the ${name} changes`, () => {
      const signature = signConnect(SECRET, fields());
      expect(verifyConnectSignature(SECRET, fields(change), signature)).toBe(false);
    });
  }

  test("does not confuse fields shifted across a boundary", () => {
    const a = canonicalConnectBytes(fields({ agentId: "ab", token: "c" }));
    const b = canonicalConnectBytes(fields({ agentId: "a", token: "bc" }));
    expect(a).not.toEqual(b);
  });

  test("returns false, without throwing, for a signature of the wrong length", () => {
    const signature = signConnect(SECRET, fields());
    expect(verifyConnectSignature(SECRET, fields(), signature.subarray(0, 31))).toBe(false);
    expect(verifyConnectSignature(SECRET, fields(), new Uint8Array(0))).toBe(false);
    expect(verifyConnectSignature(SECRET, fields(), new Uint8Array(64))).toBe(false);
  });

  test("encodes the documented layout", () => {
    const bytes = canonicalConnectBytes(
      fields({ agentId: "a", token: "t", timestampMs: 258n, nonce: new Uint8Array([9]), protocolVersion: 1 }),
    );
    const prefix = new TextEncoder().encode("indranet-connect-v1\n");
    expect(bytes.subarray(0, 20)).toEqual(prefix);
    expect([...bytes.subarray(20)]).toEqual([
      ...[0, 0, 0, 1, 97],
      ...[0, 0, 0, 1, 116],
      ...[0, 0, 0, 0, 0, 0, 1, 2],
      ...[0, 0, 0, 1, 9],
      ...[0, 0, 0, 1],
    ]);
  });

  test("draws a fresh 16-byte nonce each time", () => {
    const a = newNonce();
    expect(a.length).toBe(16);
    expect(a).not.toEqual(newNonce());
  });
});

describe("replay guard", () => {
  const nonce = new Uint8Array(16).fill(1);

  test("accepts a fresh request", () => {
    expect(new ReplayGuard().check("tok", nonce, BigInt(NOW), NOW)).toBe("ok");
  });

  test("refuses a timestamp too far in the past or the future", () => {
    const guard = new ReplayGuard(1_000);
    expect(guard.check("tok", nonce, BigInt(NOW - 1_001), NOW)).toBe("stale");
    expect(guard.check("tok", nonce, BigInt(NOW + 1_001), NOW)).toBe("stale");
    expect(guard.check("tok", nonce, BigInt(NOW - 1_000), NOW)).toBe("ok");
  });

  test("defaults to a five-minute window", () => {
    expect(new ReplayGuard().skewMs).toBe(DEFAULT_SKEW_MS);
    expect(DEFAULT_SKEW_MS).toBe(300_000);
  });

  test("refuses a replayed nonce", () => {
    const guard = new ReplayGuard();
    expect(guard.check("tok", nonce, BigInt(NOW), NOW)).toBe("ok");
    expect(guard.check("tok", nonce, BigInt(NOW), NOW + 10)).toBe("replayed");
  });

  test("keeps nonces of different tokens apart", () => {
    const guard = new ReplayGuard();
    expect(guard.check("tok-a", nonce, BigInt(NOW), NOW)).toBe("ok");
    expect(guard.check("tok-b", nonce, BigInt(NOW), NOW)).toBe("ok");
  });

  test("forgets nonces once they are older than the window", () => {
    const guard = new ReplayGuard(1_000);
    for (let i = 0; i < 5_000; i++) {
      const n = new Uint8Array(4);
      new DataView(n.buffer).setUint32(0, i);
      expect(guard.check("tok", n, BigInt(NOW), NOW + (i % 100))).toBe("ok");
    }
    expect(guard.size).toBe(5_000);
    expect(guard.check("tok", nonce, BigInt(NOW + 1_500), NOW + 1_500)).toBe("ok");
    expect(guard.size).toBe(1);
  });
});

describe("agent ids", () => {
  test("accepts DNS labels", () => {
    for (const id of ["a", "0", "pi-kitchen", "a1-b2", "a".repeat(63)]) expect(isValidAgentId(id)).toBe(true);
  });

  test("refuses what is not a DNS label", () => {
    const bad = [
      "",
      "a".repeat(64),
      "-pi",
      "pi-",
      "-",
      "Pi",
      "PI-1",
      "pi.kitchen",
      "pi_1",
      "pi kitchen",
      "pì",
    ];
    for (const id of bad) expect(isValidAgentId(id)).toBe(false);
  });
});

describe("agent id patterns", () => {
  test("accepts an exact name and nothing else", () => {
    expect(agentIdAllowed(["pi-kitchen"], "pi-kitchen")).toBe(true);
    expect(agentIdAllowed(["pi-kitchen"], "pi-kitchen2")).toBe(false);
  });

  test("accepts ids matching pi-*", () => {
    expect(agentIdAllowed(["pi-*"], "pi-kitchen")).toBe(true);
    expect(agentIdAllowed(["pi-*"], "pi-")).toBe(true);
    expect(agentIdAllowed(["pi-*"], "nas-1")).toBe(false);
    expect(agentIdAllowed(["pi-*"], "xpi-1")).toBe(false);
  });

  test("accepts any id for *", () => {
    expect(agentIdAllowed(["*"], "anything-9")).toBe(true);
  });

  test("matches stars in the middle and several patterns", () => {
    expect(agentIdAllowed(["nas-1", "*-cam-*"], "door-cam-2")).toBe(true);
    expect(agentIdAllowed(["nas-1", "*-cam-*"], "nas-1")).toBe(true);
    expect(agentIdAllowed(["nas-1", "*-cam-*"], "door-2")).toBe(false);
  });

  test("treats regex characters in a pattern literally", () => {
    expect(agentIdAllowed(["pi.1"], "pix1")).toBe(false);
    expect(agentIdAllowed(["pi+"], "pii")).toBe(false);
    expect(agentIdAllowed(["(a|b)"], "a")).toBe(false);
  });

  test("allows nothing for an empty list", () => {
    expect(agentIdAllowed([], "pi-1")).toBe(false);
  });
});

describe("failure rate limiter", () => {
  test("blocks an address after the configured number of failures", () => {
    const limiter = new FailureRateLimiter({ maxFailures: 3, windowMs: 1_000 });
    for (let i = 0; i < 2; i++) limiter.recordFailure("10.0.0.1", NOW);
    expect(limiter.blocked("10.0.0.1", NOW)).toBe(false);
    limiter.recordFailure("10.0.0.1", NOW);
    expect(limiter.blocked("10.0.0.1", NOW + 999)).toBe(true);
    expect(limiter.blocked("10.0.0.2", NOW)).toBe(false);
  });

  test("unblocks after the window", () => {
    const limiter = new FailureRateLimiter({ maxFailures: 3, windowMs: 1_000 });
    for (let i = 0; i < 3; i++) limiter.recordFailure("10.0.0.1", NOW);
    expect(limiter.blocked("10.0.0.1", NOW + 1_000)).toBe(false);
    limiter.recordFailure("10.0.0.1", NOW + 1_000);
    expect(limiter.blocked("10.0.0.1", NOW + 1_000)).toBe(false);
  });

  test("defaults to ten failures per minute", () => {
    const limiter = new FailureRateLimiter();
    for (let i = 0; i < 9; i++) limiter.recordFailure("a", NOW);
    expect(limiter.blocked("a", NOW)).toBe(false);
    limiter.recordFailure("a", NOW);
    expect(limiter.blocked("a", NOW + 59_999)).toBe(true);
    expect(limiter.blocked("a", NOW + 60_000)).toBe(false);
  });

  test("forgets addresses whose window has passed", () => {
    const limiter = new FailureRateLimiter({ windowMs: 1_000 });
    for (let i = 0; i < 500; i++) limiter.recordFailure(`10.0.${i >> 8}.${i & 255}`, NOW);
    expect(limiter.size).toBe(500);
    limiter.recordFailure("10.9.9.9", NOW + 1_000);
    expect(limiter.size).toBe(1);
  });

  test("caps the number of tracked addresses by evicting the oldest", () => {
    const limiter = new FailureRateLimiter({ maxFailures: 1, windowMs: 60_000, maxAddresses: 100 });
    for (let i = 0; i < 150; i++) limiter.recordFailure(`addr-${i}`, NOW + i);
    expect(limiter.size).toBe(100);
    expect(limiter.blocked("addr-0", NOW + 150)).toBe(false);
    expect(limiter.blocked("addr-149", NOW + 150)).toBe(true);
  });
});
