// Maps an ingress request's Host header to the agent it is for. Runs on every request, so it
// compares in place instead of splitting or lowercasing the whole header.
import { isValidAgentId } from "../shared/auth.ts";

const OPEN_BRACKET = 91;
const DOT = 46;
const UPPER_A = 65;
const UPPER_Z = 90;
const CASE_BIT = 32;

/**
 * The agent id when `host` is exactly `<agent-id>.<domain>` (any letter case, optional port and
 * trailing dot), else null. `domain` must already be lowercase, as the config makes it.
 */
export function matchHostToAgentId(host: string | null, domain: string): string | null {
  // An IPv6 literal ("[::1]:8082") never names an agent.
  if (host === null || host.charCodeAt(0) === OPEN_BRACKET) return null;
  let end = host.lastIndexOf(":");
  if (end === -1) end = host.length;
  if (host.charCodeAt(end - 1) === DOT) end--;
  const dot = host.indexOf(".");
  if (dot <= 0 || end - dot - 1 !== domain.length) return null;
  if (!equalsLowercase(host, dot + 1, domain)) return null;
  const id = host.slice(0, dot).toLowerCase();
  return isValidAgentId(id) ? id : null;
}

/** Whether `host` from `start` spells `lower`, ignoring ASCII case in `host`. */
function equalsLowercase(host: string, start: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = host.charCodeAt(start + i);
    if (c >= UPPER_A && c <= UPPER_Z) c |= CASE_BIT;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}
