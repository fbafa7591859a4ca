// The request the agent writes to the local service: head, then the body framed as announced.

/** How the request body is framed on the local connection. */
export type RequestFraming = { contentLength: number } | "chunked" | "none";

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Visible ASCII only: Bun percent-encodes everything else in the URL before the gateway sees it.
const ORIGIN_FORM = /^\/[!-~]*$/;
// Header values travel as Bun's byte strings (one char per byte), so a char above 0xFF has no bytes.
const FORBIDDEN_IN_VALUE = /[\0\r\n\u0100-\uffff]/;

const CRLF = new Uint8Array([13, 10]);

/** Ends a chunked body (no trailers). Shared: never write into it. */
export const LAST_CHUNK = new Uint8Array([48, 13, 10, 13, 10]);

/** The head to write, or why the request cannot be written as HTTP/1.1 without changing its meaning. */
export type RequestHead = { bytes: Uint8Array } | { invalid: string };

/** Why the request cannot be written as HTTP/1.1 without changing its meaning, or null if it can. */
export function validateRequest(
  method: string,
  path: string,
  headers: Iterable<[string, string]>,
): string | null {
  const target = targetProblem(method, path);
  if (target !== null) return target;
  for (const [name, value] of headers) {
    const field = fieldProblem(name, value);
    if (field !== null) return field;
  }
  return null;
}

/**
 * The request line, the headers, the framing header and the blank line, each field validated as
 * it is written. The caller has removed hop-by-hop headers and the client's own framing headers.
 */
export function requestHead(
  method: string,
  path: string,
  headers: Iterable<[string, string]>,
  framing: RequestFraming,
): RequestHead {
  const target = targetProblem(method, path);
  if (target !== null) return { invalid: target };
  let head = `${method} ${path} HTTP/1.1\r\n`;
  for (const [name, value] of headers) {
    const field = fieldProblem(name, value);
    if (field !== null) return { invalid: field };
    head += `${name}: ${value}\r\n`;
  }
  if (framing === "chunked") head += "transfer-encoding: chunked\r\n";
  else if (framing !== "none") head += `content-length: ${framing.contentLength}\r\n`;
  // latin1 writes each char as the byte it came from, as Bun's request headers hold them.
  return { bytes: Buffer.from(`${head}\r\n`, "latin1") };
}

function targetProblem(method: string, path: string): string | null {
  if (!TOKEN.test(method)) return `method ${JSON.stringify(method)} is not a token`;
  if (ORIGIN_FORM.test(path) || (path === "*" && method === "OPTIONS")) return null;
  return path.startsWith("/")
    ? "path contains a space, control or non-ASCII character"
    : `path ${JSON.stringify(path)} does not start with "/"`;
}

function fieldProblem(name: string, value: string): string | null {
  if (!TOKEN.test(name)) return `header name ${JSON.stringify(name)} is not a token`;
  if (FORBIDDEN_IN_VALUE.test(value)) return `header ${name} has a value with CR, LF, NUL or a non-byte char`;
  return null;
}

/**
 * One chunk of a chunked body as the pieces to write in order: size line, the data itself (not
 * copied), CRLF. Empty data gives no pieces, because a zero-size chunk would end the body.
 */
export function encodeChunk(data: Uint8Array): Uint8Array[] {
  if (data.length === 0) return [];
  return [Buffer.from(`${data.length.toString(16)}\r\n`, "latin1"), data, CRLF];
}
