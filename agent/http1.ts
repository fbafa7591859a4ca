// Strict incremental HTTP/1.1 response parser for the agent's connections to the local service.
// One exchange is in flight per connection; after it ends the parser serves the next one.

import { type Header, HeaderSchema } from "../shared/gen/tunnel_pb.ts";
import { connectionToken, HOP_BY_HOP } from "../shared/headers.ts";

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
const COLON = 58;
const NUL = 0;

/** "HTTP/1." */
const VERSION_PREFIX = [72, 84, 84, 80, 47, 49, 46];
const HEADER_TYPE = HeaderSchema.typeName;

/** Per byte: its lower-case form if it is a token char (RFC 9110 §5.6.2), else 0. */
const TOKEN_LOWER = new Uint8Array(256);
for (const char of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") {
  TOKEN_LOWER[char.charCodeAt(0)] = char.charCodeAt(0);
}
for (const char of "ABCDEFGHIJKLMNOPQRSTUVWXYZ") TOKEN_LOWER[char.charCodeAt(0)] = char.charCodeAt(0) + 32;

/** What the parser does with a field, decided once its name is read. */
type FieldKind = "end-to-end" | "content-length" | "transfer-encoding" | "connection" | "hop-by-hop";

interface KnownName {
  name: string;
  kind: FieldKind;
}

/**
 * Every name that is not end-to-end, and the names most responses carry. A name read from a head
 * is looked up here by the hash taken while its bytes were checked, so that it needs no string of
 * its own, and a name not found is end-to-end without a further look.
 */
const KNOWN_NAMES: KnownName[][] = Array.from({ length: 256 }, () => []);
for (const name of [
  ...HOP_BY_HOP,
  "content-length",
  "content-type",
  "content-encoding",
  "date",
  "server",
  "cache-control",
  "etag",
  "last-modified",
  "expires",
  "vary",
  "set-cookie",
  "location",
  "accept-ranges",
  "age",
  "access-control-allow-origin",
  "strict-transport-security",
  "x-content-type-options",
  "x-frame-options",
]) {
  let hash = 0;
  for (let k = 0; k < name.length; k++) hash = (Math.imul(hash, 31) + name.charCodeAt(k)) | 0;
  const kind: FieldKind =
    name === "content-length" || name === "transfer-encoding" || name === "connection"
      ? name
      : HOP_BY_HOP.has(name)
        ? "hop-by-hop"
        : "end-to-end";
  KNOWN_NAMES[hash & 255]?.push({ name, kind });
}

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
   * `forward` is the same fields as the tunnel carries them: hop-by-hop ones left out, as
   * `endToEndHeaders` (shared/headers.ts) would, including those the Connection header names.
   */
  head(head: ResponseHead, forward: Header[]): void;
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
    return this.#state === "upgraded";
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
    return this.#onHead(parseHead(headBytes, this.#headRequest), bytes, end);
  }

  #onHead(parsed: ParsedHead, bytes: Uint8Array, pos: number): number {
    switch (parsed.kind) {
      case "interim":
        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        this.#startBlock();
        return pos;
      case "upgrade":
        this.#state = "upgraded";
        this.#sink.head(parsed.head, parsed.forward);
        return pos;
      case "final": {
        const { body } = parsed;
        this.#reusable = body.reusable;
        this.#remaining = body.length;
        this.#state = bodyState(body.framing);
        this.#sink.head(parsed.head, parsed.forward);
        return this.#state === "length" && this.#remaining === 0 ? this.#complete(bytes, pos) : pos;
      }
    }
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

/** What a head means for the parser: skipped, the connection switched, or a body to read. */
type ParsedHead =
  | { kind: "interim" }
  | { kind: "upgrade"; head: ResponseHead; forward: Header[] }
  | { kind: "final"; head: ResponseHead; forward: Header[]; body: BodyPlan };

/** The framing fields of a final response, gathered while its head is parsed. */
interface FramingFields {
  contentLength: number;
  transferEncoding: string | null;
  close: boolean;
  keepAlive: boolean;
}

