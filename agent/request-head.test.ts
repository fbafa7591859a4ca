import { describe, expect, test } from "bun:test";
import { encodeChunk, LAST_CHUNK, requestHead, validateRequest } from "./request-head.ts";

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString("latin1");

/** The head of a request these tests know to be valid. */
function encodeRequestHead(...args: Parameters<typeof requestHead>): Uint8Array {
  const head = requestHead(...args);
  if ("invalid" in head) throw new Error(head.invalid);
  return head.bytes;
}

describe("request heads", () => {
  const headers: [string, string][] = [
    ["host", "svc.local"],
    ["cookie", "a=1"],
    ["cookie", "b=2"],
  ];

  test("a bodyless request carries no framing header", () => {
    expect(text(encodeRequestHead("GET", "/a?b=c", headers, "none"))).toBe(
      "GET /a?b=c HTTP/1.1\r\nhost: svc.local\r\ncookie: a=1\r\ncookie: b=2\r\n\r\n",
    );
  });

  test("a body of known length announces content-length", () => {
    expect(text(encodeRequestHead("PUT", "/up", [["host", "h"]], { contentLength: 12345 }))).toBe(
      "PUT /up HTTP/1.1\r\nhost: h\r\ncontent-length: 12345\r\n\r\n",
    );
  });

  test("an empty body of known length announces content-length 0", () => {
    expect(text(encodeRequestHead("POST", "/", [], { contentLength: 0 }))).toBe(
      "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
    );
  });

  test("a streamed body announces chunked transfer encoding", () => {
    expect(text(encodeRequestHead("POST", "/s", [["host", "h"]], "chunked"))).toBe(
      "POST /s HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n",
    );
  });

  test("header values are written byte for byte as Bun received them", () => {
    const head = encodeRequestHead("GET", "/", [["x-bytes", "a\xc3\xa9\x80\xff"]], "none");
    const value = "GET / HTTP/1.1\r\nx-bytes: ".length;
    expect([...head.subarray(value, value + 5)]).toEqual([0x61, 0xc3, 0xa9, 0x80, 0xff]);
  });
});

describe("chunked request bodies", () => {
  test("a chunk is its hex size line, the data itself and CRLF", () => {
    const data = new Uint8Array(300).fill(0x61);
    const pieces = encodeChunk(data);
    expect(pieces.length).toBe(3);
    expect(text(pieces[0] as Uint8Array)).toBe("12c\r\n");
    expect(pieces[1]).toBe(data);
    expect(text(pieces[2] as Uint8Array)).toBe("\r\n");
  });

  test("empty data produces nothing, so it cannot end the body early", () => {
    expect(encodeChunk(new Uint8Array(0))).toEqual([]);
  });

  test("the last chunk closes the body without trailers", () => {
    expect(text(LAST_CHUNK)).toBe("0\r\n\r\n");
  });
});

describe("request validation", () => {
  test("accepts ordinary requests", () => {
    expect(validateRequest("GET", "/a/b?c=d&e=%20#f", [["x-a", "v\tw ~\xff"]])).toBeNull();
    expect(validateRequest("OPTIONS", "*", [])).toBeNull();
    expect(validateRequest("M-SEARCH", "/", [["x-empty", ""]])).toBeNull();
  });

  test.each([
    ["GET /", "/", "method with a space"],
    ["", "/", "empty method"],
    ["G\r\nET", "/", "method with CRLF"],
    ["GET", "", "empty path"],
    ["GET", "a/b", "path without a leading slash"],
    ["GET", "*", "asterisk for a method other than OPTIONS"],
    ["GET", "http://x/", "absolute form"],
    ["GET", "/a b", "space in the path"],
    ["GET", "/a\r\nX-Injected: 1", "CRLF in the path"],
    ["GET", "/a\x00", "NUL in the path"],
    ["GET", "/a\x7f", "DEL in the path"],
    ["GET", "/\xe9", "non-ASCII char in the path"],
  ])("rejects method %j with path %j (%s)", (method, path) => {
    expect(validateRequest(method, path, [])).toBeString();
  });

  test.each([
    ["x a", "v", "space in the name"],
    ["", "v", "empty name"],
    ["x:a", "v", "colon in the name"],
    ["x-a", "v\r\nx-injected: 1", "CRLF in the value"],
    ["x-a", "v\nw", "LF in the value"],
    ["x-a", "v\x00", "NUL in the value"],
    ["x-a", "\u20ac", "a char that is not a byte"],
  ])("rejects header %j: %j (%s)", (name, value) => {
    expect(
      validateRequest("GET", "/", [
        ["host", "h"],
        [name, value],
      ]),
    ).toBeString();
  });

  test("names the problem", () => {
    expect(validateRequest("GET", "x", [])).toContain("does not start with");
    expect(validateRequest("GET", "/", [["bad name", "v"]])).toContain("bad name");
  });

  test("a head is only encoded for a request that validates, with the same reason otherwise", () => {
    expect(requestHead("GET", "/", [["bad name", "v"]], "none")).toEqual({
      invalid: validateRequest("GET", "/", [["bad name", "v"]]) as string,
    });
    expect(requestHead("GET", "x", [], "none")).toEqual({
      invalid: validateRequest("GET", "x", []) as string,
    });
  });
});
