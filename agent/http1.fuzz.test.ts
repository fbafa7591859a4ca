import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Http1Error, type ResponseHead, ResponseParser } from "./http1.ts";

// Bounded so the whole file stays well under five seconds.
const RUNS = 1000;

const TCHARS = [..."!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"];
const VALUE_CHARS = [...' \tazAZ09=;,/"()<>@:?[]{}~\x7f\x80\x9f\xa0\xff'];
const REASON_CHARS = [..." \tOKNotFound!~\x80\xff"];
const FRAMING_NAMES = new Set(["content-length", "transfer-encoding", "connection"]);
const OWS_EDGES = /^[ \t]+|[ \t]+$/g;

interface Outcome {
  heads: ResponseHead[];
  body: number[];
  ends: boolean[];
  threw: boolean;
}

/** Feeds `input` cut at `cuts`, then closes; any error but Http1Error escapes. */
function run(input: Uint8Array, cuts: number[], method: string): Outcome {
  const outcome: Outcome = { heads: [], body: [], ends: [], threw: false };
  const parser = new ResponseParser({
    head: (head) => outcome.heads.push(head),
    body: (chunk) => outcome.body.push(...chunk),
    end: (reusable) => outcome.ends.push(reusable),
  });
  parser.expect(method);
  const points = [...new Set(cuts.map((cut) => cut % (input.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  try {
    for (const cut of [...points, input.length]) {
      parser.feed(input.subarray(from, cut));
      from = cut;
    }
    parser.finish();
  } catch (error) {
    if (!(error instanceof Http1Error)) throw error;
    outcome.threw = true;
  }
  return outcome;
}

const token = fc
  .string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: 12 })
  .filter((name) => !FRAMING_NAMES.has(name.toLowerCase()));
const fieldValue = fc.string({ unit: fc.constantFrom(...VALUE_CHARS), maxLength: 24 });
const field = fc.tuple(token, fieldValue);

const responseSpec = fc.record({
  method: fc.constantFrom("GET", "HEAD", "POST"),
  http10: fc.boolean(),
  connection: fc.constantFrom("none", "close", "keep-alive"),
  interim: fc.nat({ max: 2 }),
  status: fc.oneof(fc.integer({ min: 200, max: 599 }), fc.constantFrom(204, 304)),
  reason: fc.string({ unit: fc.constantFrom(...REASON_CHARS), maxLength: 16 }),
  headers: fc.array(field, { maxLength: 6 }),
  framing: fc.constantFrom("length", "chunked", "close"),
  body: fc.uint8Array({ maxLength: 300 }),
  chunkCuts: fc.array(fc.nat(), { maxLength: 6 }),
  extension: fc.constantFrom("", ";a", ";a=b", ' ; n="v;x"'),
  trailers: fc.array(field, { maxLength: 2 }),
});

type ResponseSpec = typeof responseSpec extends fc.Arbitrary<infer T> ? T : never;

function hasBody(spec: ResponseSpec): boolean {
  return spec.method !== "HEAD" && spec.status !== 204 && spec.status !== 304;
}

function chunkedBody(spec: ResponseSpec): Uint8Array[] {
  const cuts = [...new Set(spec.chunkCuts.map((cut) => cut % (spec.body.length + 1)))].sort((a, b) => a - b);
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const cut of [...cuts, spec.body.length]) {
    if (cut > from) {
      parts.push(
        latin1(`${(cut - from).toString(16)}${spec.extension}\r\n`),
        spec.body.subarray(from, cut),
        latin1("\r\n"),
      );
    }
    from = cut;
  }
  const trailers = spec.trailers.map(([name, value]) => `${name}: ${value}\r\n`).join("");
  parts.push(latin1(`0${spec.extension}\r\n${trailers}\r\n`));
  return parts;
}

function serialize(spec: ResponseSpec): { bytes: Uint8Array; head: ResponseHead } {
  const fields: [string, string][] = [...spec.headers];
  if (spec.connection !== "none") fields.push(["Connection", spec.connection]);
  if (spec.framing === "length") fields.push(["Content-Length", String(spec.body.length)]);
  if (spec.framing === "chunked") fields.push(["Transfer-Encoding", "chunked"]);
  let head = "HTTP/1.1 100 Continue\r\n\r\n".repeat(spec.interim);
  head += `HTTP/1.${spec.http10 ? 0 : 1} ${spec.status} ${spec.reason}\r\n`;
  for (const [name, value] of fields) head += `${name}: ${value}\r\n`;
  const parts = [latin1(`${head}\r\n`)];
  if (hasBody(spec)) parts.push(...(spec.framing === "chunked" ? chunkedBody(spec) : [spec.body]));
  return {
    bytes: Buffer.concat(parts),
    head: {
      status: spec.status,
      statusText: spec.reason,
      headers: fields.map(([name, value]) => [name.toLowerCase(), value.replace(OWS_EDGES, "")]),
    },
  };
}

function expectedReusable(spec: ResponseSpec): boolean {
  const persistent = spec.http10 ? spec.connection === "keep-alive" : spec.connection !== "close";
  if (!hasBody(spec)) return persistent;
  if (spec.framing === "close") return false;
  return persistent && !(spec.http10 && spec.framing === "chunked");
}

function latin1(text: string): Uint8Array {
  return Buffer.from(text, "latin1");
}

function comparable(outcome: Outcome) {
  return { ...outcome, ends: outcome.threw ? outcome.ends.length : outcome.ends };
}

type Mutation = { at: number; kind: "flip" | "insert" | "delete"; byte: number };

const mutation = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom("flip", "insert", "delete"),
  // Bytes that matter to the grammar come up more often than chance would bring them.
  byte: fc.oneof(fc.constantFrom(0, 9, 10, 13, 32, 48, 58, 59, 70), fc.integer({ min: 0, max: 255 })),
}) as fc.Arbitrary<Mutation>;