/**
 * Parses a complete head, CRLF CRLF included, in one pass over its bytes: each line is checked,
 * split and trimmed by index, its field recognised (framing, hop-by-hop) as it is read. Line
 * endings were checked while scanning for the end of the head, so every LF here follows a CR.
 */
function parseHead(bytes: Uint8Array, headRequest: boolean): ParsedHead {
  // Buffer's latin1 maps each byte to one char, as Bun's Headers expect; TextDecoder("latin1") is
  // really windows-1252 and turns 0x80–0x9F into chars that Headers rejects.
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  const end = bytes.length - 2;
  // "HTTP/1.1 200" CRLF CRLF is the shortest head; past that length every index below exists.
  if (bytes.length < 16) fail("malformed status line");
  for (let k = 0; k < VERSION_PREFIX.length; k++) {
    if (bytes[k] !== VERSION_PREFIX[k]) fail("malformed status line");
  }
  const minor = bytes[7] as number;
  const status = statusCode(bytes);
  let i = 12;
  let statusText = "";
  if (!isDigit(minor) || bytes[8] !== SP || status === -1) fail("malformed status line");
  if (bytes[i] === SP) {
    const cr = lineEnd(bytes, i + 1);
    statusText = text.slice(i + 1, cr);
    i = cr + 2;
  } else if (bytes[i] === CR) {
    i = lineEnd(bytes, i) + 2;
  } else {
    fail("malformed status line");
  }
  const kind = status === 101 ? "upgrade" : status < 200 ? "interim" : "final";
  const headers: [string, string][] = [];
  const forward: Header[] = [];
  const framing: FramingFields = {
    contentLength: -1,
    transferEncoding: null,
    close: false,
    keepAlive: false,
  };
  let named: Set<string> | undefined;
  while (i < end) {
    const first = bytes[i] as number;
    if (first === SP || first === HTAB) fail("obsolete line folding in the response head");
    const nameStart = i;
    let lowered = false;
    let hash = 0;
    for (
      let lower = TOKEN_LOWER[first] as number;
      lower !== 0;
      lower = TOKEN_LOWER[bytes[++i] as number] as number
    ) {
      lowered ||= lower !== bytes[i];
      hash = (Math.imul(hash, 31) + lower) | 0;
    }
    if (bytes[i] !== COLON || i === nameStart) fail("malformed header field");
    const known = knownName(bytes, nameStart, i, hash);
    let name: string;
    if (known !== undefined) name = known.name;
    else if (lowered) name = text.slice(nameStart, i).toLowerCase();
    else name = text.slice(nameStart, i);
    i++;
    while (bytes[i] === SP || bytes[i] === HTAB) i++;
    const cr = lineEnd(bytes, i);
    let valueEnd = cr;
    while (valueEnd > i && isOws(bytes[valueEnd - 1] as number)) valueEnd--;
    const value = text.slice(i, valueEnd);
    i = cr + 2;
    if (kind === "interim") continue;
    headers.push([name, value]);
    switch (known === undefined ? "end-to-end" : known.kind) {
      case "content-length":
        if (kind === "final") framing.contentLength = mergeContentLength(framing.contentLength, value);
        forward.push({ $typeName: HEADER_TYPE, name, value });
        break;
      case "end-to-end":
        forward.push({ $typeName: HEADER_TYPE, name, value });
        break;
      case "transfer-encoding":
        framing.transferEncoding =
          framing.transferEncoding === null ? value : `${framing.transferEncoding},${value}`;
        break;
      case "connection":
        named = readConnection(value, framing, named);
        break;
      case "hop-by-hop":
        break;
    }
  }
  if (kind === "interim") return { kind };
  const head: ResponseHead = { status, statusText, headers };
  const forwarded = named === undefined ? forward : forward.filter((h) => !named.has(h.name));
  if (kind === "upgrade") return { kind, head, forward: forwarded };
  const body = planBody(status, minor === 48, headRequest, framing);
  if (body.framing === "chunked" && framing.contentLength !== -1) {
    head.headers = headers.filter(([name]) => name !== "content-length");
    return { kind, head, forward: forwarded.filter((h) => h.name !== "content-length"), body };
  }
  return { kind, head, forward: forwarded, body };
}

