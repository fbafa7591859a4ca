// Strict incremental HTTP/1.1 response parser for the agent's connections to the local service.
// One exchange is in flight per connection; after it ends the parser serves the next one.

/**
 * Largest response head (status line and fields, also the trailer section) accepted. Four times
 * Bun.serve's 16 KiB request-head limit: generous for any real service, yet a bound on what one
 * connection may make the agent buffer.
 */
export const MAX_HEAD_SIZE = 64 * 1024;

/** Longest chunk-size line with its extensions: bounds buffering of extensions nobody uses. */
const MAX_CHUNK_LINE_SIZE = 4 * 1024;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const SEMICOLON = 59;

const STATUS_LINE = /^HTTP\/1\.(\d) ([1-5]\d\d)(?: (.*))?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const DIGITS = /^\d+$/;
// RFC 9110 §5.5: CR, LF and NUL in a field are dangerous; a CR is only legal as part of CRLF.
const FORBIDDEN_IN_HEAD = /\0|\r(?!\n)/;
// Only SP and HTAB are optional whitespace; String.trim() would also eat NBSP and friends.
const OWS_EDGES = /^[ \t]+|[ \t]+$/g;

export interface ResponseHead {
  status: number;
  statusText: string;
  /** Names lowercased; order and repeated fields (Set-Cookie) kept. */
  headers: [string, string][];
}

export class Http1Error extends Error {
  readonly code = "HTTP1_PARSE";
  override name = "Http1Error";
}

export interface ResponseSink {
  /**
   * Once per final (non-1xx) response, and for 101. When chunked framing overrides a
   * Content-Length, that Content-Length is removed first: forwarding it would misdescribe the body.
   */
  head(head: ResponseHead): void;
  /** Decoded body bytes; may be a view into the fed chunk, so copy it to keep it. */
  body(chunk: Uint8Array): void;
  /** The message is complete; `reusable` says whether the connection may carry another exchange. */
  end(reusable: boolean): void;
}

type State =
  | "idle"
  | "head"
  | "length"
  | "chunk-size"
  | "chunk-data"
  | "chunk-crlf"
  | "trailers"
  | "close"
  | "upgraded"
  | "failed";

type Framing = "none" | "length" | "chunked" | "close";

interface BodyPlan {
  framing: Framing;
  length: number;
  reusable: boolean;
}

/**
 * Parses the response to the one request in flight. An Http1Error (thrown from feed or finish)
 * means the connection must be closed; it can follow end(false) when the server sent bytes past the
 * end of the response. After an error every further feed throws again.
 */
export class ResponseParser {
  readonly #sink: ResponseSink;
  #state: State = "idle";
  #isUpgraded = false;
  #headRequest = false;
  #started = false;
  #reusable = false;
  /** Body bytes left in the current Content-Length body or chunk. */
  #remaining = 0;
  /** Bytes of the CRLF after a chunk's data already seen (0 or 1). */
  #crlfSeen = 0;
  /** A head or chunk-size line split across feeds is collected here. */
  #pending = new Uint8Array(0);
  #pendingLength = 0;
  /** Scanning a head or trailer section across feeds: its size so far, the current line's, the last byte. */
  #blockLength = 0;
  #lineLength = 0;
  #lastByte = 0;

  constructor(sink: ResponseSink) {
    this.#sink = sink;
  }

  get idle(): boolean {
    return this.#state === "idle";
  }

  get upgraded(): boolean {
    return this.#isUpgraded;
  }

  /**
   * True once any byte of the expected response arrived. A reused keep-alive connection that
   * closes before that lost a race with the server's idle timeout: the request may be retried.
   */
  get responseStarted(): boolean {
    return this.#started;
  }

