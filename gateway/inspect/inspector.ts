// The inspector: it opens a Capture for each exchange the ingress runs (heads only for agents
// configured with `inspect = false`), records the gateway's own answers, and marks the requests
// it replays so that the new exchange names the one it repeats.
import { BufferPool, Capture, type CapturedExchange, type ExchangeStart } from "./capture.ts";
import { ExchangeRing } from "./ring.ts";

/** Marks a replayed request: `<replayed id>.<hmac>` under a key only this process knows. */
export const REPLAY_HEADER = "x-indranet-replay";

export class Inspector {
  readonly ring: ExchangeRing;
  readonly #bodyLimit: number;
  readonly #headsOnly: ReadonlySet<string>;
  readonly #replayKey = crypto.getRandomValues(new Uint8Array(32));
  readonly #add = (exchange: CapturedExchange) => this.ring.add(exchange);

  readonly #pool: BufferPool;

  constructor(capacity: number, bodyLimit: number, headsOnly: readonly string[]) {
    // Two bodies per exchange in the ring, and some for the exchanges still running.
    this.#pool = new BufferPool(bodyLimit, 2 * capacity + 64);
    this.ring = new ExchangeRing(capacity, (gone) => {
      this.#pool.give(gone.requestBody.pooled);
      this.#pool.give(gone.responseBody.pooled);
    });
    this.#bodyLimit = bodyLimit;
    this.#headsOnly = new Set(headsOnly);
  }

  begin(start: ExchangeStart): Capture {
    const limit = this.#headsOnly.has(start.agent) ? 0 : this.#bodyLimit;
    return new Capture(start, limit, this.#pool, this.#add);
  }

  /** An answer the gateway gave itself (404, 413, 503…): heads and its short text. */
  answered(start: ExchangeStart, response: Response, error: string, text: string): void {
    const capture = this.begin(start);
    capture.responseHead(response.headers);
    capture.responseBody(new TextEncoder().encode(text));
    capture.finish(response.status, error);
  }

  replayHeader(id: string): string {
    return `${id}.${this.#mac(id)}`;
  }

  /** The id a request replays, when its replay header is this process's own. */
  replayOf(header: string | null): string | null {
    if (header === null) return null;
    const dot = header.lastIndexOf(".");
    const id = header.slice(0, dot);
    return dot > 0 && header.slice(dot + 1) === this.#mac(id) ? id : null;
  }

  #mac(id: string): string {
    return new Bun.CryptoHasher("sha256", this.#replayKey).update(id).digest("hex");
  }
}
