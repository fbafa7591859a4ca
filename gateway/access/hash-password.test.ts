import { describe, expect, test } from "bun:test";
import { readPasswordHash } from "./hash-password.ts";

const stdin = (text: string) => new Response(text).body as ReadableStream<Uint8Array>;

describe("gateway-tunnel hash-password", () => {
  test("hashes the line on stdin, without its newline, as basic_auth verifies it", async () => {
    const hash = await readPasswordHash(stdin("open sesame\n"));
    expect(hash).toStartWith("$argon2id$");
    expect(await Bun.password.verify("open sesame", hash)).toBe(true);
    // Bun's default argon2id parameters take seconds on a slow machine, twice here.
  }, 30_000);

  test("refuses an empty stdin and more than one line", async () => {
    await expect(readPasswordHash(stdin(""))).rejects.toThrow("no password on stdin");
    await expect(readPasswordHash(stdin("a\nb\n"))).rejects.toThrow("give one password, on one line");
  });
});