  /** Announces the request just written: a HEAD response has no body whatever its head says. */
  expect(method: string): void {
    if (this.#state !== "idle") throw new Error(`cannot expect a response while ${this.#state}`);
    this.#headRequest = method === "HEAD";
    this.#started = false;
    this.#startBlock();
    this.#state = "head";
  }

  feed(bytes: Uint8Array): void {
    if (bytes.length > 0) this.#started = true;
    let pos = 0;
    try {
      while (pos < bytes.length) pos = this.#step(bytes, pos);
    } catch (error) {
      if (error instanceof Http1Error) this.#state = "failed";
      throw error;
    }
  }

  /** The socket closed: ends a close-delimited body, anything else unfinished is an error. */
  finish(): void {
    const state = this.#state;
    if (state === "idle" || state === "failed") return;
    if (state === "close" || state === "upgraded") {
      this.#state = "idle";
      this.#sink.end(false);
      return;
    }
    this.#state = "failed";
    if (state !== "head") fail("connection closed before the end of the response body");
    fail(
      this.#started ? "connection closed inside the response head" : "connection closed before a response",
    );
  }

  /** Consumes bytes from `pos` in the current state; returns the position reached. */
  #step(bytes: Uint8Array, pos: number): number {
    switch (this.#state) {
      case "head":
        return this.#readHead(bytes, pos);
      case "length":
        return this.#readLength(bytes, pos);
      case "chunk-size":
        return this.#readChunkSize(bytes, pos);
      case "chunk-data":
        return this.#readChunkData(bytes, pos);
      case "chunk-crlf":
        return this.#readChunkCrlf(bytes, pos);
      case "trailers":
        return this.#readTrailers(bytes, pos);
      case "close":
      case "upgraded":
        this.#sink.body(view(bytes, pos, bytes.length));
        return bytes.length;
      case "idle":
        return fail("bytes received with no response expected");
      case "failed":
        return fail("parser already failed");
    }
  }

  #readHead(bytes: Uint8Array, pos: number): number {
    const end = this.#findBlockEnd(bytes, pos);
    if (end === -1) {
      this.#hold(bytes, pos, bytes.length);
      return bytes.length;
    }
    let headBytes: Uint8Array;
    if (this.#pendingLength === 0) {
      headBytes = bytes.subarray(pos, end);
    } else {
      this.#hold(bytes, pos, end);
      headBytes = this.#pending.subarray(0, this.#pendingLength);
      this.#pendingLength = 0;
    }
    return this.#onHead(parseHead(headBytes), bytes, end);
  }

  #onHead(parsed: ParsedHead, bytes: Uint8Array, pos: number): number {
    const { head } = parsed;
    if (head.status < 200 && head.status !== 101) {
      // Interim responses (100 Continue, 103 Early Hints) precede the real one.
      this.#startBlock();
      return pos;
    }
    if (head.status === 101) {
      this.#state = "upgraded";
      this.#isUpgraded = true;
      this.#sink.head(head);
      return pos;
    }
    const plan = planBody(parsed, this.#headRequest);
    this.#reusable = plan.reusable;
    this.#remaining = plan.length;
    if (plan.framing === "chunked") dropContentLength(head);
    this.#state = bodyState(plan.framing);
    this.#sink.head(head);
    return this.#state === "length" && this.#remaining === 0 ? this.#complete(bytes, pos) : pos;
  }

  #readLength(bytes: Uint8Array, pos: number): number {
    const end = Math.min(bytes.length, pos + this.#remaining);
    this.#remaining -= end - pos;
    this.#sink.body(view(bytes, pos, end));
    return this.#remaining === 0 ? this.#complete(bytes, end) : end;
  }

  #readChunkSize(bytes: Uint8Array, pos: number): number {
    const lf = bytes.indexOf(LF, pos);
    const end = lf === -1 ? bytes.length : lf + 1;
    if (this.#pendingLength + (end - pos) > MAX_CHUNK_LINE_SIZE) fail("chunk-size line too long");
    if (lf === -1) {
      this.#hold(bytes, pos, end);
      return end;
    }
    let line: Uint8Array;
    if (this.#pendingLength === 0) {
      line = bytes.subarray(pos, end);
    } else {
      this.#hold(bytes, pos, end);
      line = this.#pending.subarray(0, this.#pendingLength);
      this.#pendingLength = 0;
    }
    const size = parseChunkSizeLine(line);
    if (size === -1) fail("malformed chunk-size line");
    if (size === 0) {
      this.#startBlock();
      this.#state = "trailers";
    } else {
      this.#remaining = size;
      this.#state = "chunk-data";
    }
    return end;
  }

  #readChunkData(bytes: Uint8Array, pos: number): number {
    const end = Math.min(bytes.length, pos + this.#remaining);
    this.#remaining -= end - pos;
    if (this.#remaining === 0) {
      this.#crlfSeen = 0;
      this.#state = "chunk-crlf";
    }
    this.#sink.body(view(bytes, pos, end));
    return end;
  }

  #readChunkCrlf(bytes: Uint8Array, pos: number): number {
    const expected = this.#crlfSeen === 0 ? CR : LF;
    if (bytes[pos] !== expected) fail("chunk data not followed by CRLF");
    if (expected === CR) {
      this.#crlfSeen = 1;
    } else {
      this.#state = "chunk-size";
    }
    return pos + 1;
  }

  /** Trailer fields are skipped: the tunnel has no way to deliver them after the body. */
  #readTrailers(bytes: Uint8Array, pos: number): number {
    const end = this.#findBlockEnd(bytes, pos);
    return end === -1 ? bytes.length : this.#complete(bytes, end);
  }

  /**
   * Ends the message at `pos`. Trailing bytes make the connection unusable and are an error, but
   * only after end(false): the response itself was whole. Deciding before end() matters because
   * the sink may start the next exchange from inside end().
   */
  #complete(bytes: Uint8Array, pos: number): number {
    const extra = pos < bytes.length;
    this.#state = "idle";
    this.#sink.end(this.#reusable && !extra);
    if (extra) fail("bytes received after the end of the response");
    return bytes.length;
  }

  #startBlock(): void {
    this.#pendingLength = 0;
    this.#blockLength = 0;
    this.#lineLength = 0;
    this.#lastByte = 0;
  }

  /**
   * Finds the end of a block of CRLF-terminated lines closed by an empty line (a head or a trailer
   * section); returns the index after it, or -1 with the scan state kept for the next feed. Fails
   * on a bare LF, and once the block outgrows MAX_HEAD_SIZE.
   */
  #findBlockEnd(bytes: Uint8Array, from: number): number {
    const budget = MAX_HEAD_SIZE - this.#blockLength;
    let i = from;
    for (;;) {
      const lf = bytes.indexOf(LF, i);
      if (lf === -1 || lf - from >= budget) {
        if (bytes.length - from > budget) fail("response head or trailers too large");
        this.#blockLength += bytes.length - from;
        this.#lineLength += bytes.length - i;
        if (bytes.length > i) this.#lastByte = bytes[bytes.length - 1] as number;
        return -1;
      }
      const beforeLf = lf > i ? bytes[lf - 1] : this.#lastByte;
      if (beforeLf !== CR) fail("line not terminated by CRLF");
      const lineLength = this.#lineLength + (lf - i);
      this.#lineLength = 0;
      this.#lastByte = LF;
      i = lf + 1;
      if (lineLength === 1) {
        this.#blockLength = 0;
        return i;
      }
    }
  }

  /** Appends bytes[from, to) to the pending buffer; callers have checked the size limits. */
  #hold(bytes: Uint8Array, from: number, to: number): void {
    const needed = this.#pendingLength + (to - from);
    if (needed > this.#pending.length) {
      const grown = new Uint8Array(Math.max(needed, this.#pending.length * 2, 1024));
      grown.set(this.#pending.subarray(0, this.#pendingLength));
      this.#pending = grown;
    }
    this.#pending.set(bytes.subarray(from, to), this.#pendingLength);
    this.#pendingLength = needed;
  }
}

function fail(reason: string): never {
  throw new Http1Error(reason);
}

/** A view of bytes[start, end), the array itself when that is all of it. */
function view(bytes: Uint8Array, start: number, end: number): Uint8Array {
  return start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end);
}

