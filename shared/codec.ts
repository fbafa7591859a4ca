// The Envelopes every request crosses the tunnel in (TunnelRequest, TunnelResponse, TunnelData),
// encoded and decoded by hand. protobuf-es's reflective codec cost a quarter of the agent's CPU
// per small request: it walks the schema for each field, grows its writer by doubling, and
// builds each message through `create()`. These write the same bytes in one exact allocation and
// read them back into the generated types; `codec.test.ts` checks both against protobuf-es.
// Every other Envelope goes through the generic codec in protocol.ts.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import type {
  Header,
  TunnelData,
  TunnelRequest,
  TunnelRequestSchema,
  TunnelResponse,
  TunnelResponseSchema,
} from "./gen/tunnel_pb.ts";
import { varintSize, writeVarint } from "./varint.ts";

export type RequestInit = MessageInitShape<typeof TunnelRequestSchema>;
export type ResponseInit = MessageInitShape<typeof TunnelResponseSchema>;
type HeaderInit = { name?: string; value?: string };

/** A decoded hot Envelope, shaped as `decodeEnvelope` returns it. */
export type HotFrame =
  | { case: "request"; value: TunnelRequest }
  | { case: "response"; value: TunnelResponse }
  | { case: "data"; value: TunnelData };

// Envelope field tags (field number << 3 | length-delimited).
const REQUEST_TAG = (2 << 3) | WireType.LengthDelimited;
const RESPONSE_TAG = (3 << 3) | WireType.LengthDelimited;
const DATA_TAG = (5 << 3) | WireType.LengthDelimited;

// --- encoding ------------------------------------------------------------------------------

const textEncoder = new TextEncoder();

/** `Envelope { request }` as protobuf-es writes it: fields in number order, defaults left out. */
export function encodeRequest(request: RequestInit): Uint8Array {
  const headers = request.headers ?? [];
  const body = request.body ?? EMPTY;
  const sizes = headerSizes(headers);
  const inner =
    uintSize(1, request.streamId) +
    stringSize(2, request.requestId) +
    stringSize(3, request.method) +
    stringSize(4, request.path) +
    repeatedSize(5, sizes) +
    bytesSize(6, body) +
    boolSize(7, request.endStream) +
    uintSize(8, request.window) +
    boolSize(9, request.websocket) +
    stringSize(10, request.tcpService);
  const w = new Writer(1 + varintSize(inner) + inner);
  w.tagged(REQUEST_TAG, inner);
  w.uint(1, request.streamId);
  w.string(2, request.requestId);
  w.string(3, request.method);
  w.string(4, request.path);
  w.headers(5, headers, sizes);
  w.bytes(6, body);
  w.bool(7, request.endStream);
  w.uint(8, request.window);
  w.bool(9, request.websocket);
  w.string(10, request.tcpService);
  return w.done();
}

/** `Envelope { response }` as protobuf-es writes it. */
export function encodeResponse(response: ResponseInit): Uint8Array {
  const headers = response.headers ?? [];
  const body = response.body ?? EMPTY;
  const sizes = headerSizes(headers);
  const inner =
    uintSize(1, response.streamId) +
    uintSize(2, response.status) +
    repeatedSize(3, sizes) +
    bytesSize(4, body) +
    boolSize(5, response.endStream) +
    uintSize(6, response.window);
  const w = new Writer(1 + varintSize(inner) + inner);
  w.tagged(RESPONSE_TAG, inner);
  w.uint(1, response.streamId);
  w.uint(2, response.status);
  w.headers(3, headers, sizes);
  w.bytes(4, body);
  w.bool(5, response.endStream);
  w.uint(6, response.window);
  return w.done();
}

const EMPTY = new Uint8Array(0);

/** Writes into one buffer of the exact size, computed beforehand. */
class Writer {
  readonly #out: Uint8Array;
  #at = 0;

  constructor(size: number) {
    this.#out = new Uint8Array(size);
  }

  done(): Uint8Array {
    return this.#out;
  }

  tagged(tag: number, length: number): void {
    this.#out[this.#at++] = tag;
    this.#varint(length);
  }

  uint(no: number, value: number | undefined): void {
    if (!value) return;
    this.#out[this.#at++] = no << 3;
    this.#varint(value);
  }

  bool(no: number, value: boolean | undefined): void {
    if (!value) return;
    this.#out[this.#at++] = no << 3;
    this.#out[this.#at++] = 1;
  }

