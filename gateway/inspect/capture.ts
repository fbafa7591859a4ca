// One exchange as the inspector keeps it: both heads, the first bytes of both bodies, and when
// the head and the last byte came. Filled in as the request passes; the data path only ever
// appends to it, and copies at most the body limit per direction.

export interface CapturedBody {
  /** Bytes that passed, whether kept or not. */
  size: number;
  /** The first of them, at most the limit. */
  bytes: Uint8Array;
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
  responseHeaders: [string, string][] | null;
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

/** Collects the first `limit` bytes of a body from the chunks that pass. */
class BodyTap {
  size = 0;
  readonly #limit: number;
  #chunks: Uint8Array[] = [];
  #kept = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  add(chunk: Uint8Array): void {
    this.size += chunk.byteLength;
    const room = this.#limit - this.#kept;
    if (room <= 0 || chunk.byteLength === 0) return;
    // A copy: the chunk is a view into a WebSocket message the tunnel reuses or frees.
    const kept = chunk.slice(0, room);
    this.#chunks.push(kept);
    this.#kept += kept.byteLength;
  }

  result(): CapturedBody {
    if (this.#chunks.length === 1) return { size: this.size, bytes: this.#chunks[0] as Uint8Array };
    const bytes = new Uint8Array(this.#kept);
    let at = 0;
    for (const chunk of this.#chunks) {
      bytes.set(chunk, at);
      at += chunk.byteLength;
    }
    return { size: this.size, bytes };
  }
}

export class Capture {
  readonly #start: ExchangeStart;
  readonly #startedAt = Date.now();
  readonly #t0 = performance.now();
  readonly #request: BodyTap;
  readonly #response: BodyTap;
  #responseHeaders: [string, string][] | null = null;
  #headMs: number | null = null;
  #sentMs: number | null = null;
  readonly #done: (exchange: CapturedExchange) => void;

  constructor(start: ExchangeStart, bodyLimit: number, done: (exchange: CapturedExchange) => void) {
    this.#start = start;
    this.#request = new BodyTap(bodyLimit);
    this.#response = new BodyTap(bodyLimit);
    this.#done = done;
  }

  requestBody(chunk: Uint8Array): void {
    this.#request.add(chunk);
  }

  /** The whole request (body included) has gone to the agent. */
  requestSent(): void {
    this.#sentMs ??= performance.now() - this.#t0;
  }

  responseHead(headers: Headers | [string, string][]): void {
    this.#headMs = performance.now() - this.#t0;
    this.#responseHeaders = Array.isArray(headers) ? headers : [...headers];
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
