// The last N exchanges, newest last, and whoever follows them live. Memory is bounded by N and
// the body limit: an entry is dropped as the N+1st arrives.
import type { CapturedExchange } from "./capture.ts";

export type RingListener = (exchange: CapturedExchange) => void;

export class ExchangeRing {
  readonly capacity: number;
  readonly #entries = new Map<string, CapturedExchange>();
  readonly #listeners = new Set<RingListener>();
  readonly #release: (exchange: CapturedExchange) => void;

  /** `release` gets each exchange that leaves the ring, to hand its buffers back. */
  constructor(capacity: number, release: (exchange: CapturedExchange) => void = () => {}) {
    this.capacity = capacity;
    this.#release = release;
  }

  add(exchange: CapturedExchange): void {
    // A replay may reuse nothing, but an id seen twice (a forwarded retry) keeps the newest.
    const same = this.#entries.get(exchange.id);
    if (same) {
      this.#entries.delete(exchange.id);
      this.#release(same);
    }
    this.#entries.set(exchange.id, exchange);
    if (this.#entries.size > this.capacity) {
      const [id, oldest] = this.#entries.entries().next().value as [string, CapturedExchange];
      this.#entries.delete(id);
      this.#release(oldest);
    }
    for (const listener of this.#listeners) listener(exchange);
  }

  get(id: string): CapturedExchange | undefined {
    return this.#entries.get(id);
  }

  /** Newest first. */
  list(): CapturedExchange[] {
    return [...this.#entries.values()].reverse();
  }

  /** Returns the function that stops following. */
  follow(listener: RingListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
