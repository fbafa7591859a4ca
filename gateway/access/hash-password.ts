// `gateway-tunnel hash-password`: the password comes from stdin, never from the command line,
// where every local user could read it in `ps`.
import { UsageError } from "../../shared/errors.ts";

/** The argon2id hash (Bun's defaults) of the one line on `input`; its newline is not part of it. */
export async function readPasswordHash(input: ReadableStream<Uint8Array>): Promise<string> {
  const text = await new Response(input).text();
  const password = text.replace(/\r?\n$/, "");
  if (password === "")
    throw new UsageError(
      'hash-password: no password on stdin (e.g. read -rs P; echo "$P" | gateway-tunnel hash-password)',
    );
  if (password.includes("\n")) throw new UsageError("hash-password: give one password, on one line");
  return Bun.password.hash(password);
}
