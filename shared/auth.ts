import type { ConnectRequest } from "./gen/tunnel_pb.ts";

/**
 * The protocol version this build speaks. 2 batches frames and merges window updates
 * (proto/tunnel.proto); a gateway still serves agents of every version from
 * `MIN_PROTOCOL_VERSION` and tells older ones to upgrade.
 */
export const PROTOCOL_VERSION = 2;
export const MIN_PROTOCOL_VERSION = 1;

/** The ConnectRequest fields covered by the signature. */
export type ConnectFields = Pick<
  ConnectRequest,
  "agentId" | "token" | "timestampMs" | "nonce" | "protocolVersion"
>;

// Versioned so that a future encoding can never verify against a signature made for this one.
const CANONICAL_PREFIX = new TextEncoder().encode("indranet-connect-v1\n");

const NONCE_BYTES = 16;

// Clocks of edge devices drift and some boot without NTP for a while; five minutes tolerates that
// while still bounding how long a captured request stays usable (and how long nonces are kept).
export const DEFAULT_SKEW_MS = 5 * 60_000;

// A DNS label, so that "<agent-id>.<domain>" is always a valid host name.
const AGENT_ID = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * The bytes that are signed, in this order (all integers big-endian):
 *
 *   20 bytes   ASCII "indranet-connect-v1\n"
 *    4 bytes   u32 length of agent id in UTF-8 bytes, then the agent id (UTF-8)
 *    4 bytes   u32 length of token in UTF-8 bytes, then the token (UTF-8)
 *    8 bytes   u64 timestamp, milliseconds since the Unix epoch
 *    4 bytes   u32 length of nonce, then the nonce bytes
 *    4 bytes   u32 protocol version
 *
 * Every variable-length field carries its length, so no two field tuples share an encoding.
 */
export function canonicalConnectBytes(fields: ConnectFields): Uint8Array {
  const encoder = new TextEncoder();
  const agentId = encoder.encode(fields.agentId);
  const token = encoder.encode(fields.token);
  const size =
    CANONICAL_PREFIX.length + 4 + agentId.length + 4 + token.length + 8 + 4 + fields.nonce.length + 4;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set(CANONICAL_PREFIX, 0);
  let at = CANONICAL_PREFIX.length;
  at = putBytes(out, view, at, agentId);
  at = putBytes(out, view, at, token);
  view.setBigUint64(at, BigInt.asUintN(64, fields.timestampMs));
  at = putBytes(out, view, at + 8, fields.nonce);
  view.setUint32(at, fields.protocolVersion >>> 0);
  return out;
}

function putBytes(out: Uint8Array, view: DataView, at: number, bytes: Uint8Array): number {
  view.setUint32(at, bytes.length);
  out.set(bytes, at + 4);
  return at + 4 + bytes.length;
}

/** HMAC-SHA256 over the canonical bytes, keyed with the secret's UTF-8 bytes (32 bytes). */
// Bun's hasher and the Web Crypto globals rather than node:crypto, whose module alone would add
// several MiB to each binary's resident memory.
export function signConnect(secret: string, fields: ConnectFields): Uint8Array {
  const mac = new Bun.CryptoHasher("sha256", secret).update(canonicalConnectBytes(fields)).digest();
  return new Uint8Array(mac.buffer, mac.byteOffset, mac.byteLength);
}

export function newNonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
}

/** `bytes` random bytes as lowercase hex (tokens and secrets that are generated, not configured). */
export function randomHex(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex");
}

export function verifyConnectSignature(
  secret: string,
  fields: ConnectFields,
  signature: Uint8Array,
): boolean {
  const expected = signConnect(secret, fields);
  // timingSafeEqual throws on unequal lengths; the length of an HMAC is public anyway.
  if (signature.length !== expected.length) return false;
  return crypto.timingSafeEqual(expected, signature);
}

export type ReplayVerdict = "ok" | "stale" | "replayed";

/**
 * Refuses connect requests whose timestamp is outside the skew window or whose (token, nonce) was
 * already accepted. Call it only after the signature verified: then only holders of a secret can
 * add entries, and an attacker cannot fill its memory with forged nonces.
 */