/** A message without a body is a Content-Length body of zero bytes from here on. */
function bodyState(framing: Framing): State {
  switch (framing) {
    case "none":
    case "length":
      return "length";
    case "chunked":
      return "chunk-size";
    case "close":
      return "close";
  }
}

interface ParsedHead {
  head: ResponseHead;
  http10: boolean;
}

/** Parses a complete head, CRLF CRLF included (line endings were checked while scanning). */
function parseHead(bytes: Uint8Array): ParsedHead {
  // Buffer's latin1 maps each byte to one char, as Bun's Headers expect; TextDecoder("latin1") is
  // really windows-1252 and turns 0x80–0x9F into chars that Headers rejects.
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  if (FORBIDDEN_IN_HEAD.test(text)) fail("CR or NUL inside the response head");
  const lines = text.split("\r\n");
  const status = STATUS_LINE.exec(lines[0] as string);
  if (!status) fail("malformed status line");
  const headers: [string, string][] = [];
  // The last two entries are the empty strings around the final CRLF CRLF.
  for (let i = 1; i < lines.length - 2; i++) headers.push(parseField(lines[i] as string));
  return {
    head: { status: Number(status[2]), statusText: status[3] ?? "", headers },
    http10: status[1] === "0",
  };
}

function parseField(line: string): [string, string] {
  const first = line.charCodeAt(0);
  if (first === SP || first === HTAB) fail("obsolete line folding in the response head");
  const colon = line.indexOf(":");
  const name = line.slice(0, colon);
  if (colon <= 0 || !TOKEN.test(name)) fail("malformed header field");
  return [name.toLowerCase(), trimOws(line.slice(colon + 1))];
}

