import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { requestHead, validateRequest } from "./request-head.ts";

// Bounded so the file runs in well under five seconds.
const RUNS = 2000;

// Mostly harmless characters, with the ones that split or end lines mixed in often.
const nasty = fc.constantFrom("\r", "\n", "\r\n", "\0", " ", ":", "\t", "\u0100", "é", "\x7f", "/");
const piece = fc.oneof(fc.string({ maxLength: 6 }), nasty);
const field = fc.array(piece, { maxLength: 5 }).map((parts) => parts.join(""));

const request = fc.record({
  method: fc.oneof(fc.constantFrom("GET", "POST", "OPTIONS"), field),
  path: fc.oneof(
    field.map((p) => `/${p}`),
    field,
    fc.constant("*"),
  ),
  headers: fc.array(fc.tuple(fc.oneof(fc.constantFrom("x-a", "cookie"), field), field), { maxLength: 4 }),
});

describe("request validator under arbitrary input", () => {
  test("whatever it lets through encodes as exactly the request line, the given headers and nothing else", () => {
    fc.assert(
      fc.property(request, ({ method, path, headers }) => {
        const result = requestHead(method, path, headers, "none");
        expect("invalid" in result).toBe(validateRequest(method, path, headers) !== null);
        if ("invalid" in result) return;
        const head = Buffer.from(result.bytes).toString("latin1");
        expect(head.endsWith("\r\n\r\n")).toBe(true);
        const lines = head.slice(0, -4).split("\r\n");
        // No CR or LF survives inside a line, so no line can start a second header or request.
        for (const line of lines) expect(/[\r\n\0]/.test(line)).toBe(false);
        expect(lines).toHaveLength(1 + headers.length);
        expect(lines[0]).toBe(`${method} ${path} HTTP/1.1`);
        expect(lines[0]?.split(" ")).toHaveLength(3);
        headers.forEach(([name, value], i) => {
          expect(lines[i + 1]).toBe(`${name}: ${value}`);
          expect(name).toMatch(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/);
        });
      }),
      { numRuns: RUNS },
    );
  });

  test("CR, LF or NUL anywhere in the method, path or a header is refused", () => {
    fc.assert(
      fc.property(request, fc.constantFrom("\r", "\n", "\0"), fc.nat({ max: 3 }), (req, bad, where) => {
        const poisoned = { ...req, headers: [...req.headers] };
        if (where === 0) poisoned.method += bad;
        if (where === 1) poisoned.path += bad;
        if (where === 2) poisoned.headers.push(["x-bad", `a${bad}b`]);
        if (where === 3) poisoned.headers.push([`x${bad}`, "v"]);
        expect(validateRequest(poisoned.method, poisoned.path, poisoned.headers)).not.toBeNull();
        expect(requestHead(poisoned.method, poisoned.path, poisoned.headers, "none")).toHaveProperty(
          "invalid",
        );
      }),
      { numRuns: RUNS },
    );
  });
});