  bytes(no: number, value: Uint8Array): void {
    if (value.byteLength === 0) return;
    this.tagged((no << 3) | WireType.LengthDelimited, value.byteLength);
    this.#out.set(value, this.#at);
    this.#at += value.byteLength;
  }

  string(no: number, value: string | undefined): void {
    if (!value) return;
    const length = utf8Length(value);
    this.tagged((no << 3) | WireType.LengthDelimited, length);
    this.#text(value, length);
  }

  headers(no: number, headers: readonly HeaderInit[], sizes: readonly number[]): void {
    for (let i = 0; i < headers.length; i++) {
      const header = headers[i] as HeaderInit;
      this.tagged((no << 3) | WireType.LengthDelimited, sizes[i] as number);
      this.string(1, header.name);
      this.string(2, header.value);
    }
  }

  #text(value: string, length: number): void {
    const out = this.#out;
    if (length === value.length) {
      // ASCII, as nearly every header is: one byte per character, no encoder call.
      for (let i = 0; i < length; i++) out[this.#at + i] = value.charCodeAt(i);
    } else {
      textEncoder.encodeInto(value, out.subarray(this.#at, this.#at + length));
    }
    this.#at += length;
  }

  #varint(value: number): void {
    this.#at = writeVarint(this.#out, this.#at, value);
  }
}

function headerSizes(headers: readonly HeaderInit[]): number[] {
  return headers.map((h) => stringSize(1, h.name) + stringSize(2, h.value));
}

function repeatedSize(no: number, sizes: readonly number[]): number {
  let total = 0;
  for (const size of sizes) total += tagSize(no) + varintSize(size) + size;
  return total;
}

function uintSize(no: number, value: number | undefined): number {
  return value ? tagSize(no) + varintSize(value) : 0;
}

function boolSize(no: number, value: boolean | undefined): number {
  return value ? tagSize(no) + 1 : 0;
}

function bytesSize(no: number, value: Uint8Array): number {
  const n = value.byteLength;
  return n === 0 ? 0 : tagSize(no) + varintSize(n) + n;
}

function stringSize(no: number, value: string | undefined): number {
  if (!value) return 0;
  const n = utf8Length(value);
  return tagSize(no) + varintSize(n) + n;
}

function tagSize(no: number): number {
  return no < 16 ? 1 : 2;
}

/** Bytes TextEncoder writes for `value` (a lone surrogate becomes U+FFFD, three bytes). */
function utf8Length(value: string): number {
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < value.length) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        n += 4;
        i++;
      } else {
        n += 3;
      }
    } else n += 3;
  }
  return n;
}

// --- decoding ------------------------------------------------------------------------------

/**
 * Decodes `frame` when it is exactly one hot Envelope; undefined for anything else (other
 * messages, or extra fields after it, which the generic decoder judges). Throws a RangeError or
 * TypeError on malformed input; the caller turns it into a ProtocolError.
 */
export function decodeHot(frame: Uint8Array): HotFrame | undefined {
  const tag = frame[0];
  if (tag !== REQUEST_TAG && tag !== RESPONSE_TAG && tag !== DATA_TAG) return undefined;
  const r = new Reader(frame, 1);
  const length = r.varint();
  if (r.pos + length !== frame.byteLength) return undefined;
  if (tag === DATA_TAG) return { case: "data", value: readData(r) };
  if (tag === REQUEST_TAG) return { case: "request", value: readRequest(r) };
  return { case: "response", value: readResponse(r) };
}

function readRequest(r: Reader): TunnelRequest {
  const m: TunnelRequest = {
    $typeName: "indranet.tunnel.v1.TunnelRequest",
    streamId: 0,
    requestId: "",
    method: "",
    path: "",
    headers: [],
    body: EMPTY,
    endStream: false,
    window: 0,
    websocket: false,
    tcpService: "",
  };
  while (r.more()) {
    const no = r.field(REQUEST_WIRE);
    if (no === 1) m.streamId = r.varint();
    else if (no === 2) m.requestId = r.string();
    else if (no === 3) m.method = r.string();
    else if (no === 4) m.path = r.string();
    else if (no === 5) m.headers.push(readHeader(r));
    else if (no === 6) m.body = r.bytes();
    else if (no === 7) m.endStream = r.varint() !== 0;
    else if (no === 8) m.window = r.varint();
    else if (no === 9) m.websocket = r.varint() !== 0;
    else if (no === 10) m.tcpService = r.string();
  }
  return m;
}