function trimOws(value: string): string {
  return value.replace(OWS_EDGES, "");
}

function isOws(code: number): boolean {
  return code === SP || code === HTAB;
}

/** RFC 9112 §6.3, strictly: ambiguous framing is an error or at least ends the connection. */
function planBody(parsed: ParsedHead, headRequest: boolean): BodyPlan {
  const { head, http10 } = parsed;
  let contentLength = -1;
  let transferEncoding: string | null = null;
  let close = false;
  let keepAlive = false;
  for (const [name, value] of head.headers) {
    if (name === "content-length") {
      contentLength = mergeContentLength(contentLength, value);
    } else if (name === "transfer-encoding") {
      transferEncoding = transferEncoding === null ? value : `${transferEncoding},${value}`;
    } else if (name === "connection") {
      for (const option of listItems(value)) {
        if (option === "close") close = true;
        else if (option === "keep-alive") keepAlive = true;
      }
    }
  }
  const persistent = !close && (!http10 || keepAlive);
  if (headRequest || head.status === 204 || head.status === 304) {
    return { framing: "none", length: 0, reusable: persistent };
  }
  // Transfer-Encoding beside Content-Length, or in HTTP/1.0, is how smuggling starts: the body is
  // still read, but the connection is not trusted with another exchange.
  const suspicious = transferEncoding !== null && (contentLength !== -1 || http10);
  if (transferEncoding !== null && isChunked(transferEncoding)) {
    return { framing: "chunked", length: 0, reusable: persistent && !suspicious };
  }
  if (contentLength !== -1) {
    return { framing: "length", length: contentLength, reusable: persistent && !suspicious };
  }
  return { framing: "close", length: 0, reusable: false };
}

/** Repeated or list-valued Content-Length is tolerated only when every value agrees. */
function mergeContentLength(previous: number, value: string): number {
  let merged = previous;
  for (const item of value.split(",")) {
    const trimmed = trimOws(item);
    if (!DIGITS.test(trimmed)) fail("malformed Content-Length");
    const length = Number(trimmed);
    if (length > Number.MAX_SAFE_INTEGER) fail("Content-Length too large");
    if (merged !== -1 && merged !== length) fail("conflicting Content-Length values");
    merged = length;
  }
  return merged;
}

/** Only chunked (last, once) and identity are accepted: the agent decodes nothing else. */
function isChunked(transferEncoding: string): boolean {
  const codings = listItems(transferEncoding);
  if (codings.length === 0) fail("empty Transfer-Encoding");
  const chunkedAt = codings.indexOf("chunked");
  for (const coding of codings) {
    if (coding !== "chunked" && coding !== "identity") {
      fail(`unsupported transfer coding "${coding}"`);
    }
  }
  if (chunkedAt !== -1 && chunkedAt !== codings.length - 1) {
    fail("chunked is not the final transfer coding");
  }
  return chunkedAt !== -1;
}

/** Elements of a comma-separated field value, lowercased, empty elements dropped (RFC 9110 §5.6.1). */
function listItems(value: string): string[] {
  const items: string[] = [];
  for (const item of value.split(",")) {
    const trimmed = trimOws(item).toLowerCase();
    if (trimmed !== "") items.push(trimmed);
  }
  return items;
}

function dropContentLength(head: ResponseHead): void {
  if (head.headers.some(([name]) => name === "content-length")) {
    head.headers = head.headers.filter(([name]) => name !== "content-length");
  }
}

/**
 * Parses `1*HEXDIG [ BWS ";" chunk-ext ] CRLF`, extensions ignored; returns the size or -1. The
 * size stays within Number.MAX_SAFE_INTEGER so that counting down the chunk stays exact.
 */
function parseChunkSizeLine(line: Uint8Array): number {
  const end = line.length - 2;
  if (end < 1 || line[end] !== CR) return -1;
  let size = 0;
  let i = 0;
  for (; i < end; i++) {
    const digit = hexValue(line[i] as number);
    if (digit === -1) break;
    size = size * 16 + digit;
    if (size > Number.MAX_SAFE_INTEGER) return -1;
  }
  if (i === 0) return -1;
  if (i === end) return size;
  while (i < end && isOws(line[i] as number)) i++;
  if (line[i] !== SEMICOLON) return -1;
  const cr = line.indexOf(CR, i);
  if (cr !== end || line.indexOf(0, i) !== -1) return -1;
  return size;
}

function hexValue(byte: number): number {
  if (byte >= 48 && byte <= 57) return byte - 48;
  const lower = byte | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}