function mutate(bytes: Uint8Array, mutations: Mutation[]): Uint8Array {
  const out = [...bytes];
  for (const { at, kind, byte } of mutations) {
    const i = at % (out.length + 1);
    if (kind === "insert") out.splice(i, 0, byte);
    else if (i < out.length && kind === "delete") out.splice(i, 1);
    else if (i < out.length) out[i] = byte;
  }
  return new Uint8Array(out);
}

const cuts = fc.array(fc.nat(), { maxLength: 10 });
const method = fc.constantFrom("GET", "HEAD");

describe("response parser under arbitrary input", () => {
  test("random bytes in random pieces only ever raise Http1Error", () => {
    const prefixed = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.uint8Array({ maxLength: 200 }).map((tail) => Buffer.concat([latin1("HTTP/1.1 200 OK\r\n"), tail])),
      fc
        .uint8Array({ maxLength: 200 })
        .map((tail) =>
          Buffer.concat([latin1(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n`), tail]),
        ),
    );
    fc.assert(
      fc.property(prefixed, cuts, method, (input, splits, verb) => {
        run(input, splits, verb);
      }),
      { numRuns: RUNS },
    );
  });

  test("mutated valid responses only ever raise Http1Error, and the outcome does not depend on the split", () => {
    fc.assert(
      fc.property(
        responseSpec,
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        cuts,
        (spec, mutations, splits) => {
          const input = mutate(serialize(spec).bytes, mutations);
          const whole = run(input, [], spec.method);
          const split = run(input, splits, spec.method);
          expect(whole.ends.length).toBeLessThanOrEqual(1);
          // Only reusability may differ, when garbage follows a response: in the same piece it is seen
          // before end(), in a later one only after.
          expect(comparable(split)).toEqual(comparable(whole));
        },
      ),
      { numRuns: RUNS },
    );
  });

  test("a serialized response parses back to its head and body however it is split", () => {
    fc.assert(
      fc.property(responseSpec, cuts, (spec, splits) => {
        const { bytes, head } = serialize(spec);
        const outcome = run(bytes, splits, spec.method);
        expect(outcome.threw).toBe(false);
        expect(outcome.heads).toEqual([head]);
        expect(outcome.body).toEqual(hasBody(spec) ? [...spec.body] : []);
        expect(outcome.ends).toEqual([expectedReusable(spec)]);
      }),
      { numRuns: RUNS },
    );
  });
});