function readResponse(r: Reader): TunnelResponse {
  const m: TunnelResponse = {
    $typeName: "indranet.tunnel.v1.TunnelResponse",
    streamId: 0,
    status: 0,
    headers: [],
    body: EMPTY,
    endStream: false,
    window: 0,
  };
  while (r.more()) {
    const no = r.field(RESPONSE_WIRE);
    if (no === 1) m.streamId = r.varint();
    else if (no === 2) m.status = r.varint();
    else if (no === 3) m.headers.push(readHeader(r));
    else if (no === 4) m.body = r.bytes();
    else if (no === 5) m.endStream = r.varint() !== 0;
    else if (no === 6) m.window = r.varint();
  }
  return m;
}

function readData(r: Reader): TunnelData {
  const m: TunnelData = {
    $typeName: "indranet.tunnel.v1.TunnelData",
    streamId: 0,
    payload: EMPTY,
    endStream: false,
  };
  while (r.more()) {
    const no = r.field(DATA_WIRE);
    if (no === 1) m.streamId = r.varint();
    else if (no === 2) m.payload = r.bytes();
    else if (no === 3) m.endStream = r.varint() !== 0;
  }
  return m;
}

function readHeader(r: Reader): Header {
  const h: Header = { $typeName: "indranet.tunnel.v1.Header", name: "", value: "" };
  const outer = r.enter();
  while (r.more()) {
    const no = r.field(HEADER_WIRE);
    if (no === 1) h.name = r.string();
    else if (no === 2) h.value = r.string();
  }
  r.leave(outer);
  return h;
}

// Strict, as protobuf-es reads proto3 strings: invalid UTF-8 is an error, not U+FFFD. Native
// decoding is also three times faster than building strings from char codes.
const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Reads protobuf's wire format from one frame, never past its end. */
class Reader {
  readonly #buf: Uint8Array;
  pos: number;
  #end: number;

  constructor(buf: Uint8Array, pos: number) {
    this.#buf = buf;
    this.pos = pos;
    this.#end = buf.byteLength;
  }

  more(): boolean {
    return this.pos < this.#end;
  }

  /** The next known field's number; fields of unknown number or the wrong wire type are skipped. */
  field(wires: readonly (number | undefined)[]): number {
    for (;;) {
      const tag = this.varint();
      const no = tag >>> 3;
      const wire = tag & 7;
      if (wires[no] === wire) return no;
      this.#skip(wire);
      if (!this.more()) return 0;
    }
  }

  /** uint32: a varint of up to ten bytes, of which the low 32 bits count. */
  varint(): number {
    const buf = this.#buf;
    let result = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= this.#end) throw new RangeError("premature end of a varint");
      const byte = buf[this.pos++] as number;
      if (shift < 32) result |= (byte & 0x7f) << shift;
      if (byte < 0x80) return result >>> 0;
    }
    throw new RangeError("varint longer than ten bytes");
  }

  bytes(): Uint8Array {
    const length = this.varint();
    const start = this.pos;
    this.#advance(length);
    return this.#buf.subarray(start, this.pos);
  }

  string(): string {
    return textDecoder.decode(this.bytes());
  }

  /** Narrows reading to the embedded message that starts here; returns the outer end. */
  enter(): number {
    const length = this.varint();
    const outer = this.#end;
    if (this.pos + length > outer) throw new RangeError("embedded message overruns its parent");
    this.#end = this.pos + length;
    return outer;
  }

  leave(outer: number): void {
    this.#end = outer;
  }

  #advance(n: number): void {
    if (this.pos + n > this.#end) throw new RangeError("field overruns its message");
    this.pos += n;
  }

  #skip(wire: number): void {
    if (wire === WireType.Varint) this.varint();
    else if (wire === WireType.Bit64) this.#advance(8);
    else if (wire === WireType.LengthDelimited) this.#advance(this.varint());
    else if (wire === WireType.Bit32) this.#advance(4);
    // Groups are not part of proto3; a frame that carries one is malformed.
    else throw new RangeError(`unexpected wire type ${wire}`);
  }
}

// The wire type each known field must have, by field number.
const V = WireType.Varint;
const L = WireType.LengthDelimited;
const REQUEST_WIRE = [undefined, V, L, L, L, L, L, V, V, V, L];
const RESPONSE_WIRE = [undefined, V, V, L, L, V, V];
const DATA_WIRE = [undefined, V, L, V];
const HEADER_WIRE = [undefined, L, L];
