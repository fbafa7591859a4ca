// The proof that a request comes from another gateway of the cluster, not from a client: an HMAC
// of the sender's id, the time, the agent and the request id under the cluster secret. The
// secret itself never crosses the wire; a captured header is good for one request id only and
// expires with the allowed clock skew.

/** Carries `<gateway id>.<unix ms>.<hex hmac>` on a forwarded request. */
export const HOP_HEADER = "x-indranet-hop";

/** Request headers Bun's fetch adds when the client sent none; the hop lists them so the owner drops them. */
export const ADDED_BY_FETCH = ["accept", "user-agent"] as const;

/** Names the headers among ADDED_BY_FETCH that the client did not send. */
export const ABSENT_HEADER = "x-indranet-absent";

/** Gateways' clocks may differ by this much (NTP keeps them far closer). */
const MAX_SKEW_MS = 30_000;

const GATEWAY_ID = /^[0-9a-f]{1,32}$/;

function mac(secret: string, gatewayId: string, at: string, agentId: string, requestId: string): string {
  return new Bun.CryptoHasher("sha256", secret)
    .update(`${gatewayId}\n${at}\n${agentId}\n${requestId}`)
    .digest("hex");
}

export function signHop(
  secret: string,
  gatewayId: string,
  agentId: string,
  requestId: string,
  now: number,
): string {
  const at = String(now);
  return `${gatewayId}.${at}.${mac(secret, gatewayId, at, agentId, requestId)}`;
}

/** The sending gateway's id when the header is valid for this request, else null. */
export function verifyHop(
  secret: string,
  header: string,
  agentId: string,
  requestId: string,
  now: number,
): string | null {
  const [gatewayId, at, given, extra] = header.split(".");
  if (extra !== undefined || !gatewayId || !at || !given || !GATEWAY_ID.test(gatewayId)) return null;
  if (!/^\d{1,15}$/.test(at) || Math.abs(now - Number(at)) > MAX_SKEW_MS) return null;
  const expected = mac(secret, gatewayId, at, agentId, requestId);
  if (given.length !== expected.length) return null;
  return crypto.timingSafeEqual(Buffer.from(given), Buffer.from(expected)) ? gatewayId : null;
}
