import { describe, expect, test } from "bun:test";
import { Http1Error, MAX_HEAD_SIZE, type ResponseHead, ResponseParser, type ResponseSink } from "./http1.ts";

/** Records what the parser delivers, copying body chunks as a real sink must. */
class Recorder implements ResponseSink {
  heads: ResponseHead[] = [];
  chunks: Uint8Array[] = [];
  ends: boolean[] = [];

  head(head: ResponseHead): void {
    this.heads.push(head);
  }

  body(chunk: Uint8Array): void {
    this.chunks.push(chunk.slice());
  }

  end(reusable: boolean): void {
    this.ends.push(reusable);
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString("latin1");
  }
}

const bytes = (text: string): Uint8Array => Buffer.from(text, "latin1");

function parse(text: string, options: { method?: string; finish?: boolean } = {}) {
  const sink = new Recorder();
  const parser = new ResponseParser(sink);
  parser.expect(options.method ?? "GET");
  parser.feed(bytes(text));
  if (options.finish) parser.finish();
  return { sink, parser };
}

function parseInPieces(text: string, cuts: number[], method = "GET"): Recorder {
  const sink = new Recorder();
  const parser = new ResponseParser(sink);
  parser.expect(method);
  const input = bytes(text);
  let from = 0;
  for (const cut of [...cuts, input.length]) {
    parser.feed(input.subarray(from, cut));
    from = cut;
  }
  parser.finish();
  return sink;
}

function outcome(sink: Recorder) {
  return { heads: sink.heads, body: sink.text, ends: sink.ends };
}

/** Every way to cut the input once, and byte by byte, must give the same outcome as one feed. */
function expectSplitInvariant(text: string, method = "GET"): void {
  const whole = outcome(parseInPieces(text, [], method));
  const everyByte = Array.from({ length: text.length - 1 }, (_, i) => i + 1);
  expect(outcome(parseInPieces(text, everyByte, method))).toEqual(whole);
  for (let cut = 1; cut < text.length; cut++) {
    expect(outcome(parseInPieces(text, [cut], method))).toEqual(whole);
  }
}

function parseError(text: string, method = "GET"): unknown {
  const parser = new ResponseParser(new Recorder());
  parser.expect(method);
  try {
    parser.feed(bytes(text));
    parser.finish();
  } catch (error) {
    return error;
  }
  return undefined;
}

function expectParseError(text: string, message?: RegExp, method = "GET"): void {
  const error = parseError(text, method);
  expect(error).toBeInstanceOf(Http1Error);
  if (message) expect((error as Http1Error).message).toMatch(message);
}

const CHUNKED = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

describe("Content-Length bodies", () => {
  test("delivers head, body and a reusable end", () => {
    const { sink, parser } = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
    expect(sink.heads).toEqual([
      {
        status: 200,
        statusText: "OK",
        headers: [
          ["content-length", "5"],
          ["x-a", "b"],
        ],
      },
    ]);
    expect(sink.text).toBe("hello");
    expect(sink.ends).toEqual([true]);
    expect(parser.idle).toBe(true);
  });

  test("gives the same result however the bytes are split", () => {
    expectSplitInvariant("HTTP/1.1 200 OK\r\nContent-Length: 11\r\nServer: t\r\n\r\nhello world");
  });

  test("hands the body on as views of the fed bytes, without copying", () => {
    const seen: Uint8Array[] = [];
    const parser = new ResponseParser({ head() {}, body: (chunk) => seen.push(chunk), end() {} });
    parser.expect("GET");
    const first = bytes("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nabcd");
    const second = bytes("efgh");
    parser.feed(first);
    parser.feed(second);
    expect(seen[0]?.buffer).toBe(first.buffer);
    expect(seen[1]).toBe(second);
  });

  test("a zero Content-Length ends the message with the head", () => {
    const { sink } = parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    expect(sink.chunks).toEqual([]);
    expect(sink.ends).toEqual([true]);
  });

  test("repeated identical Content-Length values are accepted", () => {
    expect(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc").sink.text).toBe(
      "abc",
    );
  });

  test("is not complete until the whole body arrived", () => {
    const { sink, parser } = parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
    expect(sink.ends).toEqual([]);
    expect(parser.idle).toBe(false);
  });
});

