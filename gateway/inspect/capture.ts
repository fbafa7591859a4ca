// One exchange as the inspector keeps it: both heads, the first bytes of both bodies, and when
// the head and the last byte came. Filled in as the request passes; the data path only ever
// appends to it, and copies at most the body limit per direction.

export interface CapturedBody {
  /** Bytes that passed, whether kept or not. */
  size: number;
  /** The first of them, at most the limit. */
  bytes: Uint8Array;
  /** The pooled buffer `bytes` lies in, handed back when the exchange leaves the ring. */
  pooled: Uint8Array | null;
}

/** A response head as it came: the agent's header list, or the gateway's own answer's. */
export type HeadersKept = readonly { name: string; value: string }[] | Headers;

/** Buffers of the body limit, reused: a copied body then costs no allocation, hence no collection. */
export class BufferPool {
  readonly size: number;
  readonly #free: Uint8Array[] = [];
  readonly #max: number;

  constructor(size: number, max: number) {
    this.size = size;
    this.#max = max;
  }

  take(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(this.size);
  }

  give(buffer: Uint8Array | null): void {
    if (buffer !== null && this.#free.length < this.#max) this.#free.push(buffer);
  }
}

export interface CapturedExchange {
  id: string;
  agent: string;
  method: string;
  /** With the query string. */
  path: string;
  clientIp: string;
  /** Unix ms. */
  startedAt: number;
  status: number;
  /** The gateway's own X-Tunnel-Error code, or "". */
  error: string;
  durationMs: number;
  requestHeaders: [string, string][];
  requestBody: CapturedBody;
  responseHeaders: HeadersKept | null;
  responseBody: CapturedBody;
  /** From the start, in ms; null when it never came: the whole request with the agent, the head, the end. */
  sentMs: number | null;
  headMs: number | null;
  lastByteMs: number | null;
  /** The exchange this one replays, when it was sent from the inspector. */
  replayOf: string | null;
}

export interface ExchangeStart {
  id: string;
  agent: string;
  method: string;
  path: string;
  clientIp: string;
  requestHeaders: [string, string][];
  replayOf: string | null;
}

/** Below this many bytes a body is copied as it is; above, into a buffer of the pool. */
const SMALL_BODY = 8 * 1024;

/** Collects the first `limit` bytes of a body from the chunks that pass. */
class BodyTap {
  size = 0;
  readonly #limit: number;
  readonly #pool: BufferPool;
  /** Small copies until they would pass SMALL_BODY, then one pooled buffer. */
  #chunks: Uint8Array[] = [];
  #buffer: Uint8Array | null = null;
  #kept = 0;

  constructor(limit: number, pool: BufferPool) {
    this.#limit = limit;
    this.#pool = pool;
  }

  add(chunk: Uint8Array): void {
    this.size += chunk.byteLength;
    const room = this.#limit - this.#kept;
    if (room <= 0 || chunk.byteLength === 0) return;
    const part = chunk.byteLength > room ? chunk.subarray(0, room) : chunk;
    // A copy either way: the chunk is a view into a WebSocket message the tunnel reuses or frees.
    if (this.#buffer === null && this.#kept + part.byteLength <= SMALL_BODY) {
      this.#chunks.push(part.slice());
    } else {
      if (this.#buffer === null) this.#buffer = this.#gather(this.#pool.take());
      this.#buffer.set(part, this.#kept);
    }
    this.#kept += part.byteLength;
  }

  result(): CapturedBody {
    if (this.#buffer !== null) {
      return { size: this.size, bytes: this.#buffer.subarray(0, this.#kept), pooled: this.#buffer };
    }
    const only = this.#chunks.length === 1 ? this.#chunks[0] : undefined;
    const bytes = only ?? this.#gather(new Uint8Array(this.#kept));
    return { size: this.size, bytes, pooled: null };
  }

  /** The small copies so far, into `into`. */
  #gather(into: Uint8Array): Uint8Array {
    let at = 0;
    for (const chunk of this.#chunks) {
      into.set(chunk, at);
      at += chunk.byteLength;
    }
    this.#chunks = [];
    return into;
  }
}

export class Capture {
  readonly #start: ExchangeStart;
  readonly #startedAt = Date.now();
  readonly #t0 = performance.now();
  readonly #request: BodyTap;
  readonly #response: BodyTap;
  #responseHeaders: HeadersKept | null = null;
  #headMs: number | null = null;
  #sentMs: number | null = null;
  readonly #done: (exchange: CapturedExchange) => void;

  constructor(
    start: ExchangeStart,
    bodyLimit: number,
    pool: BufferPool,
    done: (exchange: CapturedExchange) => void,
  ) {
    this.#start = start;
    this.#request = new BodyTap(bodyLimit, pool);
    this.#response = new BodyTap(bodyLimit, pool);
    this.#done = done;
  }

  requestBody(chunk: Uint8Array): void {
    this.#request.add(chunk);
  }

  /** The whole request (body included) has gone to the agent. */
  requestSent(): void {
    this.#sentMs ??= performance.now() - this.#t0;
  }

  /** Kept as given: turned into pairs only if the API is asked for it. */
  responseHead(headers: HeadersKept): void {
    this.#headMs = performance.now() - this.#t0;
    this.#responseHeaders = headers;
  }

  responseBody(chunk: Uint8Array): void {
    this.#response.add(chunk);
  }

  /** The exchange is over: it goes into the ring. */
  finish(status: number, error: string): void {
    const durationMs = performance.now() - this.#t0;
    this.#done({
      ...this.#start,
      startedAt: this.#startedAt,
      status,
      error,
      durationMs,
      requestBody: this.#request.result(),
      responseHeaders: this.#responseHeaders,
      responseBody: this.#response.result(),
      sentMs: this.#sentMs,
      headMs: this.#headMs,
      lastByteMs: status === 0 ? null : durationMs,
    });
  }
}
