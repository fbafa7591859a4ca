// The proof that a request comes from another gateway of the cluster, not from a client: an HMAC
// of the sender's id, the time, the agent, the request id, the method and the path under the
// cluster secret. The secret itself never crosses the wire; a captured header is good for that
// one request only, and only within the allowed clock skew.

/** Carries `<gateway id>.<unix ms>.<hex hmac>` on a forwarded request. */
export const HOP_HEADER = "x-indranet-hop";

/** Request headers Bun's fetch adds when the client sent none; the hop lists them so the owner drops them. */
export const ADDED_BY_FETCH = ["accept", "user-agent"] as const;

/** Names the headers among ADDED_BY_FETCH that the client did not send. */
export const ABSENT_HEADER = "x-indranet-absent";

/** Gateways' clocks may differ by this much (NTP keeps them far closer). */
const MAX_SKEW_MS = 30_000;

const GATEWAY_ID = /^[0-9a-f]{1,32}$/;

/** What a hop's signature binds: the request cannot be turned into another with it. */
export interface HopRequest {
  agentId: string;
  requestId: string;
  method: string;
  /** Path and query, as sent. */
  path: string;
}

function mac(secret: string, gatewayId: string, at: string, request: HopRequest): string {
  const text = `${gatewayId}\n${at}\n${request.agentId}\n${request.requestId}\n${request.method}\n${request.path}`;
  return new Bun.CryptoHasher("sha256", secret).update(text).digest("hex");
}

export function signHop(secret: string, gatewayId: string, request: HopRequest, now: number): string {
  const at = String(now);
  return `${gatewayId}.${at}.${mac(secret, gatewayId, at, request)}`;
}

/** The sending gateway's id when the header is valid for this request, else null. */
export function verifyHop(secret: string, header: string, request: HopRequest, now: number): string | null {
  const [gatewayId, at, given, extra] = header.split(".");
  if (extra !== undefined || !gatewayId || !at || !given || !GATEWAY_ID.test(gatewayId)) return null;
  if (!/^\d{1,15}$/.test(at) || Math.abs(now - Number(at)) > MAX_SKEW_MS) return null;
  const expected = mac(secret, gatewayId, at, request);
  if (given.length !== expected.length) return null;
  return crypto.timingSafeEqual(Buffer.from(given), Buffer.from(expected)) ? gatewayId : null;
}