describe("chunked bodies", () => {
  const response = `${CHUNKED}5;name=value\r\nhello\r\n6 ; ext\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\nOther: u\r\n\r\n`;

  test("decodes chunks, ignoring extensions and skipping trailers", () => {
    const { sink } = parse(response);
    expect(sink.text).toBe("hello world0123456789");
    expect(sink.ends).toEqual([true]);
    expect(sink.heads[0]?.headers).toEqual([["transfer-encoding", "chunked"]]);
  });

  test("gives the same result however the bytes are split", () => {
    expectSplitInvariant(response);
  });

  test("accepts upper-case hex and leading zeros in chunk sizes", () => {
    expect(parse(`${CHUNKED}000B\r\nhello world\r\n0\r\n\r\n`).sink.text).toBe("hello world");
  });

  test("accepts chunked after identity, in any letter case", () => {
    const { sink } = parse(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity, Chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    );
    expect(sink.text).toBe("a");
    expect(sink.ends).toEqual([true]);
  });

  test("with a Content-Length too, decodes chunked, drops the length and refuses reuse", () => {
    const { sink } = parse(
      "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    expect(sink.text).toBe("abc");
    expect(sink.heads[0]?.headers).toEqual([["transfer-encoding", "chunked"]]);
    expect(sink.ends).toEqual([false]);
  });

  test("in an HTTP/1.0 response is decoded but the connection is not reused", () => {
    const { sink } = parse(
      "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    );
    expect(sink.text).toBe("a");
    expect(sink.ends).toEqual([false]);
  });
});

describe("close-delimited bodies", () => {
  test("complete with a non-reusable end when the connection closes", () => {
    const { sink, parser } = parse("HTTP/1.1 200 OK\r\nServer: t\r\n\r\nsome ");
    parser.feed(bytes("bytes"));
    expect(sink.ends).toEqual([]);
    parser.finish();
    expect(sink.text).toBe("some bytes");
    expect(sink.ends).toEqual([false]);
    expect(parser.idle).toBe(true);
  });

  test("Transfer-Encoding identity alone leaves the body close-delimited", () => {
    const { sink } = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nabc", { finish: true });
    expect(sink.text).toBe("abc");
    expect(sink.ends).toEqual([false]);
  });
});

describe("responses without a body", () => {
  test("a HEAD response with Content-Length has no body and is reusable", () => {
    const { sink, parser } = parse("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", { method: "HEAD" });
    expect(sink.heads[0]?.headers).toEqual([["content-length", "1234"]]);
    expect(sink.chunks).toEqual([]);
    expect(sink.ends).toEqual([true]);
    expect(parser.idle).toBe(true);
  });

  test("a HEAD response announcing chunked has no body", () => {
    expect(parse(CHUNKED, { method: "HEAD" }).sink.ends).toEqual([true]);
  });

  test.each([204, 304])("a %d response has no body whatever its framing headers say", (status) => {
    const { sink } = parse(
      `HTTP/1.1 ${status} X\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    expect(sink.heads[0]?.status).toBe(status);
    expect(sink.chunks).toEqual([]);
    expect(sink.ends).toEqual([true]);
  });
});

describe("interim and upgrade responses", () => {
  test("100 Continue and 103 Early Hints are skipped before the final response", () => {
    const text =
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    const { sink } = parse(text);
    expect(sink.heads.map((head) => head.status)).toEqual([200]);
    expect(sink.text).toBe("ok");
    expect(sink.ends).toEqual([true]);
    expectSplitInvariant(text);
  });

  test("101 Switching Protocols hands every following byte on raw", () => {
    const { sink, parser } = parse(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi",
    );
    expect(sink.heads.map((head) => head.status)).toEqual([101]);
    expect(parser.upgraded).toBe(true);
    expect(parser.idle).toBe(false);
    parser.feed(bytes("HTTP/1.1 200 OK\r\n\r\n"));
    expect(sink.text).toBe("\x81\x02hiHTTP/1.1 200 OK\r\n\r\n");
    expect(sink.ends).toEqual([]);
    parser.finish();
    expect(sink.ends).toEqual([false]);
  });
});

describe("heads", () => {
  test("keeps repeated Set-Cookie fields in order with names lowercased and whitespace trimmed", () => {
    const { sink } = parse(
      "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Other:  v \t\r\nSET-COOKIE:b=2\r\nset-cookie: c=3\r\nContent-Length: 0\r\n\r\n",
    );
    expect(sink.heads[0]?.headers).toEqual([
      ["set-cookie", "a=1"],
      ["x-other", "v"],
      ["set-cookie", "b=2"],
      ["set-cookie", "c=3"],
      ["content-length", "0"],
    ]);
  });

  test("keeps field values byte for byte, including obs-text and empty values", () => {
    const { sink } = parse(
      "HTTP/1.1 200 OK\r\nX-Bytes: a\x80\x9f\xa0\xffz\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n",
    );
    expect(sink.heads[0]?.headers.slice(0, 2)).toEqual([
      ["x-bytes", "a\x80\x9f\xa0\xffz"],
      ["x-empty", ""],
    ]);
  });

  test.each([
    ["HTTP/1.1 200 \r\n", ""],
    ["HTTP/1.1 200\r\n", ""],
    ["HTTP/1.1 404 Not  Found\t!\r\n", "Not  Found\t!"],
  ])("accepts the status line %j", (line, reason) => {
    const { sink } = parse(`${line}Content-Length: 0\r\n\r\n`);
    expect(sink.heads[0]?.statusText).toBe(reason);
  });

  test("accepts a head at exactly the size limit, fed whole or byte by byte", () => {
    const start = "HTTP/1.1 200 OK\r\nX-Pad: ";
    const tail = "\r\nContent-Length: 0\r\n\r\n";
    const text = start + "a".repeat(MAX_HEAD_SIZE - start.length - tail.length) + tail;
    expect(text.length).toBe(MAX_HEAD_SIZE);
    expect(parse(text).sink.ends).toEqual([true]);
    const sink = parseInPieces(
      text,
      Array.from({ length: 64 }, (_, i) => (i + 1) * 1000),
    );
    expect(sink.ends).toEqual([true]);
  });

  test("rejects a head one byte over the size limit, fed whole or in pieces", () => {
    const start = "HTTP/1.1 200 OK\r\nX-Pad: ";
    const tail = "\r\nContent-Length: 0\r\n\r\n";
    const text = start + "a".repeat(MAX_HEAD_SIZE - start.length - tail.length + 1) + tail;
    expectParseError(text, /too large/);
    expect(() => parseInPieces(text, [10, 30_000, 60_000])).toThrow(/too large/);
  });

  test("rejects an endless head without waiting for its end", () => {
    const parser = new ResponseParser(new Recorder());
    parser.expect("GET");
    parser.feed(bytes("HTTP/1.1 200 OK\r\n"));
    const line = bytes(`X-Pad: ${"a".repeat(1000)}\r\n`);
    expect(() => {
      for (let i = 0; i < 100; i++) parser.feed(line);
    }).toThrow(/too large/);
  });
});

describe("connection reuse", () => {
  test("one parser serves consecutive exchanges on a kept-alive connection", () => {
    const sink = new Recorder();
    const parser = new ResponseParser(sink);
    parser.expect("GET");
    parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"));
    parser.expect("POST");
    parser.feed(bytes(`${CHUNKED}3\r\ntwo\r\n0\r\n\r\n`));
    parser.expect("HEAD");
    parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"));
    expect(sink.heads.length).toBe(3);
    expect(sink.text).toBe("onetwo");
    expect(sink.ends).toEqual([true, true, true]);
  });

  test("the next exchange can start from inside end()", () => {
    const sink = new Recorder();
    const parser = new ResponseParser({
      ...sink,
      head: (head) => sink.head(head),
      body: (chunk) => sink.body(chunk),
      end: (reusable) => {
        sink.end(reusable);
        if (sink.ends.length === 1) parser.expect("GET");
      },
    });
    parser.expect("GET");
    parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"));
    parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"));
    expect(sink.text).toBe("ab");
    expect(sink.ends).toEqual([true, true]);
  });

  test.each([
    ["HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false],
    ["HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n", false],
    ["HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false],
    ["HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", true],
    ["HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", true],
  ])("reusability of %j is %p", (text, reusable) => {
    expect(parse(text).sink.ends).toEqual([reusable]);
  });

  test("tells whether the response had started when the connection closed", () => {
    const parser = new ResponseParser(new Recorder());
    parser.expect("GET");
    expect(parser.responseStarted).toBe(false);
    expect(() => parser.finish()).toThrow(/before a response/);
    const started = new ResponseParser(new Recorder());
    started.expect("GET");
    started.feed(bytes("HTTP/1.1 2"));
    expect(started.responseStarted).toBe(true);
    expect(() => started.finish()).toThrow(/inside the response head/);
  });
});

describe("response smuggling defences", () => {
  test("bytes after a complete response end it as non-reusable, then fail", () => {
    const sink = new Recorder();
    const parser = new ResponseParser(sink);
    parser.expect("GET");
    expect(() =>
      parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n")),
    ).toThrow(Http1Error);
    expect(sink.text).toBe("ok");
    expect(sink.ends).toEqual([false]);
  });

  test("bytes arriving while no response is expected fail", () => {
    const { parser } = parse("HTTP/1.1 204 No Content\r\n\r\n");
    expect(() => parser.feed(bytes("\r\n"))).toThrow(/no response expected/);
  });

  test("an empty feed while idle is harmless", () => {
    const { parser } = parse("HTTP/1.1 204 No Content\r\n\r\n");
    parser.feed(new Uint8Array(0));
    parser.finish();
    expect(parser.idle).toBe(true);
  });

  test("a parser that failed keeps failing", () => {
    const parser = new ResponseParser(new Recorder());
    parser.expect("GET");
    expect(() => parser.feed(bytes("HTTP/2 200\r\n\r\n"))).toThrow(Http1Error);
    expect(() => parser.feed(bytes("HTTP/1.1 200 OK\r\n\r\n"))).toThrow(Http1Error);
    expect(() => parser.expect("GET")).toThrow();
  });
});

describe("malformed responses are rejected", () => {
  test.each([
    ["HTTP/2.0 200 OK\r\n\r\n", "HTTP/2"],
    ["HTTP/1.1 20 OK\r\n\r\n", "two-digit status"],
    ["HTTP/1.1 2000 OK\r\n\r\n", "four-digit status"],
    ["HTTP/1.1 099 OK\r\n\r\n", "status below 100"],
    ["HTTP/1.1 600 OK\r\n\r\n", "status above 599"],
    ["http/1.1 200 OK\r\n\r\n", "lower-case protocol"],
    ["HTTP/1.1  200 OK\r\n\r\n", "double space"],
    [" HTTP/1.1 200 OK\r\n\r\n", "leading space"],
    ["\r\nHTTP/1.1 200 OK\r\n\r\n", "leading empty line"],
    ["HTTP/1.1 200 O\x00K\r\n\r\n", "NUL in reason"],
  ])("status line %j (%s)", (text) => expectParseError(text, /status line|CR or NUL/));

  test.each([
    ["X-A : b", "space before colon"],
    [": b", "empty name"],
    ["no colon", "missing colon"],
    ["X(A): b", "non-token name"],
    ["X-A: b\x00c", "NUL in value"],
    ["X-A: b\rc", "bare CR in value"],
  ])("header line %j (%s)", (line) =>
    expectParseError(`HTTP/1.1 200 OK\r\n${line}\r\nContent-Length: 0\r\n\r\n`),
  );

  test("obsolete line folding", () => {
    expectParseError("HTTP/1.1 200 OK\r\nX-A: b\r\n  c\r\nContent-Length: 0\r\n\r\n", /folding/);
    expectParseError("HTTP/1.1 200 OK\r\n\tX-A: b\r\n\r\n", /folding/);
  });

  test("bare LF line endings", () => {
    expectParseError("HTTP/1.1 200 OK\nContent-Length: 0\n\n", /CRLF/);
    expectParseError("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", /CRLF/);
  });

  test.each([
    ["Content-Length: 3\r\nContent-Length: 4", /conflicting/],
    ["Content-Length: 3, 4", /conflicting/],
    ["Content-Length: abc", /malformed Content-Length/],
    ["Content-Length: -1", /malformed Content-Length/],
    ["Content-Length: +1", /malformed Content-Length/],
    ["Content-Length: 0x10", /malformed Content-Length/],
    ["Content-Length:", /malformed Content-Length/],
    ["Content-Length: 1 2", /malformed Content-Length/],
    ["Content-Length: 99999999999999999999", /too large/],
    ["Transfer-Encoding: gzip, chunked", /unsupported transfer coding/],
    ["Transfer-Encoding: chunked, identity", /final transfer coding/],
    ["Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", /final transfer coding/],
    ["Transfer-Encoding: chunked;q=1", /unsupported transfer coding/],
    ["Transfer-Encoding: ,", /empty Transfer-Encoding/],
  ])("framing header %j", (line, message) => expectParseError(`HTTP/1.1 200 OK\r\n${line}\r\n\r\n`, message));

  test.each([
    ["g\r\n", "non-hex size"],
    ["\r\n", "empty size"],
    [" 5\r\nhello\r\n", "leading space"],
    ["5 x\r\nhello\r\n", "garbage after the size"],
    ["-5\r\n", "negative size"],
    ["5\nhello\r\n", "bare LF"],
    ["5;a\rb\r\nhello\r\n", "bare CR in an extension"],
    ["20000000000000\r\n", "size above 2^53"],
    ["ffffffffffffffffffff\r\n", "overflowing size"],
    ["5\r\nhelloXY", "data not followed by CRLF"],
    ["5\r\nhello\rX", "data followed by CR without LF"],
    ["5\r\nhello\r\n0\r\nX-T: a\n\r\n", "bare LF in trailers"],
    [`1;${"x".repeat(5000)}\r\n`, "huge chunk extension"],
  ])("chunked body %j (%s)", (body) => expectParseError(CHUNKED + body));

  test("a chunk-size line that grows too long across feeds", () => {
    const parser = new ResponseParser(new Recorder());
    parser.expect("GET");
    parser.feed(bytes(`${CHUNKED}1;`));
    expect(() => {
      for (let i = 0; i < 10; i++) parser.feed(bytes("x".repeat(500)));
    }).toThrow(/chunk-size line too long/);
  });

  test("a trailer section over the head size limit", () => {
    expectParseError(`${CHUNKED}0\r\nX-T: ${"a".repeat(MAX_HEAD_SIZE)}\r\n\r\n`, /too large/);
  });

  test.each([
    ["HTTP/1.1 200 OK\r\nContent-Len", "inside the head"],
    ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "inside a Content-Length body"],
    [`${CHUNKED}5\r\nhel`, "inside a chunk"],
    [`${CHUNKED}5\r\nhello\r\n`, "before the last chunk"],
    [`${CHUNKED}0\r\nX-T: a\r\n`, "inside the trailers"],
  ])("a connection closed %j (%s)", (text) => expectParseError(text, /connection closed/));

  test("bytes before any expect()", () => {
    const parser = new ResponseParser(new Recorder());
    expect(() => parser.feed(bytes("HTTP/1.1 200 OK\r\n\r\n"))).toThrow(Http1Error);
  });
});