/** The status code at bytes 9 to 11, `[1-5]DIGIT DIGIT`, or -1. */
function statusCode(bytes: Uint8Array): number {
  const a = (bytes[9] as number) - 48;
  const b = (bytes[10] as number) - 48;
  const c = (bytes[11] as number) - 48;
  if (a < 1 || a > 5 || b < 0 || b > 9 || c < 0 || c > 9) return -1;
  return a * 100 + b * 10 + c;
}

/**
 * The index of the CR ending the line that `from` is in. RFC 9110 §5.5: CR, LF and NUL in a
 * field are dangerous; a CR is only legal as part of CRLF, and the head ends in one.
 */
function lineEnd(bytes: Uint8Array, from: number): number {
  let i = from;
  for (let byte = bytes[i]; byte !== CR; byte = bytes[++i]) {
    if (byte === NUL) fail("CR or NUL inside the response head");
  }
  if (bytes[i + 1] !== LF) fail("CR or NUL inside the response head");
  return i;
}

/** The entry for the name at bytes[start, end) if it is a known one; `hash` is of its lowercased bytes. */
function knownName(bytes: Uint8Array, start: number, end: number, hash: number): KnownName | undefined {
  for (const known of KNOWN_NAMES[hash & 255] as KnownName[]) {
    const { name } = known;
    if (name.length !== end - start) continue;
    let k = 0;
    while (k < name.length && name.charCodeAt(k) === TOKEN_LOWER[bytes[start + k] as number]) k++;
    if (k === name.length) return known;
  }
  return undefined;
}

/**
 * Connection options: close and keep-alive decide reuse; every option names a field to drop. Only
 * names that are not hop-by-hop anyway are collected in `named`, so the usual keep-alive costs no
 * set and no second walk.
 */
function readConnection(
  value: string,
  framing: FramingFields,
  named: Set<string> | undefined,
): Set<string> | undefined {
  let found = named;
  let from = 0;
  for (;;) {
    const comma = value.indexOf(",", from);
    const item = comma === -1 ? (from === 0 ? value : value.slice(from)) : value.slice(from, comma);
    const option = trimOws(item).toLowerCase();
    if (option === "close") framing.close = true;
    else if (option === "keep-alive") framing.keepAlive = true;
    if (option !== "" && !HOP_BY_HOP.has(option)) {
      found ??= new Set();
      found.add(connectionToken(item));
    }
    if (comma === -1) return found;
    from = comma + 1;
  }
}

/** Only SP and HTAB are optional whitespace; String.trim() would also eat NBSP and friends. */
function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isOws(value.charCodeAt(start))) start++;
  while (end > start && isOws(value.charCodeAt(end - 1))) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

function isOws(code: number): boolean {
  return code === SP || code === HTAB;
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/** RFC 9112 §6.3, strictly: ambiguous framing is an error or at least ends the connection. */
function planBody(status: number, http10: boolean, headRequest: boolean, framing: FramingFields): BodyPlan {
  const { contentLength, transferEncoding } = framing;
  const persistent = !framing.close && (!http10 || framing.keepAlive);
  if (headRequest || status === 204 || status === 304) {
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
  let from = 0;
  for (;;) {
    const comma = value.indexOf(",", from);
    const length = decimal(value, from, comma === -1 ? value.length : comma);
    if (merged !== -1 && merged !== length) fail("conflicting Content-Length values");
    merged = length;
    if (comma === -1) return merged;
    from = comma + 1;
  }
}

/** `OWS 1*DIGIT OWS` in value[from, to) as a number, within Number.MAX_SAFE_INTEGER. */
function decimal(value: string, from: number, to: number): number {
  let start = from;
  let end = to;
  while (start < end && isOws(value.charCodeAt(start))) start++;
  while (end > start && isOws(value.charCodeAt(end - 1))) end--;
  if (start === end) fail("malformed Content-Length");
  let number = 0;
  for (let k = start; k < end; k++) {
    const digit = value.charCodeAt(k) - 48;
    if (digit < 0 || digit > 9) fail("malformed Content-Length");
    number = number * 10 + digit;
  }
  if (number > Number.MAX_SAFE_INTEGER) fail("Content-Length too large");
  return number;
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
