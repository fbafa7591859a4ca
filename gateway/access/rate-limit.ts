// A token bucket per key (a client address for one agent): `burst` requests at once, then one
// each 1/`perSecond` s. Memory is bounded: buckets are kept least recently used first, a bucket
// that has filled up again is the same as none and is dropped, and past the cap the least
// recently used one makes room.

export interface Rate {
  /** Tokens added per second. */
  perSecond: number;
  /** The most tokens a bucket holds: the requests a quiet client may send at once. */
  burst: number;
}

/** Addresses tracked per rate-limited agent table; beyond it the least recently seen is dropped. */
export const MAX_TRACKED_ADDRESSES = 10_000;

/** Idle buckets dropped per request, so clean-up costs each request a bounded amount. */
const EVICT_PER_TAKE = 2;

interface Bucket {
  tokens: number;
  atMs: number;
}

export class RateLimiter {
  readonly rate: Rate;
  readonly #buckets = new Map<string, Bucket>();
  readonly #max: number;

  constructor(rate: Rate, maxTracked = MAX_TRACKED_ADDRESSES) {
    this.rate = rate;
    this.#max = maxTracked;
  }

  get tracked(): number {
    return this.#buckets.size;
  }

  /** 0 when the request may pass (and spends a token), else the whole seconds until it may. */
  take(key: string, nowMs: number): number {
    this.#dropIdle(nowMs);
    let bucket = this.#buckets.get(key);
    if (bucket) {
      this.#buckets.delete(key);
      bucket.tokens = this.#level(bucket, nowMs);
      bucket.atMs = nowMs;
    } else {
      if (this.#buckets.size >= this.#max) this.#buckets.delete(this.#buckets.keys().next().value as string);
      bucket = { tokens: this.rate.burst, atMs: nowMs };
    }
    // Re-inserted, so the map's order stays least recently used first.
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.rate.perSecond));
  }

  #level(bucket: Bucket, nowMs: number): number {
    return Math.min(this.rate.burst, bucket.tokens + ((nowMs - bucket.atMs) / 1000) * this.rate.perSecond);
  }

  #dropIdle(nowMs: number): void {
    let n = 0;
    for (const [key, bucket] of this.#buckets) {
      if (n++ === EVICT_PER_TAKE || this.#level(bucket, nowMs) < this.rate.burst) return;
      this.#buckets.delete(key);
    }
  }
}