export class ReplayGuard {
  // Key → the time after which the request would be stale anyway, so the nonce can be forgotten.
  // A Map iterates in insertion order, which is what lazy pruning walks.
  readonly #seen = new Map<string, number>();

  constructor(readonly skewMs: number = DEFAULT_SKEW_MS) {}

  get size(): number {
    return this.#seen.size;
  }

  check(token: string, nonce: Uint8Array, timestampMs: bigint, nowMs: number): ReplayVerdict {
    this.#prune(nowMs);
    const ts = Number(timestampMs);
    if (Math.abs(nowMs - ts) > this.skewMs) return "stale";
    const key = replayKey(token, nonce);
    const forgetAt = this.#seen.get(key);
    if (forgetAt !== undefined && forgetAt >= nowMs) return "replayed";
    // Delete first so a re-used key moves to the end of the insertion order.
    this.#seen.delete(key);
    this.#seen.set(key, ts + this.skewMs);
    return "ok";
  }

  // Entries are inserted with forget times at most 2 × skew after insertion, so stopping at the
  // first live entry still bounds memory to the requests accepted in the last 2 × skew.
  #prune(nowMs: number): void {
    for (const [key, forgetAt] of this.#seen) {
      if (forgetAt >= nowMs) return;
      this.#seen.delete(key);
    }
  }
}

function replayKey(token: string, nonce: Uint8Array): string {
  // The length prefix keeps a token ending in hex digits from colliding with another token's nonce.
  return `${token.length}:${token}:${Buffer.from(nonce).toString("hex")}`;
}

export function isValidAgentId(id: string): boolean {
  return AGENT_ID.test(id);
}

/** True when the id equals one of the patterns, where `*` stands for any run of label characters. */
export function agentIdAllowed(patterns: string[], id: string): boolean {
  return patterns.some((pattern) => globToRegExp(pattern).test(id));
}

function globToRegExp(pattern: string): RegExp {
  const parts = pattern.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join("[a-z0-9-]*")}$`);
}

// Enough for every address of a busy attack; beyond it the oldest entries make room.
const MAX_TRACKED_ADDRESSES = 10_000;

interface FailureWindow {
  startMs: number;
  failures: number;
}

/** Blocks a source address after too many failed connect attempts inside a fixed window. */
export class FailureRateLimiter {
  readonly #maxFailures: number;
  readonly #windowMs: number;
  readonly #maxAddresses: number;
  // Insertion order equals window start order: a window that restarts is re-inserted at the end.
  readonly #windows = new Map<string, FailureWindow>();

  constructor(opts: { maxFailures?: number; windowMs?: number; maxAddresses?: number } = {}) {
    this.#maxFailures = opts.maxFailures ?? 10;
    this.#windowMs = opts.windowMs ?? 60_000;
    this.#maxAddresses = opts.maxAddresses ?? MAX_TRACKED_ADDRESSES;
  }

  get size(): number {
    return this.#windows.size;
  }

  blocked(addr: string, nowMs: number): boolean {
    const window = this.#windows.get(addr);
    return window !== undefined && this.#live(window, nowMs) && window.failures >= this.#maxFailures;
  }

  recordFailure(addr: string, nowMs: number): void {
    this.#prune(nowMs);
    const window = this.#windows.get(addr);
    if (window && this.#live(window, nowMs)) {
      window.failures++;
      return;
    }
    this.#windows.delete(addr);
    this.#evictOldestIfFull();
    this.#windows.set(addr, { startMs: nowMs, failures: 1 });
  }

  #live(window: FailureWindow, nowMs: number): boolean {
    return nowMs - window.startMs < this.#windowMs;
  }

  #prune(nowMs: number): void {
    for (const [addr, window] of this.#windows) {
      if (this.#live(window, nowMs)) return;
      this.#windows.delete(addr);
    }
  }

  #evictOldestIfFull(): void {
    if (this.#windows.size < this.#maxAddresses) return;
    const oldest = this.#windows.keys().next();
    if (!oldest.done) this.#windows.delete(oldest.value);
  }
}
