// Header rules shared by both hops: what is end-to-end and what belongs to one connection only.

/** RFC 9110 §7.6.1: meaningful for one connection only, so never forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Drops hop-by-hop headers, including any that the Connection header names.
 * Names are expected lowercased (Bun lowercases request headers; the agent's parser lowercases too).
 */
export function endToEndHeaders(pairs: Iterable<[string, string]>): [string, string][] {
  const all = Array.isArray(pairs) ? (pairs as [string, string][]) : [...pairs];
  let named: Set<string> | undefined;
  for (const [name, value] of all) {
    if (name !== "connection") continue;
    named ??= new Set();
    for (const token of value.split(",")) named.add(token.trim().toLowerCase());
  }
  return all.filter(([name]) => !HOP_BY_HOP.has(name) && !named?.has(name));
}
