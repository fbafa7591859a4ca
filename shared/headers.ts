// Header rules shared by both hops: what is end-to-end and what belongs to one connection only.

import type { Header } from "./gen/tunnel_pb.ts";

/** RFC 9110 §7.6.1: meaningful for one connection only, so never forwarded. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
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

/** One comma-separated element of a Connection header, as the name of a field to drop. */
export function connectionToken(item: string): string {
  return item.trim().toLowerCase();
}

/**
 * Drops hop-by-hop headers, including any that the Connection header names.
 * Names are expected lowercased (Bun lowercases request headers; the agent's parser lowercases too).
 */
export function endToEndHeaders(pairs: Iterable<[string, string]>): [string, string][] {
  const all = Array.isArray(pairs) ? (pairs as [string, string][]) : [...pairs];
  let named: Set<string> | undefined;
  for (const [name, value] of all) {
    if (name === "connection") named = addNamed(named, value);
  }
  return all.filter(([name]) => !HOP_BY_HOP.has(name) && !named?.has(name));
}

/**
 * The end-to-end headers of a tunnel message as pairs, as endToEndHeaders would give them, also
 * without the names in `alsoDrop`. One walk; a second only when a Connection header names a field
 * that is not hop-by-hop anyway, since it may come after the field it names.
 */
export function endToEndPairs(
  headers: readonly Header[],
  alsoDrop: ReadonlySet<string> = NOTHING,
): [string, string][] {
  const pairs: [string, string][] = [];
  let named: Set<string> | undefined;
  for (const { name, value } of headers) {
    if (name === "connection") {
      named = addNamed(named, value);
    } else if (!HOP_BY_HOP.has(name) && !alsoDrop.has(name)) {
      pairs.push([name, value]);
    }
  }
  if (named === undefined) return pairs;
  for (const token of named) {
    if (!HOP_BY_HOP.has(token)) return pairs.filter(([name]) => !named.has(name));
  }
  return pairs;
}

/** Adds the names a Connection header value lists to `named` (created on first use). */
function addNamed(named: Set<string> | undefined, value: string): Set<string> {
  const set = named ?? new Set<string>();
  for (const item of value.split(",")) set.add(connectionToken(item));
  return set;
}

const NOTHING: ReadonlySet<string> = new Set();
